"""Lottery-ticket iterative magnitude pruning (IMP) of Whisper, as in PEPSI.

One IMP round (``speechkd.whisper.imp.run_imp`` drives the loop): train Whisper+LoRA briefly,
``prune_round`` to the next sparsity of ``prune_schedule`` (global magnitude over all prunable
weights still alive), ``rewind`` the survivors to the pretrained values (or a step-t
``snapshot``), repeat.

Sparsity is the pruned share of ALL parameters of the model (:func:`speechkd.whisper.params.
total_parameter_count`: every Whisper weight, tied ones once, adapters excluded as they merge
into the weights), as PEPSI's "0.77B of 1.54B" for whisper-large at 50%. The unprunable
parameters count as alive, so the prunable weights are pruned harder than the target: at most
``max_sparsity`` of the model can be pruned.

Masks are boolean keep-masks keyed by parameter name (as in ``model.named_parameters()``;
:func:`resolve_masks` maps plain Whisper names onto a peft-wrapped model). Fine-tuning a pruned
model keeps its zeros with :func:`mask_enforcing_hook` (after each optimizer step) and
:func:`enforce_masks` (gradients).

Prunable: the weights of ``nn.Linear``, ``nn.Conv1d`` and ``nn.Embedding`` modules (token and
learned decoder position embeddings included). Never pruned: biases and layer norms, the fixed
sinusoidal encoder positions, adapter parameters, and every weight of a layer an adapter is
attached to (peft tuner layers and our ``AdaptedLinear``), plus names matching ``exclude``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_path
from speechkd.whisper.params import (
    is_adapter_parameter,
    total_parameter_count,
    unique_parameters,
)
from speechkd.whisper.peft_layers import AdaptedLinear

logger = logging.getLogger(__name__)

DEFAULT_TARGET_SPARSITY = 0.5
DEFAULT_PRUNE_RATE = 0.1
PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Embedding)
FIXED_WEIGHTS = ("encoder.embed_positions.weight",)
MASK_FORMAT = "speechkd-masks-v1"
PRUNED_FORMAT = "speechkd-pruned-model-v1"

Masks = dict[str, torch.Tensor]


def prune_schedule(
    target_sparsity: float = DEFAULT_TARGET_SPARSITY, rate: float = DEFAULT_PRUNE_RATE
) -> list[float]:
    """Cumulative sparsity (pruned share of all parameters) after each round: 1 − (1 − rate)^i,
    i.e. each round prunes ``rate`` of the parameters still alive; the last round is clamped to
    the target, so the schedule ends exactly there.

    Defaults: [0.1, 0.19, 0.271, 0.3439, 0.40951, 0.468559, 0.5].
    """
    if not 0.0 < target_sparsity < 1.0:
        raise ConfigError(f"target_sparsity must be in (0, 1), got {target_sparsity}")
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"prune rate must be in (0, 1), got {rate}")
    schedule: list[float] = []
    i = 1
    while True:
        pruned = round(1.0 - (1.0 - rate) ** i, 12)
        if pruned >= target_sparsity:
            schedule.append(target_sparsity)
            return schedule
        schedule.append(pruned)
        i += 1


def _adapter_subtrees(model: nn.Module) -> list[str]:
    """Names of modules an adapter wraps (their weights and all below are never pruned)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a pinned dependency
        BaseTunerLayer = ()  # noqa: N806
    wrappers = (AdaptedLinear, BaseTunerLayer) if BaseTunerLayer else (AdaptedLinear,)
    return [n for n, m in model.named_modules() if isinstance(m, wrappers)]


def prunable_parameters(model: nn.Module, exclude: Sequence[str] = ()) -> dict[str, nn.Parameter]:
    """The prunable weights by parameter name (see the module docstring); ``exclude``: regexes."""
    subtrees = _adapter_subtrees(model)
    names_by_id = {id(p): n for n, p in unique_parameters(model).items()}
    patterns = [re.compile(p) for p in exclude]
    result: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_MODULES):
            continue
        if any(module_name == s or module_name.startswith(s + ".") for s in subtrees):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or id(weight) not in names_by_id:
            continue
        name = names_by_id[id(weight)]
        if (
            name in result
            or name.endswith(FIXED_WEIGHTS)
            or is_adapter_parameter(name)
            or any(p.search(name) for p in patterns)
        ):
            continue
        result[name] = weight
    return result


