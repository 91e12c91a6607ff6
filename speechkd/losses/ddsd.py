"""Dual skew divergence (DDSD) of the joint speech/text ST KD recipe, and its dynamic β.

``D(T, S) = β·D_d(S‖T) + (1 − β)·D_d(T‖S)`` with the skew terms
``D_d(T‖S) = KL(T ‖ αT + (1 − α)S)`` and ``D_d(S‖T) = KL(S ‖ αS + (1 − α)T)``, T the teacher's
(or text branch's) distribution and S the student's (or speech branch's), both softmax of logits
at temperature 1. The paper uses α = 0.01, β = 0.5.

The *dynamic* variant (Li et al. 2019, "Controllable dual skew divergence loss for NMT") moves β
during training with a feedback controller instead of fixing it; the ST KD paper only reports the
fixed β = 0.5. :class:`DynamicDDSDController` implements the rule documented there.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from speechkd.errors import ConfigError, DataError
from speechkd.losses.divergences import ddsd_divergence, skew_kl_divergence


def _check_alpha_beta(alpha: float, beta: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha < 1.0:
        raise ConfigError(f"DDSD alpha must lie in [0, 1) (1 makes the loss 0), got {alpha!r}")
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= beta <= 1.0:
        raise ConfigError(f"DDSD beta must lie in [0, 1], got {beta!r}")


def _check_inputs(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, mask: torch.Tensor | None
) -> None:
    if teacher_logits.shape != student_logits.shape:
        raise DataError(
            f"teacher logits {tuple(teacher_logits.shape)} and student logits "
            f"{tuple(student_logits.shape)} differ in shape"
        )
    if mask is not None and tuple(mask.shape) != tuple(teacher_logits.shape[:-1]):
        raise DataError(
            f"mask shape {tuple(mask.shape)} does not match the logits' positions "
            f"{tuple(teacher_logits.shape[:-1])}"
        )


def ddsd(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    alpha: float = 0.01,
    beta: float = 0.5,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over unmasked positions of ``β·D_d(S‖T) + (1 − β)·D_d(T‖S)``.

    Logits ``(..., V)`` (e.g. ``[B, T, V]``); ``mask`` ``(...)``, true = the position counts,
    ``None`` = all count. Detach the teacher's logits to train the student alone.
    """
    _check_alpha_beta(alpha, beta)
    _check_inputs(teacher_logits, student_logits, mask)
    return ddsd_divergence(
        teacher_logits,
        student_logits,
        mask,
        temperature=1.0,
        alpha=float(alpha),
        beta=float(beta),
        scale_by_temperature=False,
    )


