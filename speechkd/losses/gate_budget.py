"""Gate budget loss of conditional language-specific routing (CLSR, Zhang et al. 2021).

L_g = | Σ gates over real tokens of all routed layers / number of (layer, real token) pairs − b |

which is Eq. 2 of DistilWhisper: encoder and decoder gates are pooled, every (layer, token) pair
counts once, padding is excluded through the masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speechkd.errors import ConfigError


def _masked_sum_and_count(
    gates: Sequence[torch.Tensor], mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    total = torch.zeros((), dtype=torch.float32)
    count = torch.zeros((), dtype=torch.float32)
    for index, layer_gates in enumerate(gates):
        values = layer_gates.float()
        total = total.to(values.device)
        count = count.to(values.device)
        if mask is None:
            total = total + values.sum()
            count = count + values.numel()
            continue
        if mask.shape != values.shape:
            raise ConfigError(
                f"gate mask shape {tuple(mask.shape)} does not match the gates of layer {index} "
                f"{tuple(values.shape)}"
            )
        keep = mask.to(values.device).bool()
        total = total + torch.where(keep, values, torch.zeros_like(values)).sum()
        count = count + keep.sum()
    return total, count


def mean_gate_activation(
    encoder_gates: Sequence[torch.Tensor],
    decoder_gates: Sequence[torch.Tensor] = (),
    encoder_mask: torch.Tensor | None = None,
    decoder_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean gate value over the real tokens of all layers (each layer's gates: ``(B, T)``).

    With hard (0/1) gates this is the share of (layer, token) pairs routed to the language expert.
    Returns 0 when no token is real.
    """
    enc_sum, enc_count = _masked_sum_and_count(encoder_gates, encoder_mask)
    dec_sum, dec_count = _masked_sum_and_count(decoder_gates, decoder_mask)
    if enc_sum.device != dec_sum.device:
        dec_sum, dec_count = dec_sum.to(enc_sum.device), dec_count.to(enc_sum.device)
    return (enc_sum + dec_sum) / (enc_count + dec_count).clamp(min=1)


def gate_budget_loss(
    encoder_gates: Sequence[torch.Tensor],
    decoder_gates: Sequence[torch.Tensor] = (),
    encoder_mask: torch.Tensor | None = None,
    decoder_mask: torch.Tensor | None = None,
    budget: float = 0.5,
) -> torch.Tensor:
    """L_g = |mean gate activation over real encoder and decoder tokens − budget|."""
    if not 0.0 <= budget <= 1.0:
        raise ConfigError(f"gate budget must lie in [0, 1], got {budget}")
    mean = mean_gate_activation(encoder_gates, decoder_gates, encoder_mask, decoder_mask)
    return (mean - budget).abs()
