"""Decode a fairseq audio manifest with a wav2vec2-style CTC model and score it.

The model is a trusted fairseq checkpoint of fairseq's ``wav2vec_ctc`` or speechkd's
``speechkd_w2v2_student``. Decoding is best path (greedy) by default: letters → words at ``|``,
BPE pieces → words at ``▁``, phones → a phone sequence scored against ``<subset>.phn`` (a phone
error rate, written as the ``wer`` files over phones). With ``--lexicon`` (and usually ``--lm``,
an ARPA word n-gram LM) a lexicon beam search (:mod:`speechkd.eval.lexicon_decoder`) gives words
for any unit, scored against ``<subset>.wrd``.

Writes into ``--out-dir``: ``hyp-<set>.txt``, ``ref-<set>.txt`` (Kaldi text), ``recogs-<set>.txt``,
``errs-<set>.txt``, ``wer-summary-<set>.txt``, ``scores-<set>.json`` (as ``speechkd.bin.score``)
and ``decode-<set>.json`` (wall time of loading audio, the model and the search; real-time
factor; decoder settings). Utterance ids are the audio file names without extension.

Examples::

    python -m speechkd.bin.w2v2_decode --checkpoint exp/w2v2/teacher/checkpoint_best.pt \\
        --trust-fairseq-checkpoint --data data/fairseq/asr_en --subset test --unit letter \\
        --out-dir exp/w2v2/teacher/decode_test
    python -m speechkd.bin.w2v2_decode --checkpoint exp/distill_w2v2/ss/checkpoint_best.pt \\
        --trust-fairseq-checkpoint --data data/fairseq/asr_en --subset test --unit phone \\
        --lexicon data/lang_phone_en/lexicon.txt --lm data/lm/word_4gram.arpa \\
        --lm-weight 2 --word-score 0 --beam 50 --streaming --out-dir exp/distill_w2v2/ss/decode_test
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from speechkd.errors import ConfigError, DataError
from speechkd.eval.ctc_decode import UNITS, UnitTable, ctc_greedy, units_to_text
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.lexicon_decoder import CtcLexiconDecoder, LexiconDecoderConfig
from speechkd.eval.scoring import ScoringInput, score_input
from speechkd.eval.wer import Utterance, score_utterances
from speechkd.fairseq_plugin.checkpoints import check_trusted
from speechkd.mmi.lexicon import Lexicon
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
LABEL_EXT = {"letter": "ltr", "phone": "phn", "bpe": "bpe"}


@dataclass
class ManifestEntry:
    utt_id: str
    path: Path
    num_samples: int


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "y"):
        return True
    if value in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def read_manifest(path: Path) -> list[ManifestEntry]:
    """A fairseq ``<split>.tsv``: root directory, then ``relpath<TAB>num_samples`` lines."""
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise DataError(f"{path}: empty manifest")
    root = Path(lines[0].strip())
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].strip().isdigit():
            raise DataError(f"{path}:{number}: expected 'relpath<TAB>num_samples', got {line!r}")
        rows.append((Path(fields[0]), int(fields[1])))
    if not rows:
        raise DataError(f"{path}: no utterances")
    stems = [rel.stem for rel, _ in rows]
    unique = len(set(stems)) == len(stems)
    ids = stems if unique else [str(rel.with_suffix("")) for rel, _ in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: an audio file is listed twice")
    return [
        ManifestEntry(i, rel if rel.is_absolute() else root / rel, n)
        for i, (rel, n) in zip(ids, rows, strict=True)
    ]


def read_labels(path: Path, count: int) -> list[str]:
    """One label line per manifest line."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found (one line per line of the manifest)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != count:
        raise DataError(f"{path}: {len(lines)} lines, the manifest lists {count} utterances")
    return [" ".join(line.split()) for line in lines]