def init_masks(model: nn.Module, exclude: Sequence[str] = ()) -> Masks:
    """All-true keep-masks for the prunable weights of ``model``."""
    return {
        name: torch.ones_like(p, dtype=torch.bool)
        for name, p in prunable_parameters(model, exclude).items()
    }


def mask_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Pruned fraction of the masked (prunable) weights only (not the model's sparsity)."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / total


def masked_count(masks: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(pruned, masked) entry counts of ``masks``."""
    masked = sum(m.numel() for m in masks.values())
    return masked - sum(int(m.sum()) for m in masks.values()), masked


def pruned_share(masks: Mapping[str, torch.Tensor], total: int) -> float:
    """Pruned entries of ``masks`` over ``total`` parameters: the model's sparsity."""
    return masked_count(masks)[0] / total


def pruned_count(n_params: int, sparsity: float) -> int:
    """Number of weights pruned at ``sparsity`` of ``n_params`` parameters (rounded to nearest)."""
    return int(round(sparsity * n_params))


def max_sparsity(n_prunable: int, total: int) -> float:
    """The highest sparsity of ``total`` parameters reachable with ``n_prunable`` prunable ones."""
    return n_prunable / total


def check_sparsity(sparsity: float, n_prunable: int, total: int) -> None:
    """``ConfigError`` unless ``sparsity`` of ``total`` parameters can be pruned from the
    ``n_prunable`` prunable weights (the unprunable ones stay alive)."""
    need = pruned_count(total, sparsity)
    if need > n_prunable:
        raise ConfigError(
            f"sparsity {sparsity:g} of all {total:,} parameters means pruning {need:,} weights, "
            f"but only {n_prunable:,} are prunable (biases, norms, fixed positions and "
            f"adapter-carrying weights stay): at most {max_sparsity(n_prunable, total):.4f}"
        )


def _masked_params(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    params = unique_parameters(model)
    missing = sorted(set(masks) - set(params))
    if missing:
        raise ConfigError(f"pruning masks name parameters the model lacks: {missing[:3]}")
    for name, mask in masks.items():
        if mask.shape != params[name].shape:
            raise ConfigError(
                f"mask of {name} has shape {tuple(mask.shape)}, the weight "
                f"{tuple(params[name].shape)}"
            )
    return {name: params[name] for name in masks}


def _alive_abs_bits(param: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """|w| of the alive entries as int32 bit patterns (monotone in |w| for finite floats)."""
    values = param.detach().abs().float()[mask.to(param.device)]
    return values.view(torch.int32)


def _kth_smallest_bits(
    params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], k: int
) -> tuple[int, int]:
    """Bit pattern of the k-th smallest alive |w| (1-based) and how many alive |w| lie below it.

    Exact two-pass radix selection over all tensors: no concatenation of all weights.
    """
    high = torch.zeros(1 << 15, dtype=torch.int64)
    for name, p in params.items():
        high += torch.bincount((_alive_abs_bits(p, masks[name]) >> 16).cpu(), minlength=1 << 15)
    cum = torch.cumsum(high, 0)
    top = int(torch.searchsorted(cum, torch.tensor(k)))
    below = int(cum[top - 1]) if top > 0 else 0
    low = torch.zeros(1 << 16, dtype=torch.int64)
    for name, p in params.items():
        bits = _alive_abs_bits(p, masks[name])
        bits = bits[(bits >> 16) == top].cpu()
        low += torch.bincount(bits & 0xFFFF, minlength=1 << 16)
    cum_low = torch.cumsum(low, 0)
    bottom = int(torch.searchsorted(cum_low, torch.tensor(k - below)))
    below += int(cum_low[bottom - 1]) if bottom > 0 else 0
    return (top << 16) | bottom, below


@torch.no_grad()
def global_magnitude_prune(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    sparsity: float,
    total: int | None = None,
) -> Masks:
    """New masks pruning the globally smallest-|w| alive weights until round(``sparsity`` ·
    ``total``) entries are pruned (ties broken in parameter order, so the count is exact).

    ``total``: the parameters the sparsity refers to; default all of the model's
    (:func:`total_parameter_count`). ``ConfigError`` if the prunable weights cannot reach it.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    params = _masked_params(model, masks)
    total = total_parameter_count(model) if total is None else total
    already, n_masked = masked_count(masks)
    check_sparsity(sparsity, n_masked, total)
    k = pruned_count(total, sparsity) - already
    new_masks = {name: m.clone() for name, m in masks.items()}
    if k <= 0:
        if k < 0:
            logger.warning(
                "masks already prune %d weights, more than sparsity %.4f", already, sparsity
            )
        return new_masks
    threshold, below = _kth_smallest_bits(params, masks, k)
    ties_left = k - below
    for name, p in params.items():
        mask = new_masks[name]
        bits = p.detach().abs().float().view(torch.int32).to(mask.device)
        mask &= bits > threshold
        ties = (bits == threshold) & masks[name].to(mask.device)
        if ties_left > 0 and bool(ties.any()):
            # Keep the ties beyond the budget (first ones in flat order are pruned).
            tie_index = torch.nonzero(ties.flatten()).squeeze(1)
            keep = tie_index[ties_left:]
            ties_left -= min(ties_left, tie_index.numel())
            mask.view(-1)[keep] = True
        else:
            mask |= ties
    return new_masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries of the model's weights in place."""
    for name, p in _masked_params(model, masks).items():
        p.masked_fill_(~masks[name].to(p.device), 0.0)


def prune_round(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    sparsity: float,
    total: int | None = None,
) -> Masks:
    """One IMP pruning step: global magnitude pruning to ``sparsity`` of ``total`` parameters
    (default: all of the model's), then apply the masks."""
    total = total_parameter_count(model) if total is None else total
    new_masks = global_magnitude_prune(model, masks, sparsity, total)
    apply_masks(model, new_masks)
    pruned, n_masked = masked_count(new_masks)
    logger.info(
        "pruned %d weights: sparsity %.4f of %d parameters (%.4f of the %d prunable)",
        pruned,
        pruned / total,
        total,
        pruned / n_masked,
        n_masked,
    )
    return new_masks


def snapshot(model: nn.Module, names: Iterable[str] | None = None, device: str = "cpu") -> dict:
    """Copies of the model's parameters (all, or ``names``): θ_pre or θ_t for ``rewind``."""
    params = unique_parameters(model)
    selected = params if names is None else {n: params[n] for n in names}
    return {n: p.detach().to(device, copy=True) for n, p in selected.items()}


@torch.no_grad()
def rewind(
    model: nn.Module, reference: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
) -> None:
    """Reset every parameter in ``reference`` to its value there, then re-apply ``masks``.

    Surviving weights get exactly their reference values; pruned ones stay zero.
    """
    params = unique_parameters(model)
    missing = sorted(set(masks) - set(reference))
    if missing:
        raise ConfigError(f"rewind reference lacks masked weights, e.g. {missing[:3]}")
    unknown = sorted(set(reference) - set(params))
    if unknown:
        raise ConfigError(f"rewind reference names parameters the model lacks: {unknown[:3]}")
    for name, value in reference.items():
        params[name].copy_(value)
    apply_masks(model, masks)


@dataclass
class MaskEnforcement:
    """Hooks that keep pruned weights at zero during training; ``remove()`` detaches them."""

    handles: list

    def remove(self) -> None:
        """Remove every hook."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def enforce_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | None = None,
) -> MaskEnforcement:
    """Keep masks through training: zero the gradients of pruned entries and, with ``optimizer``,
    re-apply the masks after every optimizer step (AdamW's decay and moments cannot revive them).
    """
    handles = []
    for name, p in _masked_params(model, masks).items():
        if p.requires_grad:
            mask = _DeviceMask(masks[name])
            handles.append(p.register_hook(lambda grad, mask=mask: grad * mask.on(grad.device)))
    if optimizer is not None:
        handles.append(optimizer.register_step_post_hook(lambda *_: apply_masks(model, masks)))
    apply_masks(model, masks)
    return MaskEnforcement(handles)


class _DeviceMask:
    """A mask with a cached copy on the device last asked for (the model may move after the
    hooks are registered, e.g. when a trainer puts it on the GPU)."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def on(self, device: torch.device) -> torch.Tensor:
        if self.mask.device != device:
            self.mask = self.mask.to(device)
        return self.mask


def plain_parameter_name(name: str) -> str:
    """The name of a parameter in the plain Whisper model (peft wrapper prefixes removed)."""
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def resolve_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> Masks:
    """``masks`` keyed by the parameter names of ``model``.

    Masks saved with plain Whisper names (as ``pepsi_prune`` writes them) fit a peft-wrapped
    model too, and masks of a wrapped model fit the plain one: names are matched after removing
    the wrapper prefixes. A mask that names no parameter of ``model`` raises ``ConfigError``.
    """
    params = unique_parameters(model)
    by_plain: dict[str, str] = {}
    for name in params:
        by_plain.setdefault(plain_parameter_name(name), name)
    resolved: Masks = {}
    missing: list[str] = []
    for name, mask in masks.items():
        target = name if name in params else by_plain.get(plain_parameter_name(name))
        if target is None:
            missing.append(name)
        else:
            resolved[target] = mask
    if missing:
        raise ConfigError(f"pruning masks name parameters the model lacks: {missing[:3]}")
    _masked_params(model, resolved)  # shapes
    return resolved


def mask_enforcing_hook(
    masks: Mapping[str, torch.Tensor],
    then: Callable[[nn.Module, int], None] | None = None,
) -> Callable[[nn.Module, int], None]:
    """An ``after_optimizer_step(model, global_step)`` hook that re-zeroes the pruned weights.

    For fine-tuning a pruned model (LTH-FT, PEPSI's LoRA phase): pass it as the trainer's
    ``after_optimizer_step``; ``then`` (e.g. :func:`speechkd.whisper.peft_methods.
    after_optimizer_step`) runs after it. Mask names may be plain Whisper names or the model's
    own (:func:`resolve_masks`, resolved on the first call); the masks are kept on the
    parameters' device. Zero the pruned entries before the first step with :func:`apply_masks`
    (or :func:`enforce_masks`, which also keeps their gradients at zero so that gradient
    clipping sees only the alive weights).
    """
    state: dict[str, object] = {"model": None, "pairs": []}

    @torch.no_grad()
    def hook(model: nn.Module, global_step: int) -> None:
        if state["model"] is not model:
            resolved = resolve_masks(model, masks)
            params = unique_parameters(model)
            state["pairs"] = [(params[n], _DeviceMask(~m.bool())) for n, m in resolved.items()]
            state["model"] = model
        for param, pruned in state["pairs"]:
            param.masked_fill_(pruned.on(param.device), 0.0)
        if then is not None:
            then(model, global_step)

    return hook


# Fig. 3b of PEPSI: alive percentage per part of Whisper.
LAYER_GROUPS: dict[str, str] = {
    "encoder_conv1": r"encoder\.conv1\.",
    "encoder_conv2": r"encoder\.conv2\.",
    "encoder_layers": r"encoder\.layers\.",
    "encoder_layer_norm": r"encoder\.layer_norm\.",
    "decoder_token_embedding": r"decoder\.embed_tokens\.",
    "decoder_position_embedding": r"decoder\.embed_positions\.",
    "decoder_layers": r"decoder\.layers\.",
    "decoder_layer_norm": r"decoder\.layer_norm\.",
}


def layer_group(name: str) -> str:
    """The Fig. 3b group of a parameter name ("other" if none)."""
    for group, pattern in LAYER_GROUPS.items():
        if re.search(pattern, name):
            return group
    return "other"


def alive_fraction_by_group(
    model: nn.Module, masks: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Alive fraction of the Whisper weights (adapters excluded) per layer group."""
    totals: dict[str, int] = {}
    alive: dict[str, int] = {}
    for name, p in unique_parameters(model).items():
        if is_adapter_parameter(name):
            continue
        group = layer_group(name)
        totals[group] = totals.get(group, 0) + p.numel()
        kept = int(masks[name].sum()) if name in masks else p.numel()
        alive[group] = alive.get(group, 0) + kept
    return {g: alive[g] / totals[g] for g in totals}


def unwrap_mask_names(masks: Mapping[str, torch.Tensor]) -> Masks:
    """Mask names of a peft-wrapped model as in the plain Whisper model after ``merge_peft``."""
    return {plain_parameter_name(name): mask for name, mask in masks.items()}


def _pack(mask: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.packbits(mask.detach().cpu().numpy().reshape(-1)))


def _unpack(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    n = int(np.prod(shape))
    bits = np.unpackbits(packed.numpy(), count=n).astype(bool)
    return torch.from_numpy(bits).reshape(tuple(shape))


def save_masks(masks: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write masks as bit-packed uint8 tensors in a safetensors file (atomically)."""
    from safetensors.torch import save_file

    tensors = {name: _pack(m) for name, m in masks.items()}
    shapes = {name: list(m.shape) for name, m in masks.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": MASK_FORMAT, "shapes": json.dumps(shapes)})


def load_masks(path: str | os.PathLike) -> Masks:
    """Read masks written by ``save_masks``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != MASK_FORMAT:
            raise DataError(f"{path}: not a speechkd mask file (format {meta.get('format')!r})")
        shapes = json.loads(meta["shapes"])
        return {name: _unpack(f.get_tensor(name), shape) for name, shape in shapes.items()}


def save_pruned(
    model: nn.Module, masks: Mapping[str, torch.Tensor], path: str | os.PathLike
) -> None:
    """Save the model compactly: masked weights as alive values + bit-packed mask, the rest dense.

    Tied tensors are stored once. The file holds the masks too (``load_pruned`` returns them).
    """
    from safetensors.torch import save_file

    _masked_params(model, masks)
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int], str] = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), t.numel())
        if key in seen and t.numel() > 0:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        t = t.detach().cpu().contiguous()
        if name in masks:
            mask = masks[name].cpu()
            tensors[f"{name}::values"] = t[mask].contiguous()
            tensors[f"{name}::mask"] = _pack(mask)
            shapes[name] = list(t.shape)
        else:
            tensors[name] = t
    meta = {"format": PRUNED_FORMAT, "shapes": json.dumps(shapes), "aliases": json.dumps(aliases)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


@torch.no_grad()
def load_pruned(model: nn.Module, path: str | os.PathLike) -> Masks:
    """Load a file of ``save_pruned`` into ``model`` (same architecture); returns the masks."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != PRUNED_FORMAT:
            raise DataError(f"{path}: not a pruned speechkd model (format {meta.get('format')!r})")
        shapes = json.loads(meta["shapes"])
        aliases = json.loads(meta["aliases"])
        state: dict[str, torch.Tensor] = {}
        masks: Masks = {}
        for key in f.keys():
            if key.endswith(("::values", "::mask")):
                continue
            state[key] = f.get_tensor(key)
        for name, shape in shapes.items():
            mask = _unpack(f.get_tensor(f"{name}::mask"), shape)
            values = f.get_tensor(f"{name}::values")
            dense = torch.zeros(tuple(shape), dtype=values.dtype)
            dense[mask] = values
            state[name] = dense
            masks[name] = mask
    for alias, source in aliases.items():
        state[alias] = state[source]
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise DataError(
            f"{path}: does not fit the model (missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]})"
        )
    return masks
