"""Trainable / inference parameter table of every Whisper PEFT method (S2-LoRA paper's Table 2,
PEPSI's parameter columns), built from config on the meta device: no weights, no download.

Percentages are of the Whisper total (adapters excluded), as in the S2-LoRA paper. PEPSI's
sparsity s is a share of ALL parameters (PEPSI: 0.77B of 1.54B alive for whisper-large at 50%):
the alive count after pruning follows from the exact global magnitude pruning, total −
round(s · total) (LoRA merged; the unprunable biases, norms, fixed positions and LoRA-carrying
q/v count as alive, so the prunable weights lose a larger share, shown in its own column);
``--materialize`` checks it by pruning a randomly initialised model on CPU (whisper-large: about
8 GB of memory and minutes).

Examples::

    python -m speechkd.bin.peft_param_table
    python -m speechkd.bin.peft_param_table --size medium --pepsi-size large --out params.md
    python -m speechkd.bin.peft_param_table --pepsi-size small --materialize
"""

from __future__ import annotations

import argparse
import logging
import time

from speechkd.eval.markdown import md_text
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper.params import WHISPER_SIZES, build_whisper, count_parameters
from speechkd.whisper.peft_methods import apply_peft
from speechkd.whisper.pruning import (
    check_sparsity,
    init_masks,
    prunable_parameters,
    prune_round,
    prune_schedule,
    pruned_count,
)

logger = logging.getLogger(__name__)

# S2-LoRA paper, Table 2 (whisper-medium): "#Trainable Params".
PAPER_TABLE2: dict[str, str] = {
    "full": "100%",
    "glora": "0.81%",
    "adalora": "0.46%",
    "lora": "0.31%",
    "bitfit": "0.08%",
    "ia3": "0.03%",
    "alpha_lora": "0.31%",
    "s2lora": "0.02%",
}
METHOD_OPTIONS: dict[str, dict] = {"adalora": {"total_step": 1000}}


def table2_rows(size: str) -> list[list[str]]:
    """One row per S2-LoRA-paper method: method, trainable, % of total, paper's %, inference."""
    rows = []
    for method, paper in PAPER_TABLE2.items():
        model = apply_peft(build_whisper(size), method, **METHOD_OPTIONS.get(method, {}))
        counts = count_parameters(model)
        rows.append(
            [
                method,
                f"{counts.trainable:,}",
                f"{counts.trainable_percent:.2f}%",
                paper,
                f"{counts.total:,}",
            ]
        )
    return rows


def pepsi_alive_count(total: int, n_prunable: int, sparsity: float) -> int:
    """Alive parameters after pruning ``sparsity`` of all ``total`` parameters (adapters merged)."""
    check_sparsity(sparsity, n_prunable, total)
    return total - pruned_count(total, sparsity)


def pepsi_rows(size: str, sparsity: float, materialize: bool) -> list[list[str]]:
    """PEPSI's columns: trainable and inference (alive) parameters, LoRA and pruned variants;
    the pruned ones with their prunable weights and the share of those pruned."""
    lora_model = apply_peft(build_whisper(size), "pepsi")
    lora = count_parameters(lora_model)
    total = lora.total
    n_prunable = sum(p.numel() for p in prunable_parameters(lora_model).values())
    pepsi_alive = pepsi_alive_count(total, n_prunable, sparsity)
    plain = build_whisper(size)
    n_prunable_plain = sum(p.numel() for p in prunable_parameters(plain).values())
    lth_alive = pepsi_alive_count(total, n_prunable_plain, sparsity)

    def pruned_row(name: str, trainable: str, alive: int, prunable: int) -> list[str]:
        return [
            f"{name} ({sparsity:.0%} of all pruned)",
            trainable,
            f"{alive:,}",
            f"{alive / total:.3f}",
            f"{prunable:,}",
            f"{(total - alive) / prunable:.3f}",
        ]

    rows = [
        ["zero-shot", "-", f"{total:,}", "1.000", "-", "-"],
        ["FFT", f"{total:,}", f"{total:,}", "1.000", "-", "-"],
        ["LoRA (decoder q,v)", f"{lora.trainable:,}", f"{lora.alive:,}", "-", "-", "-"],
        pruned_row("LTH", "-", lth_alive, n_prunable_plain),
        pruned_row("PEPSI, LoRA merged", f"{lora.trainable:,}", pepsi_alive, n_prunable),
    ]
    if materialize:
        start = time.time()
        model = apply_peft(build_whisper(size, device="cpu"), "pepsi")
        masks = init_masks(model)
        for step in prune_schedule(sparsity):
            masks = prune_round(model, masks, step, total)
        measured = total - sum(int((~m).sum()) for m in masks.values())
        logger.info("materialised pruning of whisper-%s: %.0f s", size, time.time() - start)
        if measured != pepsi_alive:
            raise RuntimeError(f"pruned alive count {measured} != expected {pepsi_alive}")
        rows[-1][0] += " (pruning run)"
    return rows


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="medium", choices=sorted(WHISPER_SIZES))
    parser.add_argument("--pepsi-size", default="large", choices=sorted(WHISPER_SIZES))
    parser.add_argument(
        "--sparsity", type=float, default=0.5, help="PEPSI target sparsity (of all parameters)"
    )
    parser.add_argument(
        "--materialize",
        action="store_true",
        help="also prune a randomly initialised --pepsi-size model to verify the alive count",
    )
    parser.add_argument("--out", default=None, help="markdown file to write (atomically)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    text = "\n\n".join(
        [
            f"### Trainable parameters, whisper-{args.size} (S2-LoRA paper, Table 2)",
            md_text(
                ["method", "#trainable", "% of Whisper", "paper", "Whisper total"],
                table2_rows(args.size),
            ),
            f"### PEPSI parameters, whisper-{args.pepsi_size}",
            md_text(
                [
                    "model",
                    "#train params",
                    "#test (alive) params",
                    "alive / all",
                    "#prunable",
                    "pruned / prunable",
                ],
                pepsi_rows(args.pepsi_size, args.sparsity, args.materialize),
            ),
        ]
    )
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    run_cli(main)
