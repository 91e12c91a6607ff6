"""``total_scores``: log-semiring total score of frames against graphs, differentiable.

``total_scores(graphs, log_likes, lengths)`` returns, for every utterance ``b``, the log of the sum
over all paths of ``lengths[b]`` arcs from the start state to a final state of
``prod(arc weight * exp(log_likes[b, t, label]))`` times the final weight. ``graphs`` is one
:class:`Fsa` shared by the batch (a denominator) or a list with one :class:`Fsa` per utterance
(numerators). The gradient w.r.t. ``log_likes`` is the pdf occupation posterior (zero on padded
frames ``t >= lengths[b]``).

Backends: ``"log"`` (exact log-space reference), ``"prob"`` (probability space with per-frame
renormalisation, optional leaky HMM; the fast default) and ``"k2"`` (when importable). ``"auto"``
picks ``"k2"`` when it is importable and no leaky HMM is asked for, else ``"prob"``.

An utterance without a surviving path gets ``-inf``, zero gradient and a warning naming its index
in the batch; it never produces NaN.
"""

from __future__ import annotations

import logging
import math

import torch

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.graph_batch import GraphBatch, make_graph_batch
from speechkd.mmi.k2_backend import k2_available, k2_total_scores
from speechkd.mmi.leaky_hmm import leaky_hmm_distribution
from speechkd.mmi.log_backend import LogSpaceTotalScores
from speechkd.mmi.prob_backend import ProbSpaceTotalScores

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "log", "prob", "k2")


def resolve_backend(backend: str, leaky_hmm_coefficient: float = 0.0) -> str:
    """The concrete backend ``"auto"`` stands for (or ``backend`` itself, checked)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "k2" if k2_available() and leaky_hmm_coefficient == 0.0 else "prob"
    if backend == "k2":
        if not k2_available():
            raise ConfigError("backend='k2': k2 cannot be imported in this environment")
        if leaky_hmm_coefficient:
            raise ConfigError("backend='k2' has no leaky HMM; use backend='prob'")
    return backend


def _check_inputs(log_likes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if not isinstance(log_likes, torch.Tensor) or log_likes.dim() != 3:
        raise DataError("total_scores: log_likes must be a [B, T, P] tensor")
    if not log_likes.is_floating_point():
        raise DataError(f"total_scores: log_likes has dtype {log_likes.dtype}, expected floats")
    B, T, _ = log_likes.shape
    lengths = torch.as_tensor(lengths, device=log_likes.device)
    if lengths.shape != (B,) or lengths.is_floating_point():
        raise DataError(f"total_scores: lengths must be an integer tensor of shape ({B},)")
    lengths = lengths.long()
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        b = int(((lengths < 0) | (lengths > T)).nonzero()[0])
        raise DataError(f"total_scores: lengths[{b}] = {int(lengths[b])} outside [0, {T}]")
    return lengths


def _leak_distribution(batch: GraphBatch) -> torch.Tensor:
    return torch.cat([leaky_hmm_distribution(g) for g in batch.graphs])


def total_scores(
    graphs: Fsa | list[Fsa],
    log_likes: torch.Tensor,
    lengths: torch.Tensor,
    backend: str = "auto",
    leaky_hmm_coefficient: float = 0.0,
    prob_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Total log scores ``[B]`` of ``log_likes [B, T, P]`` (valid frames ``lengths [B]``).

    ``prob_dtype`` is the arithmetic of the ``"prob"`` backend; by default the input's dtype for
    a shared graph (float32 is Kaldi's choice for denominators) and float64 for per-utterance
    graphs (numerators are small, and float32 emissions would underflow on forced paths more
    than ~87 nats below the frame's best pdf). Log normalisers are always summed in float64.
    """
    lengths = _check_inputs(log_likes, lengths)
    if leaky_hmm_coefficient < 0 or not math.isfinite(leaky_hmm_coefficient):
        raise ConfigError(f"leaky_hmm_coefficient={leaky_hmm_coefficient}: expected >= 0")
    backend = resolve_backend(backend, leaky_hmm_coefficient)
    B, T, _ = log_likes.shape
    valid = torch.arange(T, device=log_likes.device)[None, :] < lengths[:, None]
    bad = (torch.isnan(log_likes) | torch.isposinf(log_likes)).any(-1) & valid
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"total_scores: log_likes[{b}, {t}] contains NaN or +inf")
    log_likes = log_likes.masked_fill(~valid[..., None], 0.0)
    if backend == "k2":
        total = k2_total_scores(graphs, log_likes, lengths)
    else:
        batch = make_graph_batch(graphs, log_likes)
        eta_pi = None
        if leaky_hmm_coefficient > 0:
            eta_pi = leaky_hmm_coefficient * _leak_distribution(batch)
        if backend == "log":
            log_eta_pi = torch.log(eta_pi) if eta_pi is not None else None
            total = LogSpaceTotalScores.apply(log_likes, batch, lengths, log_eta_pi)
        else:
            if prob_dtype is None:
                prob_dtype = log_likes.dtype if batch.shared else torch.float64
            total = ProbSpaceTotalScores.apply(log_likes, batch, lengths, eta_pi, prob_dtype)
    dead = ~torch.isfinite(total.detach())
    if bool(dead.any()):
        logger.warning(
            "total_scores: no surviving path for batch index(es) %s; their score is -inf and "
            "their gradient zero",
            dead.nonzero().flatten().tolist(),
        )
    return total


def occupation_posteriors(
    graphs: Fsa | list[Fsa],
    log_likes: torch.Tensor,
    lengths: torch.Tensor,
    backend: str = "auto",
    leaky_hmm_coefficient: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(total [B], posteriors [B, T, P])``, both detached: the pdf occupation posteriors."""
    x = log_likes.detach().requires_grad_(True)
    with torch.enable_grad():
        total = total_scores(graphs, x, lengths, backend, leaky_hmm_coefficient)
        (post,) = torch.autograd.grad(total.sum(), x)
    return total.detach(), post
