"""Linear layers with a mergeable weight update, and module replacement in Whisper.

Whisper module names (``WhisperForConditionalGeneration``): ``model.encoder.layers.<i>.self_attn.
{q,k,v,out}_proj``, ``model.encoder.layers.<i>.{fc1,fc2}``, ``model.decoder.layers.<i>.{self_attn,
encoder_attn}.{q,k,v,out}_proj`` and ``model.decoder.layers.<i>.{fc1,fc2}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from speechkd.errors import ConfigError

ATTENTION_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
FFN_PROJECTIONS: tuple[str, ...] = ("fc1", "fc2")


class AdaptedLinear(nn.Module):
    """A frozen ``nn.Linear`` (``base_layer``) plus a trainable update ΔW that merges into it."""

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        for p in base_layer.parameters():
            p.requires_grad_(False)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (Whisper's attention code reads ``.weight`` of projections)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The base bias."""
        return self.base_layer.bias

    def delta_weight(self) -> torch.Tensor:
        """ΔW, of the base weight's shape (out_features, in_features)."""
        raise NotImplementedError

    def delta_output(self, x: torch.Tensor) -> torch.Tensor:
        """x ΔWᵀ (subclasses compute it in low rank)."""
        return F.linear(x, self.delta_weight())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.delta_output(x)

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """The base layer with ΔW added to its weight (zero inference cost)."""
        self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
        return self.base_layer


def module_path(name: str) -> tuple[str, str]:
    """Split ``a.b.c`` into (``a.b``, ``c``)."""
    parent, _, child = name.rpartition(".")
    return parent, child


def find_linears(model: nn.Module, pattern: str) -> list[str]:
    """Names of the ``nn.Linear`` modules whose name matches regex ``pattern`` (``re.search``)."""
    regex = re.compile(pattern)
    return [
        name
        for name, module in model.named_modules()
        if type(module) is nn.Linear and regex.search(name)
    ]


def replace_linears(
    model: nn.Module, pattern: str, factory: Callable[[str, nn.Linear], nn.Module]
) -> list[str]:
    """Replace every ``nn.Linear`` matching ``pattern`` by ``factory(name, linear)``.

    Returns the replaced names; raises ``ConfigError`` when nothing matches.
    """
    names = find_linears(model, pattern)
    if not names:
        raise ConfigError(f"no nn.Linear module of the model matches {pattern!r}")
    for name in names:
        parent_name, child = module_path(name)
        parent = model.get_submodule(parent_name)
        setattr(parent, child, factory(name, getattr(parent, child)))
    return names


def merge_adapted_linears(model: nn.Module) -> int:
    """Merge every ``AdaptedLinear`` of ``model`` into a plain ``nn.Linear``; returns how many."""
    names = [n for n, m in model.named_modules() if isinstance(m, AdaptedLinear)]
    for name in names:
        parent_name, child = module_path(name)
        parent = model.get_submodule(parent_name)
        setattr(parent, child, getattr(parent, child).merged_linear())
    return len(names)


def freeze_all(model: nn.Module) -> None:
    """Set ``requires_grad=False`` on every parameter."""
    for p in model.parameters():
        p.requires_grad_(False)
