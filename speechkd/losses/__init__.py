"""Distillation and regularisation losses; they know nothing of models or files."""

from speechkd.losses.cosine_kd import feature_cosine_loss, relation_cosine_loss
from speechkd.losses.ddsd import DynamicDDSDController, ddsd, ddsd_terms
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
from speechkd.losses.hidden_mse import (
    HiddenMSE,
    distill_loss,
    prediction_loss,
    w2v2_layer_map,
)

__all__ = [
    "DIVERGENCES",
    "DynamicDDSDController",
    "HiddenMSE",
    "ddsd",
    "ddsd_divergence",
    "ddsd_terms",
    "distill_loss",
    "feature_cosine_loss",
    "forward_kl",
    "gate_budget_loss",
    "get_divergence",
    "js_divergence",
    "kl_divergence",
    "masked_token_mean",
    "mean_gate_activation",
    "prediction_loss",
    "relation_cosine_loss",
    "reverse_kl",
    "skew_kl_divergence",
    "w2v2_layer_map",
]
