"""Figures of PEPSI and S2-LoRA: alive ratio per layer group and IMP iteration (PEPSI Fig. 3b),
error rate versus prune percentage (PEPSI Fig. 4), rank distributions of S2-LoRA and AdaLoRA
(S2-LoRA Fig. 3). One subcommand per figure; PNGs are written atomically.

Examples::

    # Fig. 3b from the IMP run of pepsi_prune
    python -m speechkd.bin.pruning_plots alive --history exp/pepsi/imp --out exp/pepsi/fig3b.png

    # Fig. 4: one decode dir (holding scores-<set>.json) per prune percentage; 0 = unpruned
    python -m speechkd.bin.pruning_plots prune-curve --set test_ko \\
        --point 0=exp/zero_shot/decode --point 10=exp/pepsi/imp90/milestones/prune-10/decode \\
        --point 20=exp/pepsi/imp90/milestones/prune-20/decode ... \\
        --out exp/pepsi/fig4.png --table exp/pepsi/fig4.md

    # S2-LoRA Fig. 3: ranks read from the trainers' checkpoints (exported models are merged)
    python -m speechkd.bin.pruning_plots ranks \\
        --s2lora exp/s2lora/checkpoints/epoch-3 --adalora exp/adalora/checkpoints/epoch-3 \\
        --out exp/s2lora/ranks.png --json exp/s2lora/ranks.json
"""

from __future__ import annotations

import argparse
import json
import logging

from speechkd.errors import ConfigError
from speechkd.eval.pruning_plots import (
    adalora_ranks,
    load_prune_scores,
    plot_alive_ratio,
    plot_error_vs_prune,
    plot_rank_heatmaps,
    s2lora_ranks,
    write_error_table,
)
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper.imp import load_history
from speechkd.whisper.s2lora import RANK_THRESHOLD

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    alive = sub.add_parser("alive", help="alive %% per layer group and IMP iteration (Fig. 3b)")
    alive.add_argument("--history", required=True, help="imp-history.json or its directory")
    alive.add_argument("--out", required=True, help="PNG to write")

    curve = sub.add_parser("prune-curve", help="error rate versus prune percentage (Fig. 4)")
    curve.add_argument(
        "--point",
        action="append",
        required=True,
        metavar="PCT=DECODE_DIR",
        help="prune percentage (0 <= PCT < 100) and the decode dir of that model (repeatable)",
    )
    curve.add_argument("--set", action="append", required=True, help="test set (repeatable)")
    curve.add_argument("--per-language", action="store_true", help="one line per language")
    curve.add_argument("--title", default=None)
    curve.add_argument("--out", required=True, help="PNG to write")
    curve.add_argument("--table", default=None, help="also write the numbers as Markdown")

    ranks = sub.add_parser("ranks", help="S2-LoRA / AdaLoRA rank distributions (S2-LoRA Fig. 3)")
    ranks.add_argument("--s2lora", default=None, help="S2-LoRA checkpoint (file or epoch dir)")
    ranks.add_argument("--adalora", default=None, help="AdaLoRA checkpoint (file or epoch dir)")
    ranks.add_argument("--threshold", type=float, default=RANK_THRESHOLD)
    ranks.add_argument("--max-rank", type=int, default=None, help="colour scale maximum")
    ranks.add_argument("--out", required=True, help="PNG to write")
    ranks.add_argument("--json", default=None, help="also write the ranks as JSON")
    return parser


def parse_points(specs: list[str]) -> dict[float, str]:
    """``PCT=DIR`` → {sparsity fraction: DIR}."""
    points: dict[float, str] = {}
    for spec in specs:
        pct, sep, directory = spec.partition("=")
        try:
            value = float(pct)
        except ValueError:
            value = -1.0
        if not sep or not directory.strip() or not 0.0 <= value < 100.0:
            raise ConfigError(f"--point {spec!r}: expected PCT=DECODE_DIR with 0 <= PCT < 100")
        sparsity = value / 100.0
        if sparsity in points:
            raise ConfigError(f"--point {spec!r}: prune percentage {pct} given twice")
        points[sparsity] = directory.strip()
    return points


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    if args.command == "alive":
        out = plot_alive_ratio(load_history(args.history), args.out)
    elif args.command == "prune-curve":
        scores = load_prune_scores(parse_points(args.point), args.set)
        out = plot_error_vs_prune(scores, args.out, args.per_language, args.title)
        if args.table:
            write_error_table(scores, args.table, args.per_language)
    else:
        panels = {}
        if args.s2lora:
            panels["S2-LoRA"] = s2lora_ranks(args.s2lora, args.threshold)
        if args.adalora:
            panels["AdaLoRA"] = adalora_ranks(args.adalora)
        if not panels:
            raise ConfigError("ranks: give --s2lora and/or --adalora")
        out = plot_rank_heatmaps(panels, args.out, args.max_rank)
        if args.json:
            data = {
                method: [
                    {"layer": layer, "matrix": matrix, "rank": rank}
                    for (layer, matrix), rank in sorted(ranks.items(), key=lambda kv: kv[0][::-1])
                ]
                for method, ranks in panels.items()
            }
            atomic_write_text(args.json, json.dumps(data, indent=2) + "\n")
    logger.info("Wrote %s", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
