"""Greedy (or beam) decoding of a CutSet with ``model.generate`` and WER/CER scoring.

The prompt is forced: ``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`` with the
language of each cut's supervision, batches being language-homogeneous. A model built from a
config (no hub generation config) is given the token ids ``generate`` needs by
:func:`configure_generation`. Outputs in the decode directory: ``hyp-<set>.txt`` and
``ref-<set>.txt`` (Kaldi text), then ``recogs-/errs-/<metric>-summary-/scores-<set>`` from
:mod:`speechkd.eval`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from lhotse import CutSet
from torch import nn
from tqdm import tqdm

from speechkd.errors import ConfigError, DataError
from speechkd.eval.scoring import ScoringInput, score_input
from speechkd.eval.wer import METRICS
from speechkd.utils.atomic import atomic_write_text
from speechkd.whisper import clsr
from speechkd.whisper.data import (
    PROMPT_LENGTH,
    DurationBatchSampler,
    PromptTokens,
    WhisperAsrDataset,
    encoder_num_frames,
    token_to_id,
)
from speechkd.whisper.trainer import default_device, move_batch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hypothesis:
    """One decoded cut."""

    cut_id: str
    language: str
    ref: str
    hyp: str


def tokenizer_languages(tokenizer) -> dict[str, int]:
    """``{"<|en|>": id, ...}`` for every Whisper language token the tokenizer has."""
    from whisper.tokenizer import LANGUAGES

    out = {}
    for code in LANGUAGES:
        token = f"<|{code}|>"
        token_id = token_to_id(tokenizer, token)
        if token_id is not None:
            out[token] = token_id
    return out


def configure_special_tokens(config, tokenizer) -> None:
    """Set a ``WhisperConfig``'s pad/bos/eos/decoder-start ids from a Whisper tokenizer.

    Raises ConfigError when the vocabulary sizes differ.
    """
    if config.vocab_size != len(tokenizer):
        raise ConfigError(
            f"model vocabulary ({config.vocab_size}) and tokenizer ({len(tokenizer)} tokens) differ"
        )
    special = PromptTokens.from_tokenizer(tokenizer)
    config.pad_token_id = special.eot
    config.bos_token_id = special.eot
    config.eos_token_id = special.eot
    config.decoder_start_token_id = special.sot


def configure_generation(model: nn.Module, tokenizer) -> None:
    """Give ``model.generation_config`` Whisper's language/task/timestamp token ids."""
    config = model.config
    configure_special_tokens(config, tokenizer)
    special = PromptTokens.from_tokenizer(tokenizer)
    gen = model.generation_config
    gen.lang_to_id = tokenizer_languages(tokenizer)
    gen.task_to_id = {"transcribe": special.transcribe, "translate": special.translate}
    gen.no_timestamps_token_id = special.notimestamps
    gen.is_multilingual = True
    gen.decoder_start_token_id = special.sot
    gen.eos_token_id = special.eot
    gen.pad_token_id = special.eot
    gen.bos_token_id = special.eot
    gen.forced_decoder_ids = None
    gen.max_length = config.max_target_positions
    if getattr(gen, "suppress_tokens", None) is None:
        gen.suppress_tokens = []
    if getattr(gen, "begin_suppress_tokens", None) is None:
        gen.begin_suppress_tokens = []


def load_whisper_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu"):
    """A ``WhisperForConditionalGeneration`` saved with ``save_pretrained`` (safetensors only)."""
    from transformers import WhisperForConditionalGeneration

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: no config.json: not a saved Whisper model directory")
    model = WhisperForConditionalGeneration.from_pretrained(path, use_safetensors=True)
    return model.to(device).eval()


def _activate_language(model: nn.Module, language: str | None) -> None:
    """Route CLSR models through the batch language's experts (shared path if not installed)."""
    if not clsr.has_clsr(model):
        return
    installed = clsr.installed_languages(model)
    clsr.set_active_language(model, language if language in installed else None)


