"""Benchmark the LF-MMI intersection: denominator forward+backward and CTC numerators.

    python -m speechkd.bin.benchmark_mmi --out exp/benchmark_mmi.md            # full grid
    python -m speechkd.bin.benchmark_mmi --quick --out /tmp/benchmark_mmi.md   # a small subset

Denominators: seeded random stochastic graphs of (states, arcs, pdfs) = (500, 5k, 40),
(5k, 50k, 100), (20k, 200k, 500) x batch 1/8/32 x T 300/1000, float32 log-likelihoods, leaky HMM
1e-5, on CPU with ``--threads`` threads (2 by default) and on CUDA when available. Reported: ms
per utterance-frame for forward+backward (median over ``--repeats`` after a warm-up) and the peak
memory of a fresh process running the case (CPU: peak RSS; CUDA: peak allocated). Numerators: CTC
graphs of batch 8, T=300, U=100 against ``torch.nn.functional.ctc_loss`` on the same problem.
The markdown table goes to ``--out``.

With ``--den-graph`` (repeatable) the given denominator graphs (``den.fst.txt``) are timed
instead, as one training update sees them: ``--batch`` utterances of ``--frames`` frames, the
denominator forward and backward, the whole LF-MMI loss and a whole update (forward of a
randomly initialised ``--student`` model on noise, loss, backward, Adam step) for the two
criteria of DistillW2V2: ``lfmmi`` (teacher fine-tuning: CTC numerators of random phone
sequences, cross-entropy regulariser 0.1) and ``distill`` (step 1: the teacher-posterior mask
numerator on the same graph). Reported: medians in ms and the denominator's forward+backward
share of the update::

    python -m speechkd.bin.benchmark_mmi --threads 1 --den-graph data/lang_den_en_o3/den.fst.txt \
        --den-graph data/lang_den_en_o4/den.fst.txt --out exp/benchmark_den.md
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)

GRAPHS = [(500, 5_000, 40), (5_000, 50_000, 100), (20_000, 200_000, 500)]
BATCHES = [1, 8, 32]
FRAMES = [300, 1000]
QUICK_GRAPHS = GRAPHS[:2]
QUICK_BATCHES = [1, 8]
QUICK_FRAMES = [300]
LEAKY = 1e-5


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _denominator_case(args: tuple) -> dict:
    """Run in a fresh process: time forward+backward of one denominator problem."""
    (S, A, P), B, T, device, threads, backend, repeats = args
    torch.set_num_threads(threads)
    from speechkd.mmi import total_scores
    from speechkd.mmi.random_graphs import random_fsa

    graph = random_fsa(S, A, P, seed=0).to(device)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, P, generator=gen).to(device)
    lengths = torch.full((B,), T, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(repeats + 1):
        x = logits.log_softmax(-1).detach().requires_grad_(True)
        _sync(device)
        t0 = time.perf_counter()
        tot = total_scores(graph, x, lengths, backend=backend, leaky_hmm_coefficient=LEAKY)
        tot.sum().backward()
        _sync(device)
        if i:  # the first run builds the cached sparse matrices
            times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": statistics.median(times) * 1e3 / (B * T), "peak_mb": peak_mb}


def _numerator_case(device: str, threads: int, repeats: int) -> dict:
    import torch.nn.functional as F

    from speechkd.mmi import ctc_graph, total_scores

    torch.set_num_threads(threads)
    B, T, U, C = 8, 300, 100, 100
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, C, generator=gen).to(device)
    targets = torch.randint(1, C, (B, U), generator=gen)
    lengths = torch.full((B,), T, device=device)

    def ours() -> None:
        x = logits.clone().requires_grad_(True)
        graphs = [ctc_graph(targets[b]) for b in range(B)]
        total_scores(graphs, x.log_softmax(-1), lengths, backend="prob").sum().backward()

    def reference() -> None:
        x = logits.clone().requires_grad_(True)
        lp = x.log_softmax(-1).transpose(0, 1)
        F.ctc_loss(lp, targets.to(device), lengths, torch.full((B,), U), reduction="sum").backward()

    result = {}
    for name, fn in (("ours", ours), ("ctc_loss", reference)):
        fn()
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        result[name] = statistics.median(times) * 1e3
    return result


def _fmt_graph(g: tuple[int, int, int]) -> str:
    return "({:,}, {:,}, {})".format(*g)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument("--quick", action="store_true", help="a small subset of the grid")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument("--backend", default="prob", choices=["prob", "log", "k2"])
    parser.add_argument(
        "--devices", default="auto", help="comma list of cpu,cuda; 'auto' = cpu (+cuda if present)"
    )
    update = parser.add_argument_group("training-update timing of given denominator graphs")
    update.add_argument(
        "--den-graph", type=Path, action="append", default=[], help="den.fst.txt (repeatable)"
    )
    update.add_argument("--batch", type=int, default=2, help="utterances per update")
    update.add_argument("--frames", type=int, default=100, help="frames per utterance")
    update.add_argument(
        "--student", default="tiny_student", help="model architecture (conf/distill_w2v2/arch) "
        "of the update, or 'none' for the loss alone",
    )  # fmt: skip
    update.add_argument(
        "--leaky-hmm-coefficient", type=float, default=LEAKY, help="denominator leaky HMM"
    )
    update.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall",
        help="wall-clock time, or the process's CPU time (steadier on a shared machine)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    args = get_parser().parse_args(argv)
    if args.den_graph:
        from speechkd.bin.benchmark_den_update import run_update_benchmark

        cli_args = sys.argv[1:] if argv is None else argv
        command = f"python -m speechkd.bin.benchmark_mmi {' '.join(cli_args)}"
        atomic_write_text(args.out, run_update_benchmark(args, command))
        logger.info("wrote %s", args.out)
        return
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.devices != "auto":
        devices = args.devices.split(",")
    graphs, batches, frames = (
        (QUICK_GRAPHS, QUICK_BATCHES, QUICK_FRAMES) if args.quick else (GRAPHS, BATCHES, FRAMES)
    )
    load = os.getloadavg()[0]
    cli_args = sys.argv[1:] if argv is None else argv
    lines = [
        "# LF-MMI intersection benchmark",
        "",
        f"Command: `python -m speechkd.bin.benchmark_mmi {' '.join(cli_args)}`",
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, CPU threads {args.threads}, backend `{args.backend}`, "
        f"leaky HMM {LEAKY}, float32 inputs, load average at start {load:.2f}.",
        "",
        "## Denominator forward+backward",
        "",
        "| device | (states, arcs, pdfs) | batch | T | ms / utterance-frame | peak MB |",
        "|---|---|---|---|---|---|",
    ]
    ctx = multiprocessing.get_context("spawn")
    for device in devices:
        for g in graphs:
            for B in batches:
                for T in frames:
                    case = (g, B, T, device, args.threads, args.backend, args.repeats)
                    with ctx.Pool(1) as pool:
                        res = pool.apply(_denominator_case, (case,))
                    logger.info(
                        "%s %s B=%d T=%d: %.4f ms/utt-frame, %.0f MB",
                        device,
                        g,
                        B,
                        T,
                        res["ms"],
                        res["peak_mb"],
                    )
                    lines.append(
                        f"| {device} | {_fmt_graph(g)} | {B} | {T} | {res['ms']:.4f} | "
                        f"{res['peak_mb']:.0f} |"
                    )
    lines += [
        "",
        "## CTC numerator (batch 8, T=300, U=100, 100 classes), forward+backward",
        "",
        "| device | speechkd.mmi (ms) | F.ctc_loss (ms) | ratio |",
        "|---|---|---|---|",
    ]
    for device in devices:
        res = _numerator_case(device, args.threads, max(args.repeats, 3))
        ratio = res["ours"] / res["ctc_loss"]
        logger.info(
            "numerator %s: %.1f ms vs ctc_loss %.1f ms", device, res["ours"], res["ctc_loss"]
        )
        lines.append(f"| {device} | {res['ours']:.1f} | {res['ctc_loss']:.1f} | {ratio:.2f} |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    run_cli(main)
