"""LF-MMI losses: supervised (:class:`LFMMILoss`) and teacher-supervised (:class:`MMIDistillLoss`).

Per utterance the MMI objective is ``num - den_scale * den`` with ``num`` the total score against
the numerator graph(s) and ``den`` against the shared denominator graph (with Kaldi's leaky HMM);
the loss is its negation. As in Kaldi's chain training, optional regularisers are added:

* cross-entropy (``xent_regularize``): ``- xent_regularize * sum_t,p gamma_num(t,p) * xent(t,p)``
  where ``gamma_num`` are the numerator occupation posteriors (constants) and ``xent`` the
  log-softmax output of a separate cross-entropy head (the MMI output's own log-softmax if none);
* output L2 (``output_l2_regularize``): ``0.5 * output_l2_regularize * sum ||output_t||^2`` over
  valid frames.

Utterances whose numerator or denominator has no surviving path are left out of the loss (zero
gradient), counted and named in :class:`MMIOutput` and in a warning, never NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.intersect import occupation_posteriors, resolve_backend, total_scores
from speechkd.mmi.teacher_numerators import (
    ctc_best_path_graphs,
    frame_best_path_graphs,
    mask_log_likes,
    posterior_mask,
)

logger = logging.getLogger(__name__)

REDUCTIONS = ("sum", "mean", "none")


@dataclass
class MMIOutput:
    """The loss to minimise and what it is made of (per-utterance terms are detached)."""

    loss: torch.Tensor
    num: torch.Tensor  # [B] numerator log scores
    den: torch.Tensor  # [B] denominator log scores
    num_frames: int  # valid frames of the utterances counted in the loss
    failed: list[int] = field(default_factory=list)  # batch indices left out
    xent: torch.Tensor | None = None  # cross-entropy objective (higher is better)
    l2: torch.Tensor | None = None  # output L2 penalty

    @property
    def num_failed(self) -> int:
        return len(self.failed)


class _MMIBase(torch.nn.Module):
    def __init__(
        self,
        den_graph: Fsa,
        den_scale: float = 1.0,
        leaky_hmm_coefficient: float = 1e-5,
        xent_regularize: float = 0.0,
        output_l2_regularize: float = 0.0,
        num_backend: str = "auto",
        den_backend: str = "auto",
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        if not isinstance(den_graph, Fsa):
            raise ConfigError(f"den_graph: expected an Fsa, got {type(den_graph).__name__}")
        for name, value in (
            ("den_scale", den_scale),
            ("leaky_hmm_coefficient", leaky_hmm_coefficient),
            ("xent_regularize", xent_regularize),
            ("output_l2_regularize", output_l2_regularize),
        ):
            if value < 0:
                raise ConfigError(f"{name}={value}: expected >= 0")
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction={reduction!r}: expected one of {', '.join(REDUCTIONS)}")
        resolve_backend(num_backend)
        resolve_backend(den_backend, leaky_hmm_coefficient)
        self.den_graph = den_graph
        self.den_scale = den_scale
        self.leaky_hmm_coefficient = leaky_hmm_coefficient
        self.xent_regularize = xent_regularize
        self.output_l2_regularize = output_l2_regularize
        self.num_backend = num_backend
        self.den_backend = den_backend
        self.reduction = reduction
        self.num_leaky_hmm_coefficient = 0.0

    def _combine(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        num: torch.Tensor,
        num_graphs: Fsa | list[Fsa],
        num_log_likes: torch.Tensor,
        xent_log_probs: torch.Tensor | None,
    ) -> MMIOutput:
        lengths = torch.as_tensor(lengths, device=log_likes.device).long()
        den = total_scores(
            self.den_graph, log_likes, lengths, self.den_backend, self.leaky_hmm_coefficient
        )
        ok = torch.isfinite(num.detach()) & torch.isfinite(den.detach())
        failed = (~ok).nonzero().flatten().tolist()
        if failed:
            logger.warning(
                "MMI: %d of %d utterances left out of the loss (no numerator or denominator "
                "path): batch indices %s",
                len(failed),
                len(ok),
                failed,
            )
        zero = torch.zeros_like(num)
        objf = torch.where(ok, num, zero) - self.den_scale * torch.where(ok, den, zero)
        per_utt = -objf
        T = log_likes.shape[1]
        valid = (torch.arange(T, device=log_likes.device)[None, :] < lengths[:, None]) & ok[:, None]
        xent = l2 = None
        if self.xent_regularize > 0:
            if xent_log_probs is None:
                xent_log_probs = log_likes.log_softmax(-1)
            if xent_log_probs.shape != log_likes.shape:
                raise DataError(
                    f"xent_log_probs shape {tuple(xent_log_probs.shape)} != log_likes shape "
                    f"{tuple(log_likes.shape)}"
                )
            _, gamma = occupation_posteriors(
                num_graphs, num_log_likes, lengths, self.num_backend, self.num_leaky_hmm_coefficient
            )
            gamma = gamma * valid[..., None]
            xent_utt = (gamma * xent_log_probs.masked_fill(gamma == 0, 0.0)).sum((1, 2))
            xent = xent_utt.sum()
            per_utt = per_utt - self.xent_regularize * xent_utt
        if self.output_l2_regularize > 0:
            l2_utt = 0.5 * (log_likes.masked_fill(~valid[..., None], 0.0) ** 2).sum((1, 2))
            l2 = l2_utt.sum()
            per_utt = per_utt + self.output_l2_regularize * l2_utt
        num_frames = int(valid.sum())
        if self.reduction == "none":
            loss = per_utt
        elif self.reduction == "sum":
            loss = per_utt.sum()
        else:
            loss = per_utt.sum() / max(num_frames, 1)
        return MMIOutput(
            loss=loss,
            num=num.detach(),
            den=den.detach(),
            num_frames=num_frames,
            failed=failed,
            xent=None if xent is None else xent.detach(),
            l2=None if l2 is None else l2.detach(),
        )


class LFMMILoss(_MMIBase):
    """Lattice-free MMI with a shared denominator graph and per-utterance numerator graphs.

    ``forward(log_likes [B, T, P], lengths [B], num_graphs: list[Fsa], xent_log_probs=None)``
    returns an :class:`MMIOutput`; minimise ``.loss``. ``log_likes`` is the network output used
    as pdf log-likelihoods (a log-softmax output for CTC-style models, raw as in Kaldi chain).
    """

    def forward(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        num_graphs: list[Fsa],
        xent_log_probs: torch.Tensor | None = None,
    ) -> MMIOutput:
        num = total_scores(num_graphs, log_likes, lengths, self.num_backend)
        return self._combine(log_likes, lengths, num, num_graphs, log_likes, xent_log_probs)


NUMERATORS = ("frame_best_path", "ctc_best_path", "mask")


class MMIDistillLoss(_MMIBase):
    """MMI whose numerator comes from a teacher's per-frame pdf log posteriors.

    ``numerator``: ``"frame_best_path"`` (the teacher's argmax alignment), ``"ctc_best_path"``
    (its collapsed CTC label sequence; ``blank`` is the blank pdf) or ``"mask"`` (the graph, by
    default the denominator, intersected with :func:`posterior_mask` of the teacher with
    ``threshold`` and ``tolerance``; ``forward(..., num_graphs=...)`` intersects per-utterance
    graphs instead). The teacher must share the student's pdf set and frame rate.
    """

    def __init__(
        self,
        den_graph: Fsa,
        numerator: str = "mask",
        threshold: float = 0.05,
        tolerance: int = 1,
        blank: int = 0,
        den_scale: float = 1.0,
        leaky_hmm_coefficient: float = 1e-5,
        num_leaky_hmm_coefficient: float = 0.0,
        xent_regularize: float = 0.0,
        output_l2_regularize: float = 0.0,
        num_backend: str = "auto",
        den_backend: str = "auto",
        reduction: str = "sum",
    ) -> None:
        super().__init__(
            den_graph,
            den_scale,
            leaky_hmm_coefficient,
            xent_regularize,
            output_l2_regularize,
            num_backend,
            den_backend,
            reduction,
        )
        if numerator not in NUMERATORS:
            raise ConfigError(f"numerator={numerator!r}: expected one of {', '.join(NUMERATORS)}")
        if num_leaky_hmm_coefficient < 0:
            raise ConfigError(
                f"num_leaky_hmm_coefficient={num_leaky_hmm_coefficient}: expected >= 0"
            )
        resolve_backend(num_backend, num_leaky_hmm_coefficient)
        self.numerator = numerator
        self.threshold = threshold
        self.tolerance = tolerance
        self.blank = blank
        self.num_leaky_hmm_coefficient = num_leaky_hmm_coefficient

    def forward(
        self,
        log_likes: torch.Tensor,
        lengths: torch.Tensor,
        teacher_log_probs: torch.Tensor,
        num_graphs: list[Fsa] | None = None,
        xent_log_probs: torch.Tensor | None = None,
    ) -> MMIOutput:
        if teacher_log_probs.shape != log_likes.shape:
            raise DataError(
                f"teacher_log_probs shape {tuple(teacher_log_probs.shape)} != student log_likes "
                f"shape {tuple(log_likes.shape)} (same pdfs and frame rate expected)"
            )
        lengths = torch.as_tensor(lengths, device=log_likes.device).long()
        teacher = teacher_log_probs.detach()
        num_log_likes = log_likes
        if self.numerator == "frame_best_path":
            graphs: Fsa | list[Fsa] = frame_best_path_graphs(teacher, lengths)
        elif self.numerator == "ctc_best_path":
            graphs = ctc_best_path_graphs(teacher, lengths, self.blank)
        else:
            mask = posterior_mask(teacher, lengths, self.threshold, self.tolerance)
            num_log_likes = mask_log_likes(log_likes, mask)
            graphs = num_graphs if num_graphs is not None else self.den_graph
        num = total_scores(
            graphs, num_log_likes, lengths, self.num_backend, self.num_leaky_hmm_coefficient
        )
        return self._combine(log_likes, lengths, num, graphs, num_log_likes, xent_log_probs)
