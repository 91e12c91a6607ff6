"""Best-checkpoint selection by the dev error rate (DistilWhisper: "the best model is chosen
based on WER on the validation set").

:class:`DevErrorRate` is the ``dev_scorer`` of :class:`speechkd.whisper.trainer.WhisperTrainer`:
at the end of every epoch it greedily decodes the dev cuts with :func:`speechkd.whisper.decode.
decode_cuts` (the language of each cut forced in the prompt, batches language-homogeneous, CLSR
experts of the batch language active with hard gates, PEFT adapters unmerged), the new tokens
of each cut capped by its duration, and scores them with the Whisper normalisation of the decode
and score stages (:func:`speechkd.eval.scoring.error_rate_report`). The selection score is the
macro average of the per-language error rates (the papers' "avg").

In a multi-process job each process decodes every ``world_size``-th cut; the error counts are
summed over processes, so every process gets the same score.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from lhotse import CutSet
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.eval.scoring import ScoringInput, error_rate_report
from speechkd.eval.wer import METRICS
from speechkd.launch import distributed
from speechkd.whisper.decode import decode_cuts
from speechkd.whisper.trainer import SELECT_BY

__all__ = ["DEFAULT_TOKENS_PER_SECOND", "SELECT_BY", "DevErrorRate", "DevScore"]

DEFAULT_TOKENS_PER_SECOND = 30.0
"""New tokens per second of audio allowed when decoding dev cuts: fast read speech is about
3 words/s and Whisper's byte-level BPE spends up to about 8 tokens on a Thai or Tamil word."""


@dataclass(frozen=True)
class DevScore:
    """Error rate (%) of a dev decode: per language and their macro average (``value``)."""

    metric: str
    value: float
    per_language: dict[str, float] = field(default_factory=dict)
    num_cuts: int = 0


def cut_language(cut) -> str:
    """The language of a cut's first supervision (a DataError when it has none)."""
    language = cut.supervisions[0].language if cut.supervisions else None
    if not language:
        raise DataError(f"dev cut {cut.id}: no supervision language to force in the prompt")
    return str(language)


def first_cuts_per_language(cuts: CutSet, max_cuts: int | None) -> CutSet:
    """The first ``max_cuts`` cuts of each language in manifest order (all with None)."""
    if max_cuts is not None and max_cuts < 1:
        raise ConfigError(f"the dev cuts used for selection must be >= 1, got {max_cuts}")
    kept, counts = [], {}
    for cut in cuts:
        language = cut_language(cut)
        if max_cuts is None or counts.get(language, 0) < max_cuts:
            counts[language] = counts.get(language, 0) + 1
            kept.append(cut)
    return CutSet.from_cuts(kept)


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The Whisper model inside a peft ``PeftModel`` (its adapters stay active), else ``model``."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class DevErrorRate:
    """Decode the dev cuts greedily and score them: the trainer's per-epoch selection score.

    ``max_cuts``: at most this many dev cuts per language (the first ones); ``max_duration``:
    seconds of audio per decoding batch; ``tokens_per_second``: cap on the new tokens of a cut
    per second of its audio (zero-shot and early models can loop).
    """

    def __init__(
        self,
        tokenizer,
        cuts: CutSet,
        metric: str = "wer",
        max_duration: float = 200.0,
        max_cuts: int | None = None,
        tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND,
    ) -> None:
        if metric not in METRICS:
            raise ConfigError(
                f"a dev scorer's metric must be one of {list(METRICS)}, got {metric!r}"
            )
        if max_duration <= 0:
            raise ConfigError(f"max_duration must be positive, got {max_duration}")
        if tokens_per_second <= 0:
            raise ConfigError(f"tokens_per_second must be positive, got {tokens_per_second}")
        self.tokenizer = tokenizer
        self.metric = metric
        self.cuts = first_cuts_per_language(cuts.to_eager(), max_cuts)
        if not len(self.cuts):
            raise DataError("no dev cuts to select the best checkpoint with")
        self.languages = sorted({cut_language(c) for c in self.cuts})
        self.max_duration = max_duration
        self.tokens_per_second = tokens_per_second

    def __call__(self, model: nn.Module, device: torch.device) -> DevScore:
        """Score ``model`` (left in the training mode it had) on this process's share of cuts."""
        rank, world = distributed.get_rank(), distributed.get_world_size()
        shard = CutSet.from_cuts(list(self.cuts)[rank::world])
        counts = {lang: [0.0, 0.0] for lang in self.languages}  # errors, reference tokens
        if len(shard):
            was_training = model.training
            try:
                hyps = decode_cuts(
                    unwrap_peft(model),
                    self.tokenizer,
                    shard,
                    max_duration=self.max_duration,
                    num_beams=1,
                    device=device,
                    progress=False,
                    tokens_per_second=self.tokens_per_second,
                )
            finally:
                model.train(was_training)
            data = ScoringInput(
                ids=[h.cut_id for h in hyps],
                refs=[h.ref for h in hyps],
                hyps=[h.hyp for h in hyps],
                languages=[h.language for h in hyps],
            )
            report = error_rate_report(data, self.metric, allow_empty_ref=True)
            for language, found in report.per_language.items():
                counts[language] = [float(found.err), float(found.wrd)]
        flat = distributed.all_reduce_sum([x for lang in self.languages for x in counts[lang]])
        per_language = {}
        for index, language in enumerate(self.languages):
            errors, words = flat[2 * index], flat[2 * index + 1]
            per_language[language] = (
                100.0 * errors / words if words else (0.0 if errors == 0 else float("inf"))
            )
        value = sum(per_language.values()) / len(per_language)
        return DevScore(self.metric, value, per_language, len(self.cuts))
