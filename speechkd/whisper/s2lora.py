"""S2-LoRA: sparsely shared LoRA (Liu et al., 2024, arXiv:2309.11756).

Whisper is split into five module groups: Enc-SAM, Enc-FFM, Dec-SAM, Dec-CAM, Dec-FFM. Each group
owns one shared pair B_m (d_out × r), A_m (r × d_in); every adapted weight W_i of the group keeps
only a rank-coefficient vector s_i (r values):

    ΔW_i = B_m diag(s_i) A_m

Attention groups adapt q, k, v and out projections (all d_model × d_model). FFN groups adapt fc1
(ffn × d_model) with the pair as is and fc2 (d_model × ffn) with its transpose,
ΔW_fc2 = (B_m diag(s) A_m)ᵀ, so one pair serves both. Training adds ``s2lora_regularizer``:
α1·(1/N)Σ_i‖s_i‖₁ + α2·Σ_m (1/2r)Σ_k(‖B_m[:,k]‖₂ + ‖A_m[k,:]‖₂), α1 = 0.05, α2 = 0.1
(the paper's Eq. 4 written for one pair, summed over the five groups).

Init: s = 0 (the model starts as Whisper), A and B Gaussian as in AdaLoRA, each row of A and
column of B of unit expected norm (std 1/√d_in and 1/√d_out): the singular vectors of the SVD
form S2-LoRA's coefficients generalise, with s in the units of singular values of ΔW. At
whisper-medium/large this is AdaLoRA's N(0, 0.02²) scale (1/√1024 = 0.031, 1/√4096 = 0.016);
``init_std`` sets one fixed std instead. A fixed 0.02 on small models collapses the training:
∂CE/∂s_k = Σ (x·A_k)(δ·B_k) scales with std², and once it is below the L1 weight α1/N for every
coefficient, s = 0 is the optimum of CE + L1 (0 is in its subgradient); A and B, which get no
cross-entropy gradient while s = 0 (ΔW is linear in s), are then shrunk by the α2 term alone
(under Adam by about the learning rate per step), which lowers ∂CE/∂s further. The merged model
is the starting one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from speechkd.errors import ConfigError
from speechkd.whisper.peft_layers import (
    AdaptedLinear,
    freeze_all,
    merge_adapted_linears,
    replace_linears,
)

S2LORA_SHARED_ATTR = "s2lora_shared"
DEFAULT_RANK = 8
DEFAULT_ALPHA1 = 0.05
DEFAULT_ALPHA2 = 0.1
RANK_THRESHOLD = 1e-4

_ATTN = r"(q_proj|k_proj|v_proj|out_proj)"
_FFN = r"(fc1|fc2)"
# Module group → regex on Whisper module names (group 1: layer index, group 2: projection).
S2LORA_GROUPS: dict[str, str] = {
    "enc_sam": rf"(?:^|\.)encoder\.layers\.(\d+)\.self_attn\.{_ATTN}$",
    "enc_ffm": rf"(?:^|\.)encoder\.layers\.(\d+)\.{_FFN}$",
    "dec_sam": rf"(?:^|\.)decoder\.layers\.(\d+)\.self_attn\.{_ATTN}$",
    "dec_cam": rf"(?:^|\.)decoder\.layers\.(\d+)\.encoder_attn\.{_ATTN}$",
    "dec_ffm": rf"(?:^|\.)decoder\.layers\.(\d+)\.{_FFN}$",
}


class SharedLowRankPair(nn.Module):
    """The shared B (out × r) and A (r × in) of one module group.

    ``init_std`` None: std 1/√out for B and 1/√in for A (unit expected norm of every column of B
    and row of A); a number: that std for both.
    """

    def __init__(
        self, out_features: int, in_features: int, rank: int, init_std: float | None = None
    ) -> None:
        super().__init__()
        self.B = nn.Parameter(torch.empty(out_features, rank))
        self.A = nn.Parameter(torch.empty(rank, in_features))
        unit = init_std is None
        nn.init.normal_(self.B, mean=0.0, std=out_features**-0.5 if unit else init_std)
        nn.init.normal_(self.A, mean=0.0, std=in_features**-0.5 if unit else init_std)

    @property
    def rank(self) -> int:
        """Shared rank r."""
        return self.A.shape[0]


class S2LoraLinear(AdaptedLinear):
    """A frozen linear layer with ΔW = B diag(s) A (or its transpose) from a shared pair."""

    def __init__(self, base_layer: nn.Linear, pair: SharedLowRankPair, transpose: bool) -> None:
        super().__init__(base_layer)
        # A plain list keeps the shared pair out of this module's parameters (registered once,
        # on the model root).
        self._pair = [pair]
        self.transpose = transpose
        self.s2lora_s = nn.Parameter(torch.zeros(pair.rank, device=pair.A.device))

    @property
    def pair(self) -> SharedLowRankPair:
        """The shared (B, A) of this layer's module group."""
        return self._pair[0]

    def delta_weight(self) -> torch.Tensor:
        pair = self.pair
        delta = (pair.B * self.s2lora_s) @ pair.A
        return delta.T if self.transpose else delta

    def delta_output(self, x: torch.Tensor) -> torch.Tensor:
        pair = self.pair
        x = x.to(pair.A.dtype)
        if self.transpose:  # x (A^T S B^T)^T = x B S A
            return ((x @ pair.B) * self.s2lora_s) @ pair.A
        return ((x @ pair.A.T) * self.s2lora_s) @ pair.B.T


