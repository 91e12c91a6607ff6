"""``apply_peft``: one entry point for every Whisper fine-tuning method of the S2-LoRA and PEPSI
papers, with the papers' defaults.

Method → what trains (defaults; every default is an option of the same name):

- ``full``: every Whisper weight (the fixed sinusoidal encoder positions stay frozen, as in HF).
- ``lora``: peft LoRA, r = 8, lora_alpha = 8, on all q and v projections.
- ``adalora``: peft AdaLoRA on all q and v, init_r = 12, target_r = 8 (pass ``total_step``).
- ``alpha_lora``: ΔW = α·B·A, r = 8 on q and v, α = 0 at init (``alpha_lora.py``).
- ``bitfit``: all biases.
- ``ia3``: peft IA3 vectors scaling the outputs of k, v and fc2 (``feedforward_modules=[]``, so
  fc2's vector is on its output as in the S2-LoRA paper, not on its input).
- ``glora``: peft GLoRA, r = 8 on q and v (parameterisation in ``glora.py``).
- ``s2lora``: shared (B_m, A_m) per module group and a coefficient vector per weight, s = 0 and
  unit-norm rows of A / columns of B at init (``init_std=None``; ``s2lora.py``).
- ``pepsi``: peft LoRA, r = 8, lora_alpha = 64, dropout 0.05 on q and v of the decoder's self- and
  cross-attention (whisper-large: 2,621,440 parameters). ``train_base=True`` also trains the
  Whisper weights (PEPSI's lottery-ticket phase, 2 epochs at LR 1e-5).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import torch
from torch import nn

from speechkd.errors import ConfigError
from speechkd.whisper.alpha_lora import apply_alpha_lora
from speechkd.whisper.glora import apply_glora
from speechkd.whisper.params import is_adapter_parameter
from speechkd.whisper.peft_layers import AdaptedLinear, freeze_all, merge_adapted_linears
from speechkd.whisper.s2lora import (
    S2LORA_SHARED_ATTR,
    apply_s2lora,
    s2lora_layers,
    s2lora_regularizer,
)

logger = logging.getLogger(__name__)

PEFT_METHODS: tuple[str, ...] = (
    "full",
    "lora",
    "adalora",
    "alpha_lora",
    "bitfit",
    "ia3",
    "glora",
    "s2lora",
    "pepsi",
)
QV_TARGETS: list[str] = ["q_proj", "v_proj"]
# peft matches a string target with re.fullmatch on module names.
PEPSI_TARGETS = r".*decoder\.layers\.\d+\.(self_attn|encoder_attn)\.(q_proj|v_proj)"
FIXED_PARAMETERS: tuple[str, ...] = ("encoder.embed_positions.weight",)
ADALORA_DEFAULT_TOTAL_STEP = 1000


def is_fixed_parameter(name: str) -> bool:
    """Whisper parameters that never train (sinusoidal encoder positions)."""
    return name.endswith(FIXED_PARAMETERS)


def _full(model: nn.Module) -> nn.Module:
    for name, p in model.named_parameters():
        p.requires_grad_(not is_fixed_parameter(name))
    return model


def _bitfit(model: nn.Module) -> nn.Module:
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("bias"))
    return model


def _lora(
    model: nn.Module,
    r: int = 8,
    lora_alpha: int = 8,
    lora_dropout: float = 0.0,
    target_modules: list[str] | str = QV_TARGETS,
) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules
    )
    return get_peft_model(model, config)


def _adalora(
    model: nn.Module,
    init_r: int = 12,
    target_r: int = 8,
    total_step: int | None = None,
    tinit: int = 0,
    tfinal: int = 0,
    deltaT: int = 1,  # noqa: N803 (peft's name)
    lora_alpha: int = 8,
    lora_dropout: float = 0.0,
    orth_reg_weight: float = 0.5,
    target_modules: list[str] | str = QV_TARGETS,
) -> nn.Module:
    from peft import AdaLoraConfig, get_peft_model

    if total_step is None:
        logger.warning(
            "adalora: total_step not given, using %d (pass the trainer's number of optimizer "
            "steps for the rank budget schedule)",
            ADALORA_DEFAULT_TOTAL_STEP,
        )
        total_step = ADALORA_DEFAULT_TOTAL_STEP
    config = AdaLoraConfig(
        init_r=init_r,
        target_r=target_r,
        total_step=total_step,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=deltaT,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        orth_reg_weight=orth_reg_weight,
        target_modules=target_modules,
    )
    peft_model = get_peft_model(model, config)
    # peft marks the current-rank constant ``ranknum`` trainable; it is not a learned parameter.
    for name, p in peft_model.named_parameters():
        if ".ranknum." in name:
            p.requires_grad_(False)
    return peft_model


def _ia3(
    model: nn.Module,
    target_modules: list[str] | str = ("k_proj", "v_proj", "fc2"),
    feedforward_modules: list[str] | str = (),
) -> nn.Module:
    from peft import IA3Config, get_peft_model

    config = IA3Config(
        target_modules=list(target_modules), feedforward_modules=list(feedforward_modules)
    )
    return get_peft_model(model, config)


def _pepsi(
    model: nn.Module,
    r: int = 8,
    lora_alpha: int = 64,
    lora_dropout: float = 0.05,
    target_modules: list[str] | str = PEPSI_TARGETS,
    train_base: bool = False,
) -> nn.Module:
    peft_model = _lora(model, r, lora_alpha, lora_dropout, target_modules)
    if train_base:
        set_base_trainable(peft_model, True)
    return peft_model


def _glora(
    model: nn.Module, r: int = 8, target_modules: tuple[str, ...] = tuple(QV_TARGETS)
) -> nn.Module:
    return apply_glora(model, rank=r, target_modules=target_modules)


def _alpha_lora(model: nn.Module, r: int = 8, init_std: float = 0.02) -> nn.Module:
    return apply_alpha_lora(model, rank=r, init_std=init_std)


def _s2lora(model: nn.Module, r: int = 8, init_std: float | None = None) -> nn.Module:
    return apply_s2lora(model, rank=r, init_std=init_std)


_METHODS: dict[str, Callable[..., nn.Module]] = {
    "full": _full,
    "lora": _lora,
    "adalora": _adalora,
    "alpha_lora": _alpha_lora,
    "bitfit": _bitfit,
    "ia3": _ia3,
    "glora": _glora,
    "s2lora": _s2lora,
    "pepsi": _pepsi,
}


def apply_peft(model: nn.Module, method: str, **options) -> nn.Module:
    """Return ``model`` prepared for ``method``: exactly the method's parameters require grad.

    peft methods (lora, adalora, ia3, glora, pepsi) return a ``PeftModel`` wrapping ``model``;
    the others modify ``model`` in place and return it. Unknown options raise ``ConfigError``.
    """
    if method not in _METHODS:
        raise ConfigError(f"peft method {method!r} unknown; choose one of {list(PEFT_METHODS)}")
    builder = _METHODS[method]
    try:
        inspect.signature(builder).bind(model, **options)
    except TypeError as err:
        allowed = [p for p in inspect.signature(builder).parameters if p != "model"]
        raise ConfigError(f"peft method {method!r}: {err}; options are {allowed}") from err
    if method not in ("full", "bitfit"):
        freeze_all(model)
    return builder(model, **options)


def set_base_trainable(model: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad`` of every Whisper weight (adapters untouched, fixed ones frozen)."""
    for name, p in model.named_parameters():
        if not is_adapter_parameter(name):
            p.requires_grad_(trainable and not is_fixed_parameter(name))


def peft_regularization(model: nn.Module, **options) -> torch.Tensor:
    """The method's extra loss term (S2-LoRA's L1/L2 regulariser; zero for the others).

    AdaLoRA's orthogonal regulariser is added by peft to ``outputs.loss`` itself.
    """
    if s2lora_layers(model):
        return s2lora_regularizer(model, **options)
    device = next(model.parameters()).device
    return torch.zeros((), device=device)


def after_optimizer_step(model: nn.Module, global_step: int) -> None:
    """Per-step hook of a method (AdaLoRA's rank budget allocation).

    Call after ``optimizer.step()`` and before ``optimizer.zero_grad()`` (AdaLoRA reads the
    gradients for its importance scores); a no-op for the other methods.
    """
    base = getattr(model, "base_model", None)
    if base is not None and hasattr(base, "update_and_allocate"):
        base.update_and_allocate(global_step)


def merge_peft(model: nn.Module) -> nn.Module:
    """Merge the adapters into the Whisper weights and return the plain Whisper model."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if any(isinstance(m, AdaptedLinear) for m in model.modules()):
        merge_adapted_linears(model)
    if hasattr(model, S2LORA_SHARED_ATTR):
        delattr(model, S2LORA_SHARED_ATTR)
    return model
