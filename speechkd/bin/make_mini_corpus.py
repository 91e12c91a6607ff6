"""Generate the synthetic mini corpora (espeak-ng + sox speech, lhotse manifests, raw text).

Example::

    python -m speechkd.bin.make_mini_corpus --output-dir data --scale small --seed 0 --nj 2
    python -m speechkd.bin.make_mini_corpus --scale tiny --corpora mini_asr --languages en,de
"""

from __future__ import annotations

import argparse

from speechkd.data.synth.generate import format_stats, generate_mini_corpus
from speechkd.data.synth.languages import ASR_LANGUAGES
from speechkd.data.synth.plan import CORPORA
from speechkd.data.synth.scales import SCALES, get_scale
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="data", help="root of wavs, manifests and text")
    parser.add_argument("--scale", default="small", help=f"one of {', '.join(SCALES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    parser.add_argument(
        "--corpora", type=_list, default=list(CORPORA), help=f"subset of {','.join(CORPORA)}"
    )
    parser.add_argument(
        "--languages",
        type=_list,
        default=list(ASR_LANGUAGES),
        help=f"mini_asr languages, subset of {','.join(ASR_LANGUAGES)}",
    )
    parser.add_argument(
        "--asr-train-utts", type=int, help="training utterances of a weight-1 ASR language (en)"
    )
    parser.add_argument("--child-train-utts", type=int, help="child speech training utterances")
    parser.add_argument("--st-train-pairs", type=int, help="speech translation training pairs")
    parser.add_argument("--log-file", help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_file)
    scale = get_scale(args.scale).with_train_sizes(
        asr=args.asr_train_utts, child=args.child_train_utts, st=args.st_train_pairs
    )
    stats = generate_mini_corpus(
        output_dir=args.output_dir,
        scale=scale,
        seed=args.seed,
        nj=args.nj,
        corpora=args.corpora,
        languages=args.languages,
    )
    print(format_stats(stats["corpora"]))
    seconds = stats["generation_seconds"]
    print(f"generated in {seconds} s; statistics in {args.output_dir}/mini/stats.json")
    return 0


if __name__ == "__main__":
    run_cli(main)
