"""α-LoRA: LoRA with one trainable scalar rank coefficient per matrix (S2-LoRA paper, §4.2).

ΔW_i = α_i · B_i A_i with B_i (out × r), A_i (r × in) ~ N(0, 0.02²) (AdaLoRA-style init) and
α_i = 0 at init, so the model starts as Whisper. Default: r = 8 on q and v projections.
"""

from __future__ import annotations

import torch
from torch import nn

from speechkd.errors import ConfigError
from speechkd.whisper.peft_layers import AdaptedLinear, freeze_all, replace_linears

DEFAULT_RANK = 8
DEFAULT_INIT_STD = 0.02
QV_PATTERN = r"\.(q_proj|v_proj)$"


class AlphaLoraLinear(AdaptedLinear):
    """A frozen linear layer plus α·B·A."""

    def __init__(self, base_layer: nn.Linear, rank: int, init_std: float) -> None:
        super().__init__(base_layer)
        device = base_layer.weight.device
        out_f, in_f = base_layer.out_features, base_layer.in_features
        self.alpha_lora_B = nn.Parameter(torch.empty(out_f, rank, device=device))
        self.alpha_lora_A = nn.Parameter(torch.empty(rank, in_f, device=device))
        self.alpha_lora_alpha = nn.Parameter(torch.zeros((), device=device))
        nn.init.normal_(self.alpha_lora_B, mean=0.0, std=init_std)
        nn.init.normal_(self.alpha_lora_A, mean=0.0, std=init_std)

    def delta_weight(self) -> torch.Tensor:
        return self.alpha_lora_alpha * (self.alpha_lora_B @ self.alpha_lora_A)

    def delta_output(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.alpha_lora_A.dtype)
        return self.alpha_lora_alpha * ((x @ self.alpha_lora_A.T) @ self.alpha_lora_B.T)


def apply_alpha_lora(
    model: nn.Module,
    rank: int = DEFAULT_RANK,
    init_std: float = DEFAULT_INIT_STD,
    target_pattern: str = QV_PATTERN,
) -> nn.Module:
    """Add α-LoRA in place to the linear layers matching ``target_pattern`` (regex search)."""
    if rank < 1:
        raise ConfigError(f"alpha_lora rank must be >= 1, got {rank}")
    freeze_all(model)
    replace_linears(model, target_pattern, lambda _, lin: AlphaLoraLinear(lin, rank, init_std))
    return model