def kaldi_text(ids: list[str], texts: list[str]) -> str:
    """``utt-id text`` lines."""
    return "".join(f"{i} {t}".rstrip() + "\n" for i, t in zip(ids, texts, strict=True))


def make_batches(entries: list[ManifestEntry], max_samples: int) -> list[list[int]]:
    """Indices grouped longest first so that ``batch size x longest <= max_samples`` (>= 1)."""
    order = sorted(range(len(entries)), key=lambda i: -entries[i].num_samples)
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * entries[batches[-1][0]].num_samples <= max_samples:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def load_audio(entry: ManifestEntry) -> np.ndarray:
    try:
        wav, rate = sf.read(str(entry.path), dtype="float32")
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise DataError(f"{entry.path}: cannot read audio ({exc})") from None
    if wav.ndim != 1:
        raise DataError(f"{entry.path}: expected mono audio, got {wav.shape[1]} channels")
    if rate != SAMPLE_RATE:
        raise DataError(f"{entry.path}: sample rate {rate}, the model needs {SAMPLE_RATE}")
    return wav


def collate(
    waves: list[np.ndarray], normalize: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded sources [B, S] and the sample padding mask (True = padding), as fairseq."""
    length = max(len(w) for w in waves)
    source = torch.zeros(len(waves), length)
    mask = torch.ones(len(waves), length, dtype=torch.bool)
    for b, wav in enumerate(waves):
        x = torch.from_numpy(wav)
        if normalize:
            x = F.layer_norm(x, x.shape)
        source[b, : len(wav)] = x
        mask[b, : len(wav)] = False
    return source.to(device), mask.to(device)


class CtcModel:
    """Per-utterance CTC log-posteriors of a fairseq ``wav2vec_ctc`` / ``speechkd_w2v2_student``."""

    def __init__(self, model: torch.nn.Module, streaming: bool = False) -> None:
        from speechkd.fairseq_plugin.teacher import FrozenTeacher

        self.runner = FrozenTeacher(model)
        self.model = self.runner.model
        self.streaming = streaming
        if streaming:
            if self.runner.kind != "speechkd_student" or not hasattr(self.model, "stream"):
                raise ConfigError(
                    f"--streaming needs a speechkd_w2v2_student, got {type(model).__name__}"
                )
            if getattr(self.model, "chunk_size", None) is None:
                raise ConfigError(
                    "--streaming: the model has no chunk_size (not a streaming model)"
                )
        self.blank_weight = float(getattr(model, "blank_weight", 0.0) or 0.0)
        self.blank_mode = getattr(model, "blank_mode", "add")

    @property
    def num_outputs(self) -> int:
        return self.runner.num_outputs

    def _adjust(self, logits: torch.Tensor, blank: int) -> torch.Tensor:
        """fairseq Wav2VecCtc's decode-time blank weight (``blank_weight``/``blank_mode``)."""
        if self.blank_weight:
            logits = logits.clone()
            if self.blank_mode == "set":
                logits[..., blank] = self.blank_weight
            else:
                logits[..., blank] += self.blank_weight
        return logits

    @torch.no_grad()
    def log_probs(
        self, source: torch.Tensor, padding_mask: torch.Tensor, blank: int
    ) -> list[torch.Tensor]:
        """Log-posteriors [T_b, V] (float32, on CPU) of every utterance of the batch."""
        if self.streaming:
            outs = []
            for b in range(source.shape[0]):
                n = int((~padding_mask[b]).sum())
                logits = self.model.stream(source[b : b + 1, :n])[0]
                outs.append(F.log_softmax(logits.float(), -1).cpu())
            return outs
        out = self.runner(source, padding_mask)
        logits = self._adjust(out["logits"], blank)
        lprobs = F.log_softmax(logits.float(), -1).cpu()
        lengths = (~out["padding_mask"].bool()).sum(-1).tolist()
        return [lprobs[b, :n] for b, n in enumerate(lengths)]


class DenPosteriors:
    """Log frame posteriors of LF-MMI outputs under a denominator graph.

    An LF-MMI model's outputs are pseudo log-likelihoods: their own argmax is a poor best path.
    Its frame occupation posteriors under the denominator graph (the phone LM composed with the
    CTC topology, pdf ``p`` = phone ``p`` of ``phones.txt``, 0 = blank) are the model's
    posteriors; the best path and the lexicon search read those (the columns of symbols outside
    the phone table get -inf).
    """

    def __init__(self, den_graph: Path, table: UnitTable) -> None:
        from speechkd.mmi import Fsa
        from speechkd.mmi.lexicon import read_phone_table

        phones_path = den_graph.parent / "phones.txt"
        if not den_graph.is_file() or not phones_path.is_file():
            raise DataError(f"{den_graph}: denominator graph or its phones.txt not found")
        self.graph = Fsa.from_openfst(den_graph.read_text(encoding="utf-8"))
        phones = read_phone_table(phones_path)
        columns = [table.index(p) for p in phones]
        missing = [p for p, c in zip(phones, columns, strict=True) if c is None]
        if missing:
            raise DataError(f"{phones_path}: phones {missing[:5]} are not model outputs")
        self.columns = torch.tensor([table.blank, *columns])
        self.num_outputs = len(table.symbols)

    def __call__(self, log_probs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The utterances' [T_b, V] outputs -> [T_b, V] log posteriors (one batched pass)."""
        from speechkd.mmi import occupation_posteriors

        lengths = torch.tensor([lp.shape[0] for lp in log_probs])
        x = torch.nn.utils.rnn.pad_sequence(
            [lp[:, self.columns].float() for lp in log_probs], batch_first=True
        )
        _, post = occupation_posteriors(self.graph, x, lengths)
        outs = []
        for b, n in enumerate(lengths.tolist()):
            out = torch.full((n, self.num_outputs), float("-inf"))
            out[:, self.columns] = post[b, :n].clamp_min(1e-10).log()
            outs.append(out)
        return outs


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m speechkd.bin.w2v2_decode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="fairseq checkpoint (.pt)")
    p.add_argument(
        "--trust-fairseq-checkpoint", type=_bool, nargs="?", const=True, default=False,
        help="the checkpoint is a trusted pickle (required to load it)",
    )  # fmt: skip
    p.add_argument("--data", type=Path, required=True, help="fairseq data dir (<subset>.tsv ...)")
    p.add_argument("--subset", required=True, help="split to decode: <subset>.tsv")
    p.add_argument("--unit", choices=UNITS, required=True, help="the model's output units")
    p.add_argument("--labels", default=None, help="unit label extension (default ltr/phn/bpe)")
    p.add_argument("--dict", type=Path, default=None, help="default: <data>/dict.<labels>.txt")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--set-name", default=None, help="name in the output files (default: subset)")
    p.add_argument(
        "--den-graph",
        type=Path,
        default=None,
        help="decode LF-MMI outputs (pseudo log-likelihoods) through their frame posteriors "
        "under this denominator graph (phone LM x CTC topology; phones.txt beside it)",
    )
    p.add_argument("--lexicon", type=Path, default=None, help="lexicon.txt: lexicon beam search")
    p.add_argument("--lm", type=Path, default=None, help="ARPA word LM (needs --lexicon)")
    p.add_argument("--lm-weight", type=float, default=2.0, help="weight of log10 LM scores")
    p.add_argument("--word-score", type=float, default=0.0, help="score added per word")
    p.add_argument("--sil-score", type=float, default=0.0)
    p.add_argument("--beam", type=int, default=50)
    p.add_argument("--beam-threshold", type=float, default=25.0)
    p.add_argument("--beam-size-token", type=int, default=None, help="default: all units")
    p.add_argument(
        "--sil-token",
        default=None,
        help="silence unit (default: | if any, or blank); a phone best path leaves it out of "
        "the hypothesis (an optional-silence phone such as SIL is no phone of the references)",
    )
    p.add_argument("--streaming", action="store_true", help="chunk-by-chunk student inference")
    p.add_argument("--max-samples", type=int, default=1_600_000, help="padded samples per batch")
    p.add_argument("--language", default="en", help="language of the set (score breakdown)")
    p.add_argument(
        "--normalize", choices=("none", "whisper"), default="none",
        help="word text normalisation before scoring (phones: always none)",
    )  # fmt: skip
    p.add_argument("--allow-empty-ref", action="store_true")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.lm is not None and args.lexicon is None:
        raise ConfigError("--lm needs --lexicon (lexicon beam search)")
    if args.max_samples < 1:
        raise ConfigError(f"--max-samples must be >= 1, got {args.max_samples}")
    check_trusted(args.checkpoint, args.trust_fairseq_checkpoint)


def load_model(args: argparse.Namespace, device: torch.device):
    """(model, normalize audio?) of the checkpoint."""
    import speechkd.fairseq_plugin  # noqa: F401  (registers speechkd_w2v2_student)
    from speechkd.fairseq_plugin.checkpoints import load_fairseq_model

    model, cfg, _ = load_fairseq_model(
        args.checkpoint, args.trust_fairseq_checkpoint, {"data": str(args.data)}
    )
    task_cfg = getattr(cfg, "task", None)
    normalize = bool(getattr(task_cfg, "normalize", False)) if task_cfg is not None else False
    return model.to(device).eval(), normalize


def score(
    args: argparse.Namespace,
    set_name: str,
    ids: list[str],
    refs: list[str],
    hyps: list[str],
    phones: bool,
    extra: dict,
) -> dict[str, Path]:
    """Score hyps against refs (words, or phones without normalisation) into the decode dir."""
    if phones or args.normalize == "none":
        utts = [
            Utterance(i, " ".join(r.split()), " ".join(h.split()), args.language)
            for i, r, h in zip(ids, refs, hyps, strict=True)
        ]
        report = score_utterances(utts, "wer", allow_empty_ref=args.allow_empty_ref)
        return write_error_rate_files(
            args.out_dir, set_name, report, {args.language or "unk": "none"}, **extra
        )
    data = ScoringInput(ids=ids, refs=refs, hyps=hyps, languages=[args.language] * len(ids))
    return score_input(
        data, set_name, args.out_dir, metric="wer", allow_empty_ref=args.allow_empty_ref, **extra
    )


def best_path_text(symbols: list[str], args: argparse.Namespace) -> str:
    """The text of a best path's units; phones without the silence unit ``--sil-token``."""
    if args.unit == "phone" and args.sil_token is not None:
        symbols = [s for s in symbols if s != args.sil_token]
    return units_to_text(symbols, args.unit)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    set_name = args.set_name or args.subset
    setup_logging(args.out_dir / "log" / f"decode-{set_name}.log")
    command = "python -m speechkd.bin.w2v2_decode " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    logger.info("%s", command)
    _check_args(args)
    labels = args.labels or LABEL_EXT[args.unit]
    entries = read_manifest(args.data / f"{args.subset}.tsv")
    word_output = args.unit != "phone" or args.lexicon is not None
    ref_path = args.data / f"{args.subset}.{'wrd' if word_output else labels}"
    refs = read_labels(ref_path, len(entries))
    table = UnitTable.from_fairseq_dict(args.dict or args.data / f"dict.{labels}.txt")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, normalize = load_model(args, device)
    runner = CtcModel(model, streaming=args.streaming)
    if runner.num_outputs != len(table):
        raise DataError(
            f"{args.checkpoint}: the model has {runner.num_outputs} outputs, the dictionary "
            f"{args.dict or args.data / f'dict.{labels}.txt'} gives {len(table)} units"
        )
    decoder = None
    config = LexiconDecoderConfig(
        beam=args.beam,
        beam_size_token=args.beam_size_token,
        beam_threshold=args.beam_threshold,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
        sil_score=args.sil_score,
    )
    if args.lexicon is not None:
        decoder = CtcLexiconDecoder(
            table, Lexicon.from_kaldi(args.lexicon), args.lm, config, args.sil_token
        )

    den = DenPosteriors(args.den_graph, table) if args.den_graph is not None else None
    hyps: dict[str, str] = {}
    model_seconds = search_seconds = 0.0
    start = time.perf_counter()
    for batch in make_batches(entries, args.max_samples):
        waves = [load_audio(entries[i]) for i in batch]
        t0 = time.perf_counter()
        source, padding_mask = collate(waves, normalize, device)
        lprobs = runner.log_probs(source, padding_mask, table.blank)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t1 = time.perf_counter()
        if den is not None:
            lprobs = den(lprobs)
        for i, lp in zip(batch, lprobs, strict=True):
            if decoder is not None:
                hyps[entries[i].utt_id] = decoder.decode_utterance(lp)[0].text
            else:
                ids = ctc_greedy(lp[None], None, table.blank)[0]
                hyps[entries[i].utt_id] = best_path_text(table.to_symbols(ids), args)
        t2 = time.perf_counter()
        model_seconds += t1 - t0
        search_seconds += t2 - t1
    seconds = time.perf_counter() - start
    audio = sum(e.num_samples for e in entries) / SAMPLE_RATE
    rtf = round(seconds / audio, 5) if audio else None
    logger.info(
        "decoded %d utterances (%.1f s of audio) in %.2f s on %s (model %.2f s, search %.2f s): "
        "RTF %s", len(entries), audio, seconds, device, model_seconds, search_seconds, rtf,
    )  # fmt: skip

    ids = [e.utt_id for e in entries]
    hyp_list = [hyps[i] for i in ids]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "hyp": args.out_dir / f"hyp-{set_name}.txt",
        "ref": args.out_dir / f"ref-{set_name}.txt",
    }
    atomic_write_text(paths["hyp"], kaldi_text(ids, hyp_list))
    atomic_write_text(paths["ref"], kaldi_text(ids, refs))
    record = {
        "set": set_name,
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "subset": args.subset,
        "unit": args.unit,
        "scored_units": "words" if word_output else "phones",
        "decoder": "lexicon" if decoder is not None else "greedy",
        "lexicon": str(args.lexicon) if args.lexicon else None,
        "lm": str(args.lm) if args.lm else None,
        "decoder_config": asdict(config) if decoder is not None else None,
        "sil_token": table.symbols[decoder.sil] if decoder is not None else args.sil_token,
        "streaming": args.streaming,
        "normalize_audio": normalize,
        "num_utterances": len(entries),
        "audio_seconds": round(audio, 3),
        "decode_seconds": round(seconds, 3),
        "model_seconds": round(model_seconds, 3),
        "search_seconds": round(search_seconds, 3),
        "rtf": rtf,
        "device": str(device),
        "max_samples": args.max_samples,
        "command": command,
    }
    decode_json = args.out_dir / f"decode-{set_name}.json"
    atomic_write_text(decode_json, json.dumps(record, indent=1) + "\n")
    extra = {k: record[k] for k in ("checkpoint", "unit", "scored_units", "decoder", "lm")}
    extra.update(
        data_dir=str(args.data), streaming=args.streaming, command=command,
        decode_seconds=record["decode_seconds"], rtf=rtf, device=str(device), ref=str(ref_path),
        hyp=str(paths["hyp"]),
    )  # fmt: skip
    paths.update(score(args, set_name, ids, refs, hyp_list, not word_output, extra))
    paths["decode"] = decode_json
    with open(paths["scores"], encoding="utf-8") as f:
        result = json.load(f)
    logger.info(
        "%s %s: %s (%s)", set_name, "WER" if word_output else "PER", result["score"],
        paths["scores"],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    run_cli(main)