@dataclass(frozen=True)
class S2LoraTarget:
    """One adapted weight: its module group, layer index and projection name."""

    group: str
    layer: int
    projection: str


def parse_target(name: str) -> S2LoraTarget | None:
    """The S2-LoRA group, layer and projection of a Whisper module name (None if not adapted)."""
    for group, pattern in S2LORA_GROUPS.items():
        match = re.search(pattern, name)
        if match:
            return S2LoraTarget(group, int(match.group(1)), match.group(2))
    return None


def apply_s2lora(
    model: nn.Module,
    rank: int = DEFAULT_RANK,
    init_std: float | None = None,
    groups: tuple[str, ...] = tuple(S2LORA_GROUPS),
) -> nn.Module:
    """Add S2-LoRA to a Whisper model in place: only the shared pairs and the s_i train.

    ``init_std``: None for unit-norm rows of A and columns of B (see the module docstring).
    """
    unknown = sorted(set(groups) - set(S2LORA_GROUPS))
    if unknown:
        raise ConfigError(f"s2lora groups {unknown} unknown; choose from {list(S2LORA_GROUPS)}")
    if rank < 1:
        raise ConfigError(f"s2lora rank must be >= 1, got {rank}")
    if init_std is not None and init_std <= 0:
        raise ConfigError(f"s2lora init_std must be positive (or None), got {init_std}")
    freeze_all(model)
    shared = nn.ModuleDict()
    for group in groups:
        pattern = S2LORA_GROUPS[group]

        def factory(name: str, linear: nn.Linear, group: str = group) -> S2LoraLinear:
            projection = parse_target(name).projection
            transpose = projection == "fc2"
            out_f, in_f = (
                (linear.in_features, linear.out_features)
                if transpose
                else (linear.out_features, linear.in_features)
            )
            if group not in shared:
                with torch.device(linear.weight.device):
                    shared[group] = SharedLowRankPair(out_f, in_f, rank, init_std)
            pair = shared[group]
            if (pair.B.shape[0], pair.A.shape[1]) != (out_f, in_f):
                raise ConfigError(
                    f"s2lora group {group}: {name} has shape {tuple(linear.weight.shape)}, "
                    f"the shared pair serves {(pair.B.shape[0], pair.A.shape[1])}"
                )
            return S2LoraLinear(linear, pair, transpose)

        replace_linears(model, pattern, factory)
    setattr(model, S2LORA_SHARED_ATTR, shared)
    return model


