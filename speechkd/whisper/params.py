"""Whisper sizes built from config, and parameter accounting (total, trainable, alive).

``total`` counts the Whisper weights only (adapter parameters excluded): it is the denominator of
the "#Trainable Params" percentages in the S2-LoRA paper's Table 2 (HF whisper-medium:
763,857,920). ``alive`` counts the parameters a model needs at inference: all of them (adapters
included, as unmerged LoRA costs inference parameters) minus the entries removed by pruning masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from speechkd.errors import ConfigError

# (d_model, layers, heads, ffn_dim, vocab_size, num_mel_bins) of the OpenAI checkpoints.
WHISPER_SIZES: dict[str, tuple[int, int, int, int, int, int]] = {
    "tiny": (384, 4, 6, 1536, 51865, 80),
    "base": (512, 6, 8, 2048, 51865, 80),
    "small": (768, 12, 12, 3072, 51865, 80),
    "medium": (1024, 24, 16, 4096, 51865, 80),
    "large": (1280, 32, 20, 5120, 51865, 80),
    "large-v2": (1280, 32, 20, 5120, 51865, 80),
    "large-v3": (1280, 32, 20, 5120, 51866, 128),
}

# Name fragments of adapter parameters (peft and ours): never part of the Whisper total.
ADAPTER_MARKERS: tuple[str, ...] = (
    "lora_",
    "ia3_",
    "glora_",
    "s2lora_",
    "alpha_lora_",
    "ranknum",
)


def whisper_config(size: str):
    """The ``WhisperConfig`` of an OpenAI Whisper size ("tiny" … "large-v3"), no download."""
    from transformers import WhisperConfig

    if size not in WHISPER_SIZES:
        raise ConfigError(f"whisper size {size!r} unknown; choose one of {sorted(WHISPER_SIZES)}")
    d_model, layers, heads, ffn, vocab, mels = WHISPER_SIZES[size]
    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=mels,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
    )


def small_whisper_config(
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    ffn_dim: int = 128,
    vocab_size: int = 128,
    num_mel_bins: int = 16,
    max_source_positions: int = 16,
    max_target_positions: int = 32,
):
    """A ``WhisperConfig`` of custom small dimensions (unit tests, toy models).

    The encoder takes ``2 * max_source_positions`` input frames.
    """
    from transformers import WhisperConfig

    special = vocab_size - 4
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
        max_source_positions=max_source_positions,
        max_target_positions=max_target_positions,
        pad_token_id=special,
        bos_token_id=special + 1,
        eos_token_id=special + 1,
        decoder_start_token_id=special + 2,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )


def build_whisper(size, device: str | torch.device = "meta") -> nn.Module:
    """A randomly initialised ``WhisperForConditionalGeneration`` on ``device``.

    ``size``: an OpenAI size name or a ``WhisperConfig``. The default meta device allocates no
    memory: enough for parameter counting.
    """
    from transformers import WhisperForConditionalGeneration

    config = whisper_config(size) if isinstance(size, str) else size
    with torch.device(device):
        return WhisperForConditionalGeneration(config)


def is_adapter_parameter(name: str) -> bool:
    """Whether ``name`` is a parameter added by a PEFT method (not a Whisper weight)."""
    return any(marker in name for marker in ADAPTER_MARKERS)


def unique_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Named parameters with tied tensors counted once (first name wins)."""
    return dict(model.named_parameters(remove_duplicate=True))


def total_parameter_count(model: nn.Module) -> int:
    """Number of Whisper weights (adapter parameters excluded, tied weights once)."""
    return sum(
        p.numel() for n, p in unique_parameters(model).items() if not is_adapter_parameter(n)
    )


def trainable_parameter_count(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (tied weights once)."""
    return sum(p.numel() for p in unique_parameters(model).values() if p.requires_grad)


def alive_parameter_count(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None) -> int:
    """Parameters needed at inference: all parameters minus the entries pruned by ``masks``.

    ``masks`` maps parameter names (as in ``model.named_parameters()``) to boolean keep-masks.
    """
    masks = masks or {}
    params = unique_parameters(model)
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ConfigError(f"pruning masks name parameters the model lacks: {unknown[:3]}")
    pruned = sum(int(m.numel() - int(m.sum())) for m in masks.values())
    return sum(p.numel() for p in params.values()) - pruned


@dataclass(frozen=True)
class ParameterCounts:
    """Parameter accounting of one model."""

    total: int
    trainable: int
    adapter: int
    alive: int

    @property
    def trainable_percent(self) -> float:
        """Trainable parameters in percent of the Whisper total."""
        return 100.0 * self.trainable / self.total


def count_parameters(
    model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None
) -> ParameterCounts:
    """Total (Whisper only), trainable, adapter and alive (inference) parameter counts."""
    params = unique_parameters(model)
    adapter = sum(p.numel() for n, p in params.items() if is_adapter_parameter(n))
    return ParameterCounts(
        total=total_parameter_count(model),
        trainable=trainable_parameter_count(model),
        adapter=adapter,
        alive=alive_parameter_count(model, masks),
    )
