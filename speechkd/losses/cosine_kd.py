"""Feature- and relation-based cosine KD between matched teacher and student layers.

Both losses take lists of per-layer tensors already paired by the caller (teacher layer
``supervision_map(n_t, n_s)[l]`` with student layer ``l``) and sum ``1 − cos`` over the pairs:

* :func:`feature_cosine_loss` — layer outputs ``[B, T, D]``: cosine over ``D`` per position,
  averaged over the unmasked positions;
* :func:`relation_cosine_loss` — self-attention maps ``[B, H, T, T]`` (query × key): cosine over
  the key axis per query row, averaged over heads and unmasked query rows; padded keys are
  zeroed before the cosine. With equal head counts head ``h`` is compared with head ``h``; with
  different head counts (or a head-averaged ``[B, T, T]`` map on either side) both sides are
  averaged over heads first and the head-mean maps are compared.

``mask`` is ``[B, T]``, true = real frame / token, ``None`` = all real. Computation is in at least
float32. Shape problems raise :class:`~speechkd.errors.DataError` naming the layer pair index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speechkd.errors import DataError
from speechkd.losses.divergences import masked_token_mean

_EPS = 1e-8


def _check_pairs(teacher: list[torch.Tensor], student: list[torch.Tensor], what: str) -> None:
    if len(teacher) != len(student):
        raise DataError(
            f"{what}: {len(teacher)} teacher layers but {len(student)} student layers; "
            "pass matched pairs"
        )
    if not teacher:
        raise DataError(f"{what}: no layer pairs given")


def _check_mask(mask: torch.Tensor | None, batch: int, time: int, layer: int, what: str) -> None:
    if mask is not None and tuple(mask.shape) != (batch, time):
        raise DataError(
            f"{what} layer {layer}: mask shape {tuple(mask.shape)} does not match "
            f"[B, T] = {(batch, time)}"
        )


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def feature_cosine_loss(
    teacher_states: list[torch.Tensor],
    student_states: list[torch.Tensor],
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_l mean over unmasked positions of ``1 − cos(teacher_l[b, t], student_l[b, t])``."""
    _check_pairs(teacher_states, student_states, "feature KD")
    total = None
    for layer, (teacher, student) in enumerate(zip(teacher_states, student_states, strict=True)):
        if teacher.dim() != 3 or teacher.shape != student.shape:
            raise DataError(
                f"feature KD layer {layer}: teacher {tuple(teacher.shape)} and student "
                f"{tuple(student.shape)} must both be [B, T, D] of the same shape"
            )
        _check_mask(mask, teacher.shape[0], teacher.shape[1], layer, "feature KD")
        dtype = _work_dtype(student)
        cos = F.cosine_similarity(teacher.to(dtype), student.to(dtype), dim=-1, eps=_EPS)
        value = masked_token_mean(1.0 - cos, mask)
        total = value if total is None else total + value
    return total


def _attention_maps(attn: torch.Tensor, layer: int, side: str) -> torch.Tensor:
    if attn.dim() == 3:
        attn = attn.unsqueeze(1)
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise DataError(
            f"relation KD layer {layer}: {side} attention {tuple(attn.shape)} must be "
            "[B, H, T, T] (or head-averaged [B, T, T]) self-attention"
        )
    return attn


def relation_cosine_loss(
    teacher_attn: list[torch.Tensor],
    student_attn: list[torch.Tensor],
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_l mean over heads and unmasked query rows of ``1 − cos`` of the attention rows."""
    _check_pairs(teacher_attn, student_attn, "relation KD")
    total = None
    for layer, (teacher, student) in enumerate(zip(teacher_attn, student_attn, strict=True)):
        teacher = _attention_maps(teacher, layer, "teacher")
        student = _attention_maps(student, layer, "student")
        (b_t, h_t, t_t, _), (b_s, h_s, t_s, _) = teacher.shape, student.shape
        if (b_t, t_t) != (b_s, t_s):
            raise DataError(
                f"relation KD layer {layer}: teacher attention {tuple(teacher.shape)} and "
                f"student attention {tuple(student.shape)} differ in batch or length"
            )
        _check_mask(mask, b_t, t_t, layer, "relation KD")
        dtype = _work_dtype(student)
        teacher, student = teacher.to(dtype), student.to(dtype)
        if h_t != h_s:
            teacher = teacher.mean(dim=1, keepdim=True)
            student = student.mean(dim=1, keepdim=True)
        if mask is not None:
            keys = mask.bool()[:, None, None, :]
            teacher = torch.where(keys, teacher, torch.zeros_like(teacher))
            student = torch.where(keys, student, torch.zeros_like(student))
        cos = F.cosine_similarity(teacher, student, dim=-1, eps=_EPS)  # [B, H, T]
        rows = None if mask is None else mask.bool()[:, None, :].expand_as(cos)
        value = masked_token_mean(1.0 - cos, rows)
        total = value if total is None else total + value
    return total