def s2lora_layers(model: nn.Module) -> dict[str, S2LoraLinear]:
    """The S2-LoRA layers of ``model`` by module name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, S2LoraLinear)}


def shared_pairs(model: nn.Module) -> dict[str, SharedLowRankPair]:
    """The shared (B, A) pairs by module group."""
    shared = getattr(model, S2LORA_SHARED_ATTR, None)
    if shared is None:
        raise ConfigError("the model has no S2-LoRA adapters (apply_peft(model, 's2lora') first)")
    return dict(shared.items())


def s2lora_regularizer(
    model: nn.Module, alpha1: float = DEFAULT_ALPHA1, alpha2: float = DEFAULT_ALPHA2
) -> torch.Tensor:
    """α1·(1/N)Σ‖s_i‖₁ + α2·Σ_m (1/2r)Σ_k(‖B_m[:,k]‖₂ + ‖A_m[k,:]‖₂), to add to the CE loss."""
    layers = list(s2lora_layers(model).values())
    if not layers:
        raise ConfigError("the model has no S2-LoRA layers (apply_peft(model, 's2lora') first)")
    l1 = torch.stack([layer.s2lora_s.abs().sum() for layer in layers]).mean()
    l2 = sum(
        (pair.B.norm(dim=0).sum() + pair.A.norm(dim=1).sum()) / (2 * pair.rank)
        for pair in shared_pairs(model).values()
    )
    return alpha1 * l1 + alpha2 * l2


def merge_s2lora(model: nn.Module) -> nn.Module:
    """Merge every ΔW_i into its weight and drop the adapters: plain Whisper, no extra cost."""
    merge_adapted_linears(model)
    if hasattr(model, S2LORA_SHARED_ATTR):
        delattr(model, S2LORA_SHARED_ATTR)
    return model


def s2lora_ranks(model: nn.Module, threshold: float = RANK_THRESHOLD) -> dict[str, int]:
    """Rank of each adapted weight: the number of |s_i[k]| >= ``threshold``."""
    return {
        name: int((layer.s2lora_s.detach().abs() >= threshold).sum())
        for name, layer in s2lora_layers(model).items()
    }


def adalora_ranks(model: nn.Module) -> dict[str, int]:
    """Rank of each AdaLoRA-adapted weight: its non-zero singular values (``lora_E``)."""
    ranks = {}
    for name, module in model.named_modules():
        lora_e = getattr(module, "lora_E", None)
        if isinstance(lora_e, nn.ParameterDict) and lora_e:
            values = next(iter(lora_e.values())).detach()
            ranks[name.removeprefix("base_model.model.")] = int((values != 0).sum())
    return ranks


ROW_ORDER: dict[str, tuple[str, ...]] = {
    "attention": ("q_proj", "v_proj", "k_proj", "out_proj"),
    "ffn": ("fc1", "fc2"),
}


def rank_matrices(ranks: dict[str, int]) -> dict[str, list[list[int]]]:
    """Heatmap matrices per module group: rows q, v, k, o (attention) or fc1, fc2 (FFN),
    columns layers, as the S2-LoRA paper's Fig. 3 (absent projections → 0)."""
    cells: dict[str, dict[tuple[str, int], int]] = {}
    for name, rank in ranks.items():
        target = parse_target(name)
        if target is not None:
            cells.setdefault(target.group, {})[(target.projection, target.layer)] = rank
    matrices = {}
    for group, group_cells in cells.items():
        rows = ROW_ORDER["ffn" if group.endswith("ffm") else "attention"]
        n_layers = 1 + max(layer for _, layer in group_cells)
        matrices[group] = [[group_cells.get((p, i), 0) for i in range(n_layers)] for p in rows]
    return matrices


__all__ = [
    "S2LORA_GROUPS",
    "S2LoraLinear",
    "SharedLowRankPair",
    "adalora_ranks",
    "apply_s2lora",
    "merge_s2lora",
    "rank_matrices",
    "s2lora_layers",
    "s2lora_ranks",
    "s2lora_regularizer",
    "shared_pairs",
]
