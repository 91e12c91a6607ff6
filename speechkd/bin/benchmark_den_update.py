"""Training-update timing of denominator graphs: ``benchmark_mmi --den-graph``.

For each ``den.fst.txt``: its size, the one-off costs (reading it; the leak distribution and the
sparse matrices, built on the first update), the denominator forward and backward on the
log-softmax of random logits, and for the two criteria of DistillW2V2 the whole loss
(forward+backward on fixed outputs) and a whole update (model forward on noise, loss, backward,
Adam step). ``den share`` is the denominator's forward+backward over the update. Times are
medians over ``--repeats`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from speechkd.errors import DataError
from speechkd.mmi import Fsa, LFMMILoss, MMIDistillLoss, ctc_graph, occupation_posteriors
from speechkd.mmi.graph_batch import make_graph_batch
from speechkd.mmi.intersect import total_scores
from speechkd.mmi.leaky_hmm import leaky_hmm_distribution
from speechkd.mmi.prob_backend import cached_prob_graph

CRITERIA = ("lfmmi", "distill")
XENT = 0.1  # finetune_*_mmi.yaml's cross-entropy regulariser


def make_clock(kind: str) -> Callable[[], float]:
    """Seconds of wall clock or of this process's CPU time."""
    return time.process_time if kind == "cpu" else time.perf_counter


def median_ms(fn: Callable[[], None], repeats: int, clock: Callable[[], float]) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times) * 1e3


def load_graph(path: Path) -> Fsa:
    if not path.is_file():
        raise DataError(f"{path}: denominator graph not found")
    return Fsa.from_openfst(path.read_text(encoding="utf-8"))


def setup_seconds(den: Fsa, num_pdfs: int, leaky: float, clock: Callable[[], float]) -> float:
    """The one-off work of the first update: leak distribution and sparse matrices."""
    t0 = clock()
    if leaky > 0:
        leaky_hmm_distribution(den)
    batch = make_graph_batch(den, torch.zeros(1, 1, num_pdfs))
    cached_prob_graph(batch, torch.float32)
    return clock() - t0


def den_times(
    den: Fsa, log_likes: torch.Tensor, leaky: float, repeats: int, clock: Callable[[], float]
) -> tuple[float, float]:
    """Median (forward, backward) milliseconds of the denominator on ``log_likes``."""
    lengths = torch.full((log_likes.shape[0],), log_likes.shape[1])
    fwd: list[float] = []
    bwd: list[float] = []
    for i in range(repeats + 1):
        x = log_likes.detach().requires_grad_(True)
        t0 = clock()
        total = total_scores(den, x, lengths, "prob", leaky)
        t1 = clock()
        total.sum().backward()
        t2 = clock()
        if i:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return statistics.median(fwd) * 1e3, statistics.median(bwd) * 1e3


