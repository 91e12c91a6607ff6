"""Distillation and regularisation losses; they know nothing of models or files."""

from speechkd.losses.divergences import (
    DIVERGENCES,
    ddsd_divergence,
    forward_kl,
    get_divergence,
    js_divergence,
    kl_divergence,
    masked_token_mean,
    reverse_kl,
    skew_kl_divergence,
)
from speechkd.losses.gate_budget import gate_budget_loss, mean_gate_activation

__all__ = [
    "DIVERGENCES",
    "ddsd_divergence",
    "forward_kl",
    "gate_budget_loss",
    "get_divergence",
    "js_divergence",
    "kl_divergence",
    "masked_token_mean",
    "mean_gate_activation",
    "reverse_kl",
    "skew_kl_divergence",
]