@torch.no_grad()
def decode_cuts(
    model: nn.Module,
    tokenizer,
    cuts: CutSet,
    max_duration: float = 200.0,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    task: str = "transcribe",
    device: str | torch.device | None = None,
    text_field: str = "text",
    before_batch: Callable[[nn.Module, dict], None] | None = None,
    progress: bool = True,
) -> list[Hypothesis]:
    """Decode every cut (language-homogeneous batches) and return hypotheses in cut order.

    ``before_batch(model, batch)`` runs before each ``generate`` call; CLSR models get the
    batch language activated automatically.
    """
    device = default_device(None if device is None else str(device))
    model = model.to(device).eval()
    configure_generation(model, tokenizer)
    config = model.config
    dataset = WhisperAsrDataset(
        tokenizer,
        num_frames=encoder_num_frames(config),
        num_mel_bins=config.num_mel_bins,
        task=task,
        text_field=text_field,
        max_target_length=10**9,
    )
    sampler = DurationBatchSampler(
        cuts, max_duration, shuffle=False, language_homogeneous=True, num_buckets=1
    )
    limit = config.max_target_positions - PROMPT_LENGTH
    max_new_tokens = limit if max_new_tokens is None else min(max_new_tokens, limit)
    # in the generation config rather than as an argument: transformers warns when an argument
    # max_new_tokens meets a config max_length
    previous = model.generation_config.max_new_tokens
    model.generation_config.max_new_tokens = max_new_tokens
    try:
        found = _generate_all(
            model, tokenizer, dataset, sampler, task, num_beams, device, before_batch, progress
        )
    finally:
        model.generation_config.max_new_tokens = previous
    return [found[cut.id] for cut in cuts]


def _generate_all(
    model, tokenizer, dataset, sampler, task, num_beams, device, before_batch, progress
) -> dict[str, Hypothesis]:
    found: dict[str, Hypothesis] = {}
    for cut_batch in tqdm(sampler, total=len(sampler), desc="decode", disable=not progress):
        batch = move_batch(dataset[cut_batch], device)
        _activate_language(model, batch["language"])
        if before_batch is not None:
            before_batch(model, batch)
        generated = model.generate(
            input_features=batch["input_features"],
            language=batch["language"],
            task=task,
            return_timestamps=False,
            num_beams=num_beams,
            do_sample=False,
        )
        sequences = generated.sequences if hasattr(generated, "sequences") else generated
        texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
        for cut_id, lang, ref, hyp in zip(
            batch["cut_ids"], batch["languages"], batch["texts"], texts, strict=True
        ):
            found[cut_id] = Hypothesis(cut_id, lang, ref, hyp.strip())
    return found


def kaldi_text(pairs: Sequence[tuple[str, str]]) -> str:
    """Kaldi ``text`` lines ``<id> <text>``, newlines in text replaced by spaces."""
    lines = [f"{utt_id} {' '.join(text.split())}".rstrip() for utt_id, text in pairs]
    return "\n".join(lines) + "\n"


def write_and_score(
    hyps: Sequence[Hypothesis],
    out_dir: str | os.PathLike,
    set_name: str,
    metric: str = "wer",
    **extra,
) -> dict[str, Path]:
    """Write ``hyp-/ref-<set>.txt`` and score them with :mod:`speechkd.eval` (per language)."""
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {METRICS}, got {metric!r}")
    if not hyps:
        raise DataError(f"set {set_name}: nothing was decoded")
    out_dir = Path(out_dir)
    paths = {
        "hyp": out_dir / f"hyp-{set_name}.txt",
        "ref": out_dir / f"ref-{set_name}.txt",
    }
    atomic_write_text(paths["hyp"], kaldi_text([(h.cut_id, h.hyp) for h in hyps]))
    atomic_write_text(paths["ref"], kaldi_text([(h.cut_id, h.ref) for h in hyps]))
    data = ScoringInput(
        ids=[h.cut_id for h in hyps],
        refs=[h.ref for h in hyps],
        hyps=[h.hyp for h in hyps],
        languages=[h.language for h in hyps],
    )
    paths.update(score_input(data, set_name, out_dir, metric=metric, **extra))
    return paths