def ddsd_terms(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    alpha: float = 0.01,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two skew terms ``(D_d(T‖S), D_d(S‖T))``, each a mean over unmasked positions.

    ``ddsd(..., beta=b) == b·d_st + (1 − b)·d_ts``; feed the detached terms to
    :meth:`DynamicDDSDController.step` to get the next β.
    """
    _check_alpha_beta(alpha, 0.0)
    _check_inputs(teacher_logits, student_logits, mask)
    common = dict(temperature=1.0, alpha=float(alpha), scale_by_temperature=False)
    d_ts = skew_kl_divergence(teacher_logits, student_logits, mask, reverse=False, **common)
    d_st = skew_kl_divergence(teacher_logits, student_logits, mask, reverse=True, **common)
    return d_ts, d_st


class DynamicDDSDController:
    """PI controller that adapts DDSD's β to keep the two skew terms in balance.

    Li et al. (2019) control DDSD's balance weight with a proportional-integral (PI) feedback
    loop rather than fixing it. Here the measured quantity is the reverse term's share

    ``r_t = D_d(S‖T) / (D_d(T‖S) + D_d(S‖T))``  (optionally smoothed: ``r̄_t = m·r̄_{t−1} +
    (1 − m)·r_t``, ``m = smoothing``, ``r̄_0 = r_1``)

    and the error ``e_t = r̄_t − target``. β weights D_d(S‖T), so a reverse term that is too
    large (``e_t > 0``) raises β to push it down:

    ``β_t = clip(β_0 + k_p·e_t + k_i·Σ_{j≤t} e_j, β_min, β_max)``.

    Anti-windup: when the error would push β past a bound, the integral advances only up to the
    value that puts β on that bound (it never grows while β is saturated), so β leaves the bound
    as soon as the error changes sign. A step whose two terms are both 0 (identical
    distributions) leaves β unchanged. ``state_dict`` / ``load_state_dict`` carry β, the
    integral, the smoothed ratio and the step count, so a resumed run continues the same
    trajectory.
    """

    def __init__(
        self,
        beta_init: float = 0.5,
        target: float = 0.5,
        kp: float = 0.5,
        ki: float = 0.01,
        beta_min: float = 0.0,
        beta_max: float = 1.0,
        smoothing: float = 0.0,
    ) -> None:
        if not 0.0 <= beta_min <= beta_max <= 1.0:
            raise ConfigError(
                f"need 0 <= beta_min <= beta_max <= 1, got beta_min={beta_min}, beta_max={beta_max}"
            )
        if not beta_min <= beta_init <= beta_max:
            raise ConfigError(f"beta_init={beta_init} lies outside [{beta_min}, {beta_max}]")
        if not 0.0 < target < 1.0:
            raise ConfigError(f"target (share of D_d(S||T)) must lie in (0, 1), got {target}")
        if kp < 0 or ki < 0:
            raise ConfigError(f"controller gains must be >= 0, got kp={kp}, ki={ki}")
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"smoothing must lie in [0, 1), got {smoothing}")
        self.beta_init = float(beta_init)
        self.target = float(target)
        self.kp = float(kp)
        self.ki = float(ki)
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.smoothing = float(smoothing)
        self.beta = self.beta_init
        self.integral = 0.0
        self.ratio: float | None = None
        self.steps = 0

    @staticmethod
    def _value(name: str, value: float | torch.Tensor) -> float:
        number = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(number) or number < 0:
            raise DataError(f"{name} must be a finite divergence >= 0, got {number}")
        return number

    def step(self, d_ts: float | torch.Tensor, d_st: float | torch.Tensor) -> float:
        """Update from this step's ``D_d(T‖S)`` and ``D_d(S‖T)``; return the β to use next."""
        forward = self._value("d_ts", d_ts)
        reverse = self._value("d_st", d_st)
        self.steps += 1
        total = forward + reverse
        if total <= 0.0:
            return self.beta
        share = reverse / total
        if self.ratio is None:
            self.ratio = share
        else:
            self.ratio = self.smoothing * self.ratio + (1.0 - self.smoothing) * share
        error = self.ratio - self.target
        proportional = self.beta_init + self.kp * error
        candidate = self.integral + error
        raw = proportional + self.ki * candidate
        if self.ki > 0 and raw > self.beta_max and error > 0:
            # advance the integral only up to the value that puts beta on the upper bound
            self.integral = max(self.integral, (self.beta_max - proportional) / self.ki)
        elif self.ki > 0 and raw < self.beta_min and error < 0:
            self.integral = min(self.integral, (self.beta_min - proportional) / self.ki)
        else:
            self.integral = candidate
        raw = proportional + self.ki * self.integral
        self.beta = min(self.beta_max, max(self.beta_min, raw))
        return self.beta

    def state_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "integral": self.integral,
            "ratio": self.ratio,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"beta", "integral", "ratio", "steps"} - set(state)
        if missing:
            raise ConfigError(f"DDSD controller state lacks {sorted(missing)}")
        beta = float(state["beta"])
        if not self.beta_min <= beta <= self.beta_max:
            raise ConfigError(
                f"DDSD controller state beta={beta} lies outside [{self.beta_min}, {self.beta_max}]"
            )
        self.beta = beta
        self.integral = float(state["integral"])
        self.ratio = None if state["ratio"] is None else float(state["ratio"])
        self.steps = int(state["steps"])
