"""Parameters and single-thread CPU real-time factor of the DistillW2V2 models (paper Table 1).

Builds each architecture of conf/distill_w2v2/arch with random weights and times it on random
audio; prints a markdown table (or JSON with --json), also written atomically to --output.

Examples::

    python -m speechkd.bin.rtf                            # T1, S1..S5 on 10 s of audio
    python -m speechkd.bin.rtf --models T1,S5 --streaming --output exp/distill_w2v2/rtf.md
    python -m speechkd.bin.rtf --models tiny --audio-seconds 1 --repeats 1 --json
    python -m speechkd.bin.rtf --params-only              # the parameter columns only
    python -m speechkd.bin.rtf --clock cpu                # CPU time: a busy host disturbs less
"""

from __future__ import annotations

import argparse
import json

from speechkd.eval.rtf import render_table, run_benchmark
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="table",
        help="comma-separated architecture names or YAML paths; 'table' = T1,S1..S5, "
        "'tiny' = tiny_teacher,tiny_student (default: table)",
    )
    parser.add_argument("--audio-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument(
        "--streaming", action="store_true", help="also time the chunk-streaming SS variant"
    )
    parser.add_argument(
        "--long-seconds",
        type=float,
        default=30.0,
        help="length of the long input of the per-chunk latency (with --streaming)",
    )
    parser.add_argument("--num-outputs", type=int, default=32, help="prediction-layer units")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (paper: 1)")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall: elapsed time; cpu: process CPU time (steadier on a busy shared host)",
    )
    parser.add_argument("--params-only", action="store_true", help="skip the timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--output", default=None, help="file to write the same text to")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    payload = run_benchmark(
        models=args.models,
        audio_seconds=args.audio_seconds,
        repeats=args.repeats,
        streaming=args.streaming,
        long_seconds=args.long_seconds,
        num_outputs=args.num_outputs,
        threads=args.threads,
        timing=not args.params_only,
        seed=args.seed,
        clock=args.clock,
    )
    text = json.dumps(payload, indent=2) if args.json else render_table(payload)
    print(text)
    if args.output:
        atomic_write_text(args.output, text + "\n")


if __name__ == "__main__":
    run_cli(main)
