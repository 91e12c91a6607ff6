"""The DistilWhisper objective added to the trainer's cross-entropy: L_g + α·L_KD.

``L = L_CE (label smoothing) + L_g + α·L_KD`` (paper: α = 2, b = 0.5, JS divergence, τ = 1):

* ``L_g`` = |mean gate activation over the real encoder positions and decoder tokens − b|
  (CLSR models only; :func:`speechkd.whisper.clsr.clsr_gate_budget_loss`);
* ``L_KD`` = token-level divergence between the teacher's and the student's distributions at the
  teacher-forced decoder positions whose label is not ignored (the text tokens and
  ``<|endoftext|>``: the same positions as the cross-entropy), padding masked.

The teacher is either run online on the same batch (:class:`OnlineTeacher`) or read from a cache
of its top-k distributions (:class:`speechkd.whisper.teacher_cache.TeacherCache`, built once by
``python -m speechkd.bin.cache_teacher``), so that a KD epoch costs a student step only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.losses.divergences import get_divergence
from speechkd.whisper import clsr
from speechkd.whisper.data import IGNORE_INDEX
from speechkd.whisper.teacher_cache import TeacherCache, TopKTargets, topk_kd_loss

logger = logging.getLogger(__name__)

KD_DIVERGENCES: tuple[str, ...] = ("js", "kl", "skew_kl", "ddsd")


@dataclass(frozen=True)
class DistilOptions:
    """Weights of the DistilWhisper loss terms (``gate_budget=None``: no gate budget loss)."""

    kd_weight: float = 2.0
    divergence: str = "js"
    temperature: float = 1.0
    gate_budget: float | None = 0.5

    def __post_init__(self) -> None:
        if self.kd_weight < 0:
            raise ConfigError(f"kd_weight must be >= 0, got {self.kd_weight}")
        if self.divergence not in KD_DIVERGENCES:
            raise ConfigError(
                f"KD divergence must be one of {KD_DIVERGENCES}, got {self.divergence!r}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"KD temperature must be > 0, got {self.temperature}")
        if self.gate_budget is not None and not 0.0 <= self.gate_budget <= 1.0:
            raise ConfigError(f"gate budget must lie in [0, 1], got {self.gate_budget}")


def _config_of(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None:
        raise ConfigError(f"{type(model).__name__} has no Whisper config")
    return config


def check_teacher_compatible(teacher: nn.Module, student: nn.Module) -> None:
    """Teacher and student must share the vocabulary and the encoder input (mel bins, frames).

    Raises ConfigError naming the first differing field.
    """
    t_config, s_config = _config_of(teacher), _config_of(student)
    for field in ("vocab_size", "num_mel_bins", "max_source_positions"):
        t_value, s_value = getattr(t_config, field, None), getattr(s_config, field, None)
        if t_value != s_value:
            raise ConfigError(
                f"teacher and student differ in {field} ({t_value} vs {s_value}): KD needs the "
                "same tokenizer and the same log-mel input"
            )


class OnlineTeacher:
    """A frozen teacher run on every training batch (teacher forcing on the student's targets)."""

    def __init__(self, model: nn.Module, device: torch.device | str | None = None) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        if device is not None:
            self.model.to(device)

    @torch.no_grad()
    def logits(self, batch: Mapping) -> torch.Tensor:
        device = next(self.model.parameters()).device
        outputs = self.model(
            input_features=batch["input_features"].to(device),
            decoder_input_ids=batch["decoder_input_ids"].to(device),
            decoder_attention_mask=batch["decoder_attention_mask"].to(device),
        )
        return outputs.logits.float()


def kd_position_mask(batch: Mapping) -> torch.Tensor:
    """Decoder positions distilled: those whose label is a real target (text and eot)."""
    return batch["labels"] != IGNORE_INDEX


def cached_targets(cache: TeacherCache, batch: Mapping, device: torch.device) -> TopKTargets:
    """Top-k teacher targets of a batch, restricted to the KD positions.

    The cache holds every non-padding decoder position of an utterance (prompt included); a cache
    whose positions differ from the batch's (another tokenizer or transcript) is a DataError.
    """
    length = batch["labels"].shape[1]
    targets = cache.batch(list(batch["cut_ids"]), length=length)
    decoder_mask = batch["decoder_attention_mask"].to(device).bool()
    if not torch.equal(targets.mask.to(device), decoder_mask):
        raise DataError(
            f"teacher cache {cache.directory}: cached positions differ from the batch's decoder "
            f"positions (cuts {list(batch['cut_ids'])[:3]}...): was it built from the same "
            "transcripts with the same tokenizer?"
        )
    mask = decoder_mask & kd_position_mask(batch).to(device)
    return TopKTargets(targets.ids.to(device), targets.log_probs.to(device), mask)


def distil_extra_loss(
    options: DistilOptions,
    teacher: OnlineTeacher | None = None,
    cache: TeacherCache | None = None,
) -> Callable[[nn.Module, dict, object], dict[str, torch.Tensor]]:
    """The trainer's ``extra_loss`` hook: ``{"gate": L_g, "kd": α·L_KD}`` (present terms only)."""
    if teacher is not None and cache is not None:
        raise ConfigError("give either an online teacher or a teacher cache, not both")
    divergence = get_divergence(options.divergence)

    def extra_loss(model: nn.Module, batch: dict, outputs) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        if options.gate_budget is not None and clsr.has_clsr(model):
            config = _config_of(model)
            encoder_mask = clsr.encoder_token_mask(
                batch["feature_lengths"], int(config.max_source_positions)
            )
            decoder_mask = batch["decoder_attention_mask"].bool()
            parts["gate"] = clsr.clsr_gate_budget_loss(
                model, encoder_mask, decoder_mask, budget=options.gate_budget
            )
        if options.kd_weight > 0 and (teacher is not None or cache is not None):
            logits = outputs.logits
            if teacher is not None:
                teacher_logits = teacher.logits(batch).to(logits.device)
                kd = divergence(
                    teacher_logits, logits, kd_position_mask(batch), options.temperature
                )
            else:
                targets = cached_targets(cache, batch, logits.device)
                kd = topk_kd_loss(logits, targets, options.divergence, options.temperature)
            parts["kd"] = options.kd_weight * kd
        return parts

    return extra_loss
