"""Numerator supervision from a teacher's per-frame pdf posteriors (MMI distillation).

* :func:`frame_best_path_graphs`: the teacher's per-frame argmax pdfs as one-path linear graphs
  (a hard frame alignment);
* :func:`ctc_best_path_graphs`: the argmax sequence collapsed as CTC does (merge repeats, drop
  blanks) into a :func:`~speechkd.mmi.graphs.ctc_graph`, so the student aligns freely;
* :func:`posterior_mask`: pdf ``p`` is allowed at frame ``t`` when the teacher gives it posterior
  ``>= threshold`` at some frame within ``t +- tolerance`` (the frame's argmax is always allowed);
  intersecting a graph with the mask (:func:`mask_log_likes`) gives a lattice-like numerator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.graphs import ctc_graph, linear_graph


def _check(teacher_log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if teacher_log_probs.dim() != 3:
        raise DataError("teacher_log_probs must be a [B, T, P] tensor of log posteriors")
    lengths = torch.as_tensor(lengths, device=teacher_log_probs.device).long()
    if lengths.shape != (teacher_log_probs.shape[0],):
        raise DataError(f"lengths must have shape ({teacher_log_probs.shape[0]},)")
    return lengths


def frame_best_path_graphs(teacher_log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Fsa]:
    """One linear graph per utterance reading the teacher's argmax pdf at every valid frame."""
    lengths = _check(teacher_log_probs, lengths)
    best = teacher_log_probs.argmax(-1).cpu()
    return [linear_graph(best[b, : int(n)]) for b, n in enumerate(lengths.tolist())]


def ctc_best_path_graphs(
    teacher_log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
) -> list[Fsa]:
    """CTC graphs of the teacher's collapsed best path (repeats merged, blanks removed)."""
    lengths = _check(teacher_log_probs, lengths)
    best = teacher_log_probs.argmax(-1).cpu()
    graphs = []
    for b, n in enumerate(lengths.tolist()):
        seq = torch.unique_consecutive(best[b, :n])
        graphs.append(ctc_graph(seq[seq != blank], blank=blank))
    return graphs


def posterior_mask(
    teacher_log_probs: torch.Tensor,
    lengths: torch.Tensor,
    threshold: float = 0.05,
    tolerance: int = 1,
) -> torch.Tensor:
    """Bool ``[B, T, P]``: pdfs with teacher posterior ``>= threshold`` within ``+- tolerance``."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold={threshold}: expected a probability in (0, 1]")
    if tolerance < 0:
        raise ConfigError(f"tolerance={tolerance}: expected >= 0")
    lengths = _check(teacher_log_probs, lengths)
    B, T, P = teacher_log_probs.shape
    valid = torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]
    post = teacher_log_probs.detach().exp() * valid[..., None]
    allowed = post >= threshold
    allowed |= F.one_hot(teacher_log_probs.argmax(-1), P).bool()
    if tolerance:
        x = allowed.permute(0, 2, 1).reshape(B * P, 1, T).float()
        x = F.max_pool1d(x, 2 * tolerance + 1, stride=1, padding=tolerance)
        allowed = x.reshape(B, P, T).permute(0, 2, 1) > 0
    return allowed & valid[..., None]


def mask_log_likes(log_likes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log_likes`` with disallowed (frame, pdf) entries set to ``-inf`` (gradient zero there)."""
    if mask.shape != log_likes.shape:
        raise DataError(
            f"mask shape {tuple(mask.shape)} != log_likes shape {tuple(log_likes.shape)}"
        )
    return log_likes.masked_fill(~mask, float("-inf"))
