"""Token-level divergences between teacher and student output distributions.

Every function takes logits of shape ``(..., V)`` (teacher first, student second), an optional
mask of shape ``(...)`` (true / non-zero = real position, false = padding) and a temperature τ.
Both distributions are ``softmax(logits / τ)``; the divergence is summed over the vocabulary, then
averaged over the unmasked positions (0 when no position is unmasked).

Temperature scaling convention: the result is multiplied by τ² (Hinton et al.; also what the
DistilWhisper reference does for KL and JS), so gradient magnitudes stay comparable across
temperatures. At τ = 1 this changes nothing; pass ``scale_by_temperature=False`` to get the plain
divergence of the softened distributions (then e.g. JS is bounded by log 2 at every τ).

Teacher logits may contain ``-inf`` (zero probability), e.g. a top-k teacher distribution made by
:func:`speechkd.whisper.teacher_cache.topk_teacher_logits`: every term with a zero-probability
left argument counts 0, so forward KL, JS, skew KL and DDSD stay finite. Reverse KL of a student
against such a teacher is infinite wherever the student puts mass the teacher does not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from speechkd.errors import ConfigError


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    return F.log_softmax(logits.float() / temperature, dim=-1)


def _kl_terms(log_p: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
    """Σ_v p·(log p − log r) over the last axis; entries with p = 0 contribute exactly 0."""
    p = log_p.exp()
    support = p > 0
    safe_log_p = torch.where(support, log_p, torch.zeros_like(log_p))
    safe_log_r = torch.where(support, log_r, torch.zeros_like(log_r))
    return (p * (safe_log_p - safe_log_r)).sum(dim=-1)


def _log_mixture(log_a: torch.Tensor, log_b: torch.Tensor, weight_a: float) -> torch.Tensor:
    """log(w·a + (1 − w)·b) computed in log space."""
    if not 0.0 <= weight_a <= 1.0:
        raise ConfigError(f"mixture weight must lie in [0, 1], got {weight_a}")
    if weight_a == 0.0:
        return log_b
    if weight_a == 1.0:
        return log_a
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-position ``values`` over the positions where ``mask`` is true."""
    if mask is None:
        return values.mean()
    if mask.shape != values.shape:
        raise ConfigError(
            f"mask shape {tuple(mask.shape)} does not match the positions {tuple(values.shape)}"
        )
    keep = mask.bool()
    total = torch.where(keep, values, torch.zeros_like(values)).sum()
    return total / keep.sum().clamp(min=1)


def _reduce(
    per_position: torch.Tensor,
    mask: torch.Tensor | None,
    temperature: float,
    scale_by_temperature: bool,
) -> torch.Tensor:
    loss = masked_token_mean(per_position, mask)
    return loss * temperature**2 if scale_by_temperature else loss


def _check_shapes(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> None:
    if teacher_logits.shape != student_logits.shape:
        raise ConfigError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits "
            f"{tuple(student_logits.shape)} differ in shape"
        )


def kl_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    reverse: bool = False,
    scale_by_temperature: bool = True,
) -> torch.Tensor:
    """Forward KL(T‖S) (``reverse=False``, the classic KD loss) or reverse KL(S‖T)."""
    _check_shapes(teacher_logits, student_logits)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    per_position = _kl_terms(log_s, log_t) if reverse else _kl_terms(log_t, log_s)
    return _reduce(per_position, mask, temperature, scale_by_temperature)


def forward_kl(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    **kw: bool,
) -> torch.Tensor:
    """KL(T‖S): see :func:`kl_divergence`."""
    return kl_divergence(teacher_logits, student_logits, mask, temperature, reverse=False, **kw)


def reverse_kl(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    **kw: bool,
) -> torch.Tensor:
    """KL(S‖T): see :func:`kl_divergence`."""
    return kl_divergence(teacher_logits, student_logits, mask, temperature, reverse=True, **kw)


def js_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    scale_by_temperature: bool = True,
) -> torch.Tensor:
    """Jensen–Shannon divergence ½KL(T‖M) + ½KL(S‖M), M = ½(T + S), mean over unmasked positions.

    Symmetric, 0 for identical distributions and at most log 2 per position (times τ² with the
    default temperature scaling).
    """
    _check_shapes(teacher_logits, student_logits)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    log_m = _log_mixture(log_t, log_s, 0.5)
    per_position = 0.5 * _kl_terms(log_t, log_m) + 0.5 * _kl_terms(log_s, log_m)
    return _reduce(per_position, mask, temperature, scale_by_temperature)


def skew_kl_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 0.1,
    reverse: bool = False,
    scale_by_temperature: bool = True,
) -> torch.Tensor:
    """Skew KL: KL(T ‖ αT + (1−α)S), or with ``reverse=True`` KL(S ‖ αS + (1−α)T).

    α = 0 gives the plain forward / reverse KL; α > 0 keeps the divergence finite and bounded by
    −log α.
    """
    _check_shapes(teacher_logits, student_logits)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    if reverse:
        per_position = _kl_terms(log_s, _log_mixture(log_s, log_t, alpha))
    else:
        per_position = _kl_terms(log_t, _log_mixture(log_t, log_s, alpha))
    return _reduce(per_position, mask, temperature, scale_by_temperature)


def ddsd_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 0.01,
    beta: float = 0.5,
    scale_by_temperature: bool = True,
) -> torch.Tensor:
    """DDSD: β·D_d(S‖T) + (1−β)·D_d(T‖S).

    D_d(T‖S) = KL(T ‖ αT + (1−α)S) and D_d(S‖T) = KL(S ‖ αS + (1−α)T) (skew KL in both
    directions); defaults α = 0.01, β = 0.5.
    """
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(f"DDSD beta must lie in [0, 1], got {beta}")
    _check_shapes(teacher_logits, student_logits)
    log_t = _log_probs(teacher_logits, temperature)
    log_s = _log_probs(student_logits, temperature)
    d_ts = _kl_terms(log_t, _log_mixture(log_t, log_s, alpha))
    d_st = _kl_terms(log_s, _log_mixture(log_s, log_t, alpha))
    per_position = beta * d_st + (1.0 - beta) * d_ts
    return _reduce(per_position, mask, temperature, scale_by_temperature)


DIVERGENCES = {
    "kl": forward_kl,
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "js": js_divergence,
    "skew_kl": skew_kl_divergence,
    "ddsd": ddsd_divergence,
}


def get_divergence(name: str):
    """The divergence function registered under ``name`` (a config value such as "js" or "kl")."""
    try:
        return DIVERGENCES[name]
    except KeyError:
        raise ConfigError(
            f"unknown divergence {name!r}; choose one of {sorted(DIVERGENCES)}"
        ) from None
