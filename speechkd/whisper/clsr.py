"""Conditional language-specific routing (CLSR) of Whisper's feed-forward layers (DistilWhisper).

:func:`add_clsr` replaces the feed-forward block (fc1 → activation → fc2) of every encoder and
decoder layer of a transformers Whisper model by a :class:`CLSRFeedForward`:

    CLSR(z) = g(z)·FFN_lang(z) + (1 − g(z))·FFN_shared(z)

FFN_shared is the original (frozen) feed-forward; FFN_lang, one per language, starts as a copy of
it. The gate of each language is a bottleneck G(z) = W₂·ReLU(W₁·dropout(z) + b₁) (d → 64 → 1, no
bias on the output, initialised as in the reference implementation so that G = 0 at the start).

* Training: g = σ(G(z) + ε), ε ~ N(0, σ_t²), σ_t ramping linearly from 0 to ``max_noise_std``
  (default 5) over ``noise_ramp_steps`` steps of a :class:`GateNoiseSchedule` the trainer steps.
  With probability ``skip_gate_prob`` (s = 0.2) the language path is skipped (shared FFN only).
  As in the reference implementation the draw is made per forward call and per layer
  (``skip_gate_unit="batch"``: each layer independently skips the whole batch);
  ``skip_gate_unit="token"`` draws per token instead.
* Evaluation: hard gate g = 1[G(z) ≥ 0], no noise, no skipping.
* No active language (``set_active_language(model, None)``): the shared path only, gates 0.

The active language is set per batch (language-homogeneous batches); only that language's expert
and gate take part in the forward pass, so only they receive gradient. After :func:`add_clsr` the
parameters with ``requires_grad`` are exactly the experts and gates of the installed languages.

Each CLSR module keeps the gate values of its last forward call (``last_gates``, shape
``(B, T)``: the computed gates, also when the layer skipped the language path, as in the
reference) for the gate budget loss and the gate analysis; padding is excluded by the masks the
caller passes to :func:`clsr_gate_budget_loss` / :func:`gate_usage`.

Implementation note: the layer's own forward is kept. Its ``fc1`` attribute becomes the CLSR
module's call (the module itself is registered as ``layer.clsr``), ``activation_fn`` and ``fc2``
become identities and the layer's activation dropout moves inside each FFN path. The output
dropout of the layer (``config.dropout``) still applies to the mixture; the language path adds
its own ``expert_dropout`` (0.3 in the reference implementation).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from speechkd.errors import ConfigError
from speechkd.losses.gate_budget import gate_budget_loss, mean_gate_activation

LANGUAGE_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
SKIP_GATE_UNITS = ("batch", "token")


@dataclasses.dataclass(frozen=True)
class CLSROptions:
    """Hyper-parameters of the CLSR modules (defaults: DistilWhisper paper / reference code)."""

    gate_dim: int = 64
    gate_dropout: float = 0.1
    skip_gate_prob: float = 0.2
    skip_gate_unit: str = "batch"
    expert_dropout: float = 0.3
    max_noise_std: float = 5.0
    noise_ramp_steps: int = 10000

    def __post_init__(self) -> None:
        if self.gate_dim < 1:
            raise ConfigError(f"gate_dim must be >= 1, got {self.gate_dim}")
        for name in ("gate_dropout", "skip_gate_prob", "expert_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {value}")
        if self.skip_gate_unit not in SKIP_GATE_UNITS:
            raise ConfigError(
                f"skip_gate_unit must be one of {SKIP_GATE_UNITS}, got {self.skip_gate_unit!r}"
            )
        if self.max_noise_std < 0:
            raise ConfigError(f"max_noise_std must be >= 0, got {self.max_noise_std}")
        if self.noise_ramp_steps < 0:
            raise ConfigError(f"noise_ramp_steps must be >= 0, got {self.noise_ramp_steps}")

    @classmethod
    def from_kwargs(cls, **options: Any) -> CLSROptions:
        """Options from keyword arguments; an unknown key raises ConfigError naming it."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown CLSR option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