def random_targets(batch: int, frames: int, num_pdfs: int, gen: torch.Generator) -> list:
    """Phone sequences of about a quarter of the frames (CTC numerators that fit)."""
    length = max(frames // 4, 1)
    return [torch.randint(1, num_pdfs, (length,), generator=gen) for _ in range(batch)]


def teacher_log_probs(den: Fsa, shape: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    """Log pdf posteriors of peaky random outputs under ``den``: a teacher whose posterior mask
    holds paths of the graph."""
    logits = torch.randn(*shape, generator=gen) * 4.0
    lengths = torch.full((shape[0],), shape[1])
    _, post = occupation_posteriors(den, logits.log_softmax(-1), lengths, "prob")
    return torch.log(post.clamp_min(1e-30))


class Outputs:
    """The model whose outputs the loss scores: a ``--student`` architecture on noise, or (with
    ``none``) a bare logits tensor."""

    def __init__(self, student: str, batch: int, frames: int, num_pdfs: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.model: torch.nn.Module | None = None
        if student == "none":
            self.logits = torch.randn(batch, frames, num_pdfs, generator=gen).requires_grad_(True)
            params = [self.logits]
        else:
            from speechkd.fairseq_plugin.models.w2v2_student import build_student, receptive_field

            torch.manual_seed(0)
            self.model = build_student(student, num_outputs=num_pdfs)
            window, stride = receptive_field(self.model.conv_layers_spec)
            self.audio = torch.randn(batch, window + (frames - 1) * stride, generator=gen)
            params = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(params, lr=1e-5)

    def log_likes(self) -> torch.Tensor:
        logits = self.logits if self.model is None else self.model(self.audio)["logits"]
        return logits.log_softmax(-1)


def make_criterion(
    name: str, den: Fsa, leaky: float, targets: list, teacher: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``log_likes -> loss`` of criterion ``name`` (see the module docstring)."""
    lfmmi = LFMMILoss(den, leaky_hmm_coefficient=leaky, xent_regularize=XENT, den_backend="prob")
    distill = MMIDistillLoss(den, numerator="mask", leaky_hmm_coefficient=leaky, den_backend="prob")

    def criterion(x: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((x.shape[0],), x.shape[1])
        if name == "lfmmi":  # numerator graphs are made per update, as the fairseq criterion does
            return lfmmi(x, lengths, [ctc_graph(t) for t in targets]).loss
        return distill(x, lengths, teacher).loss

    return criterion


def criterion_times(
    criterion: Callable[[torch.Tensor], torch.Tensor],
    outputs: Outputs,
    repeats: int,
    clock: Callable[[], float],
) -> tuple[float, float]:
    """Median milliseconds of (the loss's forward+backward on fixed outputs, a whole update)."""
    with torch.no_grad():
        fixed = outputs.log_likes()

    def loss_only() -> None:
        criterion(fixed.detach().requires_grad_(True)).backward()

    def update() -> None:
        outputs.optimizer.zero_grad()
        criterion(outputs.log_likes()).backward()
        outputs.optimizer.step()

    return median_ms(loss_only, repeats, clock), median_ms(update, repeats, clock)


def graph_rows(path: Path, args: argparse.Namespace, outputs_for: Callable) -> list[str]:
    """The table rows of one graph (one per criterion)."""
    clock = make_clock(args.clock)
    t0 = clock()
    den = load_graph(path)
    load_s = clock() - t0
    P = den.max_label + 1
    leaky = args.leaky_hmm_coefficient
    setup_s = setup_seconds(den, P, leaky, clock)
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.frames, P)
    log_likes = torch.randn(*shape, generator=gen).log_softmax(-1)
    fwd, bwd = den_times(den, log_likes, leaky, args.repeats, clock)
    targets = random_targets(args.batch, args.frames, P, gen)
    teacher = teacher_log_probs(den, shape, gen)
    outputs = outputs_for(P)
    rows = []
    for name in CRITERIA:
        criterion = make_criterion(name, den, leaky, targets, teacher)
        loss_ms, update_ms = criterion_times(criterion, outputs, args.repeats, clock)
        share = 100.0 * (fwd + bwd) / update_ms
        rows.append(
            f"| {path} | {den.num_states:,} | {den.num_arcs:,} | {load_s:.2f} | {setup_s:.2f} | "
            f"{fwd:.1f} | {bwd:.1f} | {name} | {loss_ms:.1f} | {update_ms:.1f} | {share:.0f} % |"
        )
    return rows


def run_update_benchmark(args: argparse.Namespace, command: str) -> str:
    """The markdown report of ``benchmark_mmi --den-graph ...``."""
    torch.set_num_threads(args.threads)
    outputs: dict[int, Outputs] = {}

    def outputs_for(num_pdfs: int) -> Outputs:
        if num_pdfs not in outputs:
            outputs[num_pdfs] = Outputs(args.student, args.batch, args.frames, num_pdfs)
        return outputs[num_pdfs]

    lines = [
        "# LF-MMI denominator cost in a training update",
        "",
        f"Command: `{command}`",
        "",
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, CPU threads {args.threads}, {args.clock} clock, backend `prob`, "
        f"leaky HMM {args.leaky_hmm_coefficient}, batch {args.batch} x {args.frames} frames, "
        f"model `{args.student}`, medians of {args.repeats} runs, load average at start "
        f"{os.getloadavg()[0]:.2f}.",
        "",
        "| graph | states | arcs | load s | setup s | den fwd ms | den bwd ms | criterion "
        "| loss ms | update ms | den share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in args.den_graph:
        lines += graph_rows(path, args, outputs_for)
    lines += [
        "",
        "setup: the leak distribution and sparse matrices built on the first update; loss: "
        "forward+backward of the criterion on fixed outputs (lfmmi: CTC numerators and "
        f"cross-entropy regulariser {XENT}; distill: the teacher-posterior mask numerator on the "
        "same graph); update: model forward, loss, backward and Adam step; den share: (den fwd + "
        "den bwd) / update.",
    ]
    return "\n".join(lines) + "\n"
