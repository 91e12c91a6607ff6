"""What a shorter encoder window costs and saves: zero-shot error rates and training-step time.

For each window (seconds; 30 = OpenAI's), the model is cut to that window
(:func:`speechkd.whisper.encoder_window.set_encoder_window`), decodes the same cuts greedily with
the forced language (new tokens capped by duration) and is scored per language (CER by default,
Whisper normalisation); then ``--steps`` training steps (forward, backward, AdamW) on one fixed
batch of ``--step-batch`` training cuts are timed after a warm-up step. Only cuts that fit the
smallest window are used, and the count is reported. Writes ``window-benchmark.json`` and
``window-benchmark.md`` into ``--out-dir``.

Example::

    python -m speechkd.bin.whisper_window_benchmark --model-dir exp/whisper_foundation/base30 \\
        --cuts data/whisper_fbank/mini_asr_cuts_test.jsonl.gz --train-cuts train.jsonl.gz \\
        --windows 30 18 --per-language 20 --out-dir exp/whisper_foundation/window_benchmark
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from lhotse import CutSet

from speechkd.data.manifest_io import read_cuts
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import ConfigError, DataError
from speechkd.eval.markdown import md_table
from speechkd.eval.scoring import ScoringInput, error_rate_report
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper.data import WhisperAsrDataset, cut_language
from speechkd.whisper.decode import decode_cuts, load_whisper_model
from speechkd.whisper.encoder_window import set_encoder_window, window_positions

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=100),
    )
    p.add_argument("--model-dir", required=True, help="Whisper model directory (30 s window)")
    p.add_argument("--cuts", required=True, help="CutSet decoded at every window")
    p.add_argument("--train-cuts", required=True, help="CutSet whose first cuts form the batch")
    p.add_argument("--windows", type=float, nargs="+", default=[30.0, 18.0], help="seconds")
    p.add_argument("--per-language", type=int, default=20, help="cuts decoded per language")
    p.add_argument("--languages", nargs="*", default=None, help="default: every language")
    p.add_argument("--metric", choices=("cer", "wer"), default="cer")
    p.add_argument("--tokens-per-second", type=float, default=12.0, help="new-token cap")
    p.add_argument("--step-batch", type=int, default=8, help="cuts in the timed training batch")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per window")
    p.add_argument("--out-dir", required=True)
    return p


def select_cuts(cuts: CutSet, seconds: float, per_language: int, languages) -> CutSet:
    """The first ``per_language`` cuts of each language that fit a ``seconds`` window."""
    kept, counts = [], {}
    for cut in cuts:
        lang = cut_language(cut)
        if languages and lang not in languages or cut.duration > seconds:
            continue
        if counts.get(lang, 0) < per_language:
            counts[lang] = counts.get(lang, 0) + 1
            kept.append(cut)
    if not kept:
        raise DataError(f"no cut of {languages or 'any language'} fits a {seconds} s window")
    return CutSet.from_cuts(kept)


def time_steps(model, batch: dict, steps: int) -> float:
    """Mean seconds of a training step (forward, backward, AdamW) after one warm-up step."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-8)
    inputs = {k: batch[k] for k in ("input_features", "decoder_input_ids", "labels")}
    seconds = []
    for step in range(steps + 1):
        start = time.perf_counter()
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:
            seconds.append(time.perf_counter() - start)
    return sum(seconds) / len(seconds)


def benchmark(args: argparse.Namespace) -> dict:
    for seconds in args.windows:
        window_positions(seconds)
    if args.steps < 1 or args.step_batch < 1 or args.per_language < 1:
        raise ConfigError("--steps, --step-batch and --per-language must be at least 1")
    tokenizer = load_whisper_tokenizer(args.model_dir)
    smallest = min(args.windows)
    cuts = select_cuts(read_cuts(args.cuts), smallest, args.per_language, args.languages)
    train = select_cuts(read_cuts(args.train_cuts), smallest, 10**9, None)
    train = CutSet.from_cuts(list(train)[: args.step_batch])
    rows = {}
    for seconds in args.windows:
        model = load_whisper_model(args.model_dir)
        set_encoder_window(model, seconds)
        start = time.perf_counter()
        hyps = decode_cuts(
            model,
            tokenizer,
            cuts,
            max_duration=60,
            progress=False,
            tokens_per_second=args.tokens_per_second,
        )
        decode_seconds = time.perf_counter() - start
        data = ScoringInput(
            ids=[h.cut_id for h in hyps],
            refs=[h.ref for h in hyps],
            hyps=[h.hyp for h in hyps],
            languages=[h.language for h in hyps],
        )
        report = error_rate_report(data, args.metric)
        batch = WhisperAsrDataset.for_model(tokenizer, model.config)[train]
        step = time_steps(model, batch, args.steps)
        rows[str(seconds)] = {
            "window_seconds": seconds,
            "per_language": {k: round(c.rate, 2) for k, c in report.per_language.items()},
            "average": round(report.macro_average, 2),
            "decode_seconds": round(decode_seconds, 2),
            "train_step_seconds": round(step, 3),
        }
        logger.info("window %s s: %s", seconds, rows[str(seconds)])
        del model
    return {
        "model_dir": str(args.model_dir),
        "cuts": str(args.cuts),
        "metric": args.metric,
        "num_cuts": len(cuts),
        "step_batch": len(train),
        "torch_threads": torch.get_num_threads(),
        "windows": rows,
    }


def markdown(result: dict) -> str:
    windows = list(result["windows"].values())
    languages = sorted(windows[0]["per_language"])
    metric = result["metric"].upper()
    header = ["window", *languages, "avg", "decode s", "train step s"]
    body = [
        [
            f"{w['window_seconds']:g} s",
            *(f"{w['per_language'][lang]:.2f}" for lang in languages),
            f"{w['average']:.2f}",
            f"{w['decode_seconds']:.1f}",
            f"{w['train_step_seconds']:.2f}",
        ]
        for w in windows
    ]
    caption = (
        f"Zero-shot {metric} (%) of {result['num_cuts']} cuts (greedy, forced language) and "
        f"seconds per training step on one batch of {result['step_batch']} cuts "
        f"({result['torch_threads']} threads)."
    )
    return caption + "\n\n" + "\n".join(md_table(header, body)) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out = Path(args.out_dir)
    setup_logging(out / "log" / "window-benchmark.log")
    result = benchmark(args)
    atomic_write_text(out / "window-benchmark.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "window-benchmark.md", markdown(result))
    logger.info("Wrote %s", out / "window-benchmark.md")
    return 0


if __name__ == "__main__":
    run_cli(main)