class GateNoiseSchedule:
    """Standard deviation of the gate noise: a linear ramp from 0 to ``max_std``.

    σ(step) = max_std · min(step / ramp_steps, 1) (``ramp_steps = 0``: max_std at once). One
    instance is shared by all CLSR modules of a model; the trainer calls :meth:`step` after every
    optimiser step (or :meth:`set_step` when resuming).
    """

    def __init__(self, max_std: float = 5.0, ramp_steps: int = 10000, step: int = 0) -> None:
        self.max_std = float(max_std)
        self.ramp_steps = int(ramp_steps)
        self.current_step = int(step)

    @property
    def std(self) -> float:
        """The noise standard deviation at the current step."""
        if self.ramp_steps <= 0:
            return self.max_std
        return self.max_std * min(self.current_step / self.ramp_steps, 1.0)

    def step(self, steps: int = 1) -> float:
        """Advance by ``steps`` training steps; returns the new standard deviation."""
        self.current_step += steps
        return self.std

    def set_step(self, step: int) -> None:
        """Jump to training step ``step`` (e.g. when resuming from a checkpoint)."""
        self.current_step = int(step)

    def state_dict(self) -> dict[str, float | int]:
        return {"max_std": self.max_std, "ramp_steps": self.ramp_steps, "step": self.current_step}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.max_std = float(state["max_std"])
        self.ramp_steps = int(state["ramp_steps"])
        self.current_step = int(state["step"])

    def __repr__(self) -> str:
        return (
            f"GateNoiseSchedule(max_std={self.max_std}, ramp_steps={self.ramp_steps}, "
            f"step={self.current_step}, std={self.std:.4g})"
        )


class WhisperFeedForward(nn.Module):
    """Whisper's feed-forward block: fc2(dropout(act(fc1(z)))), then output dropout."""

    def __init__(
        self,
        fc1: nn.Linear,
        activation: nn.Module,
        fc2: nn.Linear,
        activation_dropout: float = 0.0,
        output_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.fc1 = fc1
        self.activation = activation
        self.fc2 = fc2
        self.activation_dropout = activation_dropout
        self.output_dropout = output_dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.fc1(hidden_states))
        hidden = nn.functional.dropout(hidden, p=self.activation_dropout, training=self.training)
        out = self.fc2(hidden)
        return nn.functional.dropout(out, p=self.output_dropout, training=self.training)


class LanguageGate(nn.Module):
    """Gate logits G(z) = proj_out(ReLU(proj_in(dropout(z)))), d → gate_dim → 1."""

    def __init__(
        self,
        d_model: int,
        gate_dim: int = 64,
        dropout: float = 0.1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.proj_in = nn.Linear(d_model, gate_dim, bias=True, device=device, dtype=dtype)
        self.proj_out = nn.Linear(gate_dim, 1, bias=False, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference initialisation: W₁ ~ N(0, 0.01²), b₁ = 0, W₂ = 0 (so G = 0 at the start)."""
        nn.init.normal_(self.proj_in.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.proj_in.bias)
        nn.init.zeros_(self.proj_out.weight)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        return self.proj_out(torch.relu(self.proj_in(hidden))).squeeze(-1)


class CLSRFeedForward(nn.Module):
    """One layer's CLSR block: shared FFN, per-language experts and gates."""

    def __init__(
        self,
        shared: WhisperFeedForward,
        side: str,
        layer_index: int,
        options: CLSROptions,
        noise_schedule: GateNoiseSchedule,
    ) -> None:
        super().__init__()
        self.shared = shared
        self.experts = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        self.side = side
        self.layer_index = layer_index
        self.options = options
        self.noise_schedule = noise_schedule
        self.active_language: str | None = None
        self.last_gates: torch.Tensor | None = None
        self.last_skipped: torch.Tensor | None = None

    @property
    def d_model(self) -> int:
        return self.shared.fc1.in_features

    @property
    def languages(self) -> list[str]:
        return list(self.experts.keys())

    def add_language(self, language: str) -> None:
        """Add an expert (a copy of the shared FFN) and a fresh gate for ``language``."""
        if language in self.experts:
            return
        expert = copy.deepcopy(self.shared)
        expert.output_dropout = self.options.expert_dropout
        weight = self.shared.fc1.weight
        gate = LanguageGate(
            self.d_model,
            self.options.gate_dim,
            self.options.gate_dropout,
            device=weight.device,
            dtype=weight.dtype,
        )
        self.experts[language] = expert.train(self.training)
        self.gates[language] = gate.train(self.training)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shared_out = self.shared(hidden_states)
        language = self.active_language
        if language is None:
            self.last_gates = hidden_states.new_zeros(hidden_states.shape[:-1])
            self.last_skipped = None
            return shared_out
        gate_logits = self.gates[language](hidden_states)
        if self.training:
            std = self.noise_schedule.std
            noisy = gate_logits + std * torch.randn_like(gate_logits) if std > 0 else gate_logits
            gates = torch.sigmoid(noisy)
        else:
            gates = (gate_logits >= 0).to(hidden_states.dtype)
        self.last_gates = gates
        self.last_skipped = None
        mixing = gates
        if self.training and self.options.skip_gate_prob > 0:
            if self.options.skip_gate_unit == "batch":
                if torch.rand(()).item() < self.options.skip_gate_prob:
                    self.last_skipped = torch.ones_like(gates, dtype=torch.bool)
                    return shared_out
            else:
                skipped = torch.rand(gates.shape, device=gates.device) < self.options.skip_gate_prob
                self.last_skipped = skipped
                mixing = torch.where(skipped, torch.zeros_like(gates), gates)
        expert_out = self.experts[language](hidden_states)
        mixing = mixing.unsqueeze(-1)
        return mixing * expert_out + (1.0 - mixing) * shared_out

    def extra_repr(self) -> str:
        return f"side={self.side}, layer={self.layer_index}, languages={self.languages}"


def _stacks(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The encoder and decoder of a transformers Whisper model."""
    from transformers.models.whisper.modeling_whisper import WhisperDecoder, WhisperEncoder

    encoders = [m for m in model.modules() if isinstance(m, WhisperEncoder)]
    decoders = [m for m in model.modules() if isinstance(m, WhisperDecoder)]
    if len(encoders) != 1 or len(decoders) != 1:
        raise ConfigError(
            f"{type(model).__name__} is not a transformers Whisper encoder-decoder model "
            f"({len(encoders)} encoders, {len(decoders)} decoders found)"
        )
    return encoders[0], decoders[0]


def iter_clsr_layers(model: nn.Module) -> Iterator[tuple[str, int, nn.Module]]:
    """(side, index, layer) for every encoder then decoder layer of a Whisper model."""
    encoder, decoder = _stacks(model)
    for side, stack in (("encoder", encoder), ("decoder", decoder)):
        for index, layer in enumerate(stack.layers):
            yield side, index, layer


def clsr_modules(model: nn.Module) -> list[CLSRFeedForward]:
    """The CLSR modules of ``model`` in layer order (encoder first); [] when none is installed."""
    found = [getattr(layer, "clsr", None) for _, _, layer in iter_clsr_layers(model)]
    modules = [m for m in found if isinstance(m, CLSRFeedForward)]
    if modules and len(modules) != len(found):
        raise ConfigError("CLSR is installed on only some layers of this model")
    return modules


def has_clsr(model: nn.Module) -> bool:
    """Whether :func:`add_clsr` has been applied to ``model``."""
    return bool(clsr_modules(model))


def _require_clsr(model: nn.Module) -> list[CLSRFeedForward]:
    modules = clsr_modules(model)
    if not modules:
        raise ConfigError("the model has no CLSR modules; call speechkd.whisper.add_clsr first")
    return modules


def _install_on_layer(
    layer: nn.Module,
    side: str,
    index: int,
    options: CLSROptions,
    schedule: GateNoiseSchedule,
) -> CLSRFeedForward:
    shared = WhisperFeedForward(
        layer.fc1, layer.activation_fn, layer.fc2, activation_dropout=layer.activation_dropout
    )
    clsr = CLSRFeedForward(shared, side, index, options, schedule).train(layer.training)
    del layer.fc1
    del layer.fc2
    layer.clsr = clsr
    # The layer's forward computes fc2(dropout(activation_fn(fc1(x)))): route it through CLSR.
    layer.fc1 = clsr.__call__
    layer.activation_fn = nn.Identity()
    layer.fc2 = nn.Identity()
    layer.activation_dropout = 0.0
    return clsr


def _validate_languages(languages: Sequence[str]) -> list[str]:
    if isinstance(languages, str):
        languages = [languages]
    result: list[str] = []
    for language in languages:
        if not isinstance(language, str) or not LANGUAGE_CODE.match(language):
            raise ConfigError(
                f"language code {language!r} is not valid (letters, digits, '_' or '-', "
                "starting with a letter)"
            )
        if language not in result:
            result.append(language)
    return result


def _apply_trainability(model: nn.Module, modules: Sequence[CLSRFeedForward]) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for clsr in modules:
        for parameter in clsr.experts.parameters():
            parameter.requires_grad_(True)
        for parameter in clsr.gates.parameters():
            parameter.requires_grad_(True)


def add_clsr(model: nn.Module, languages: Sequence[str], **options: Any) -> nn.Module:
    """Install CLSR modules with experts and gates for ``languages`` on a Whisper model, in place.

    Options (see :class:`CLSROptions`): ``gate_dim`` (64), ``gate_dropout`` (0.1),
    ``skip_gate_prob`` (0.2), ``skip_gate_unit`` ("batch" | "token"), ``expert_dropout`` (0.3),
    ``max_noise_std`` (5.0), ``noise_ramp_steps`` (10000; set it to the number of training steps).
    Calling it again adds further languages (options, if given, must equal the installed ones).
    Afterwards exactly the experts and gates of all installed languages have ``requires_grad``.
    Returns ``model``.
    """
    languages = _validate_languages(languages)
    modules = clsr_modules(model)
    if modules:
        installed = modules[0].options
        for key, value in options.items():
            if getattr(installed, key, object()) != value:
                raise ConfigError(
                    f"CLSR is already installed with {key}={getattr(installed, key, None)!r}; "
                    f"cannot change it to {value!r}"
                )
    else:
        opts = CLSROptions.from_kwargs(**options)
        schedule = GateNoiseSchedule(opts.max_noise_std, opts.noise_ramp_steps)
        modules = [
            _install_on_layer(layer, side, index, opts, schedule)
            for side, index, layer in iter_clsr_layers(model)
        ]
    for clsr in modules:
        for language in languages:
            clsr.add_language(language)
    _apply_trainability(model, modules)
    return model


def remove_language(model: nn.Module, language: str) -> None:
    """Drop ``language``'s experts and gates from every layer (no-op when not installed)."""
    for clsr in _require_clsr(model):
        if clsr.active_language == language:
            clsr.active_language = None
        if language in clsr.experts:
            del clsr.experts[language]
            del clsr.gates[language]


def installed_languages(model: nn.Module) -> list[str]:
    """Languages with experts and gates on ``model`` ([] without CLSR)."""
    modules = clsr_modules(model)
    return modules[0].languages if modules else []


def clsr_options(model: nn.Module) -> CLSROptions:
    """The options the CLSR modules of ``model`` were installed with."""
    return _require_clsr(model)[0].options


def clsr_noise_schedule(model: nn.Module) -> GateNoiseSchedule:
    """The gate noise schedule shared by all CLSR modules of ``model`` (the trainer steps it)."""
    return _require_clsr(model)[0].noise_schedule


def get_active_language(model: nn.Module) -> str | None:
    """The language whose experts are active (None: shared path only)."""
    return _require_clsr(model)[0].active_language


def set_active_language(model: nn.Module, language: str | None) -> str | None:
    """Route the next batches through ``language``'s experts (None: shared FFN only).

    Returns the previously active language.
    """
    modules = _require_clsr(model)
    if language is not None and language not in modules[0].experts:
        raise ConfigError(
            f"language {language!r} has no CLSR experts; installed: {modules[0].languages}"
        )
    previous = modules[0].active_language
    for clsr in modules:
        clsr.active_language = language
    return previous


@contextlib.contextmanager
def active_language(model: nn.Module, language: str | None) -> Iterator[None]:
    """Context manager: ``language`` is active inside, the previous one is restored after."""
    previous = set_active_language(model, language)
    try:
        yield
    finally:
        set_active_language(model, previous)


def clsr_gates(model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Gate values of the last forward call: (encoder layers, decoder layers), each ``(B, T)``."""
    encoder: list[torch.Tensor] = []
    decoder: list[torch.Tensor] = []
    for clsr in _require_clsr(model):
        if clsr.last_gates is None:
            raise ConfigError(f"{clsr.side} layer {clsr.layer_index} has not run a forward yet")
        (encoder if clsr.side == "encoder" else decoder).append(clsr.last_gates)
    return encoder, decoder


def clsr_gate_budget_loss(
    model: nn.Module,
    encoder_mask: torch.Tensor | None = None,
    decoder_mask: torch.Tensor | None = None,
    budget: float = 0.5,
) -> torch.Tensor:
    """Gate budget loss of the last forward: |mean gate over real enc+dec tokens − budget|."""
    encoder, decoder = clsr_gates(model)
    return gate_budget_loss(encoder, decoder, encoder_mask, decoder_mask, budget=budget)


def gate_usage(
    model: nn.Module,
    encoder_mask: torch.Tensor | None = None,
    decoder_mask: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean gate activation of the last forward over real tokens: encoder, decoder and both.

    At evaluation (hard gates) this is the share of tokens routed to the language expert.
    """
    encoder, decoder = clsr_gates(model)
    with torch.no_grad():
        return {
            "encoder": float(mean_gate_activation(encoder, (), encoder_mask)),
            "decoder": float(mean_gate_activation((), decoder, None, decoder_mask)),
            "all": float(mean_gate_activation(encoder, decoder, encoder_mask, decoder_mask)),
        }


def encoder_token_mask(feature_lengths: torch.Tensor, num_positions: int = 1500) -> torch.Tensor:
    """Mask ``(B, num_positions)`` of encoder positions that cover real audio.

    Whisper's second convolution halves the frame rate: ``n`` real feature frames give
    ``ceil(n / 2)`` real encoder positions (the rest of the 30 s window is padding).
    """
    real = (feature_lengths.long() + 1) // 2
    positions = torch.arange(num_positions, device=feature_lengths.device)
    return positions.unsqueeze(0) < real.unsqueeze(1)


def language_module_tensors(model: nn.Module, language: str) -> dict[str, nn.Parameter]:
    """The expert and gate parameters of ``language``, by their language-neutral names.

    Names: ``{encoder,decoder}.layers.{i}.{expert,gate}.<parameter>``, e.g.
    ``encoder.layers.0.expert.fc1.weight`` or ``decoder.layers.3.gate.proj_in.bias``.
    """
    tensors: dict[str, nn.Parameter] = {}
    for clsr in _require_clsr(model):
        if language not in clsr.experts:
            raise ConfigError(
                f"language {language!r} has no CLSR experts; installed: {clsr.languages}"
            )
        prefix = f"{clsr.side}.layers.{clsr.layer_index}"
        for name, parameter in clsr.experts[language].named_parameters():
            tensors[f"{prefix}.expert.{name}"] = parameter
        for name, parameter in clsr.gates[language].named_parameters():
            tensors[f"{prefix}.gate.{name}"] = parameter
    return tensors


def language_parameter_count(model: nn.Module, language: str) -> int:
    """Number of parameters one language adds (its experts and gates in all layers)."""
    return sum(p.numel() for p in language_module_tensors(model, language).values())
