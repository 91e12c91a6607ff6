"""Greedy (or beam) decoding of a CutSet with ``model.generate`` and WER/CER scoring.

The prompt is forced: ``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`` with the
language of each cut's supervision, batches being language-homogeneous. A model built from a
config (no hub generation config) is given the token ids ``generate`` needs by
:func:`configure_generation`. Outputs in the decode directory: ``hyp-<set>.txt`` and
``ref-<set>.txt`` (Kaldi text), then ``recogs-/errs-/<metric>-summary-/scores-<set>`` from
:mod:`speechkd.eval`.

Language modules (DistilWhisper): :func:`load_model_with_language_modules` loads a stock Whisper
and puts on it the CLSR experts and gates of the requested languages only (the files of the
other languages are never opened). A batch whose language has no expert takes the shared path.

Gate usage of CLSR models (:class:`GateUsage`): with hard gates at evaluation, the share of
(layer, position) pairs routed to the language expert, pooled over the utterances of a language
(token-weighted, not a mean of per-utterance means). Positions counted, as in the gate budget of
training: the real encoder positions of each cut (``ceil(frames / 2)``, not the padding of the
30 s window) and every decoder position the decoder processed while generating, i.e. the four
prompt tokens and each generated token fed back (all but the last generated one; after a
hypothesis's ``<|endoftext|>`` nothing is fed). ``generate`` runs the decoder one step at a
time, so the gates left by its last call cover one position only; the decoder is therefore run
once more, teacher-forced on prompt + hypothesis, over the encoder states captured (with the
encoder gates) by a forward hook during ``generate``. The decoder being causal, this gives the
gates of every decoding step exactly (for beam search: those of the returned hypothesis). The
time this takes is counted apart (``GateUsage.seconds``) and left out of the real-time factor.
A language without an expert is reported too, with usage 0 (it takes the shared path only).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    token_to_id,
)
from speechkd.whisper.language_modules import available_languages, load_language_modules
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
    if not any(path.glob("*.safetensors")):
        pickled = sorted(p.name for p in [*path.glob("*.bin"), *path.glob("*.pt")])
        found = f" (found {', '.join(pickled)}: pickled checkpoints are not loaded)"
        found = found if pickled else ""
        raise DataError(
            f"{path}: no model.safetensors{found}; convert the model with save_pretrained"
            f"(safe_serialization=True)"
        )
    model = WhisperForConditionalGeneration.from_pretrained(path, use_safetensors=True)
    return model.to(device).eval()


def module_languages(directory: str | os.PathLike, languages: Sequence[str]) -> list[str]:
    """The languages to load from a language-module directory; ``["all"]``: every one in it."""
    if isinstance(languages, str):
        languages = [languages]
    languages = list(dict.fromkeys(languages))
    if not languages:
        raise ConfigError("no language given for the language modules (a list or 'all')")
    if "all" in languages:
        if len(languages) > 1:
            raise ConfigError(f"languages {languages}: 'all' cannot be combined with others")
        found = available_languages(directory)
        if not found:
            raise DataError(f"{directory}: no language module (<lang>.safetensors) found")
        return found
    return languages


def load_model_with_language_modules(
    model_dir: str | os.PathLike,
    module_dir: str | os.PathLike,
    languages: Sequence[str],
    device: str | torch.device = "cpu",
):
    """A stock Whisper from ``model_dir`` with the CLSR modules of ``languages`` (or "all").

    Only the requested languages' files in ``module_dir`` are opened.
    """
    model = load_whisper_model(model_dir, device)
    selected = module_languages(module_dir, languages)
    load_language_modules(model, module_dir, selected)
    logger.info("language modules of %s loaded from %s", ", ".join(selected), module_dir)
    return model.eval()


def _activate_language(model: nn.Module, language: str | None) -> None:
    """Route CLSR models through the batch language's experts (shared path if not installed)."""
    if not clsr.has_clsr(model):
        return
    installed = clsr.installed_languages(model)
    clsr.set_active_language(model, language if language in installed else None)


@dataclass
class GateUsage:
    """Gate usage of CLSR models, pooled per language (see the module docstring).

    ``totals[lang]``: encoder gate sum and count, decoder gate sum and count, utterances.
    """

    totals: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self,
        language: str,
        encoder_gates: Sequence[torch.Tensor],
        decoder_gates: Sequence[torch.Tensor],
        encoder_mask: torch.Tensor,
        decoder_mask: torch.Tensor,
    ) -> None:
        """Add a batch of ``language``: per-layer gates ``(B, T)`` and real-position masks."""
        entry = self.totals.setdefault(language, [0.0, 0.0, 0.0, 0.0, 0])
        for offset, gates, mask in (
            (0, encoder_gates, encoder_mask),
            (2, decoder_gates, decoder_mask),
        ):
            keep = mask.bool()
            for layer, values in enumerate(gates):
                if values.shape != keep.shape:
                    raise ConfigError(
                        f"gates {tuple(values.shape)} of layer {layer} do not match the position "
                        f"mask {tuple(keep.shape)}"
                    )
                entry[offset] += float(values.float()[keep.to(values.device)].sum())
                entry[offset + 1] += float(keep.sum())
        entry[4] += int(encoder_mask.shape[0])

    def per_language(self) -> dict[str, dict[str, float | int]]:
        """``{lang: {"encoder", "decoder", "all": share in [0, 1], "utterances": n}}``."""
        out: dict[str, dict[str, float | int]] = {}
        for language in sorted(self.totals):
            enc_sum, enc_count, dec_sum, dec_count, utterances = self.totals[language]
            out[language] = {
                "encoder": enc_sum / enc_count if enc_count else 0.0,
                "decoder": dec_sum / dec_count if dec_count else 0.0,
                "all": (enc_sum + dec_sum) / (enc_count + dec_count)
                if enc_count + dec_count
                else 0.0,
                "utterances": int(utterances),
            }
        return out

    def write(self, path: str | os.PathLike, set_name: str) -> Path:
        """Write ``{"set": ..., "per_language": ...}`` to ``path`` atomically."""
        record = {"set": set_name, "per_language": self.per_language()}
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        return Path(path)


class _EncoderCapture:
    """Forward hook on the encoder: its output states and the encoder CLSR gates of that call."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = [m for m in clsr.clsr_modules(model) if m.side == "encoder"]
        self.states: torch.Tensor | None = None
        self.gates: list[torch.Tensor] = []
        self._handle = model.get_encoder().register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args, output) -> None:
        self.states = output[0] if isinstance(output, tuple) else output.last_hidden_state
        self.gates = [m.last_gates for m in self.modules]

    def reset(self) -> None:
        self.states, self.gates = None, []

    def remove(self) -> None:
        self._handle.remove()


def generated_tokens(sequences: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """The generated part of ``generate``'s sequences (the prompt removed when it is returned)."""
    size = prompt.shape[1]
    if sequences.shape[1] >= size and torch.equal(sequences[:, :size], prompt):
        return sequences[:, size:]
    return sequences


def decoder_positions(
    prompt: torch.Tensor, generated: torch.Tensor, eot: int, max_new_tokens: int | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs ``prompt + generated`` ``(B, P + n)`` and the mask of those ``generate`` fed.

    Every generated token but the last is fed back; the last is ``eot`` or the
    ``max_new_tokens``-th token. ``generate`` may return a row with or without its final
    ``eot`` (transformers strips it), padded with ``eot``; so row ``r`` fed the prompt and its
    ``t`` tokens before the first ``eot``, or ``max_new_tokens - 1`` of them when it has
    ``t = max_new_tokens`` tokens and no ``eot`` (stopped by the length limit). ``max_new_tokens``
    may be one limit per row (rows capped by their duration, :func:`truncate_rows`).
    """
    limits = torch.as_tensor(max_new_tokens, dtype=torch.long, device=generated.device)
    if limits.numel() == 0 or int(limits.min()) < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    inputs = torch.cat([prompt, generated.to(prompt.dtype)], dim=1)
    before_eot = torch.zeros(generated.shape[0], dtype=torch.long, device=generated.device)
    if generated.shape[1]:
        is_eot = generated == eot
        first = is_eot.int().argmax(dim=1)
        before_eot = torch.where(
            is_eot.any(dim=1), first, torch.full_like(first, generated.shape[1])
        )
    fed = prompt.shape[1] + torch.minimum(before_eot, limits - 1)
    mask = torch.arange(inputs.shape[1], device=inputs.device).unsqueeze(0) < fed.unsqueeze(1)
    return inputs, mask


def _gate_usage_of_batch(
    model: nn.Module,
    batch: dict,
    sequences: torch.Tensor,
    capture: _EncoderCapture,
    eot: int,
    max_new_tokens: int | Sequence[int],
    usage: GateUsage,
) -> None:
    """Add the gates of the batch just decoded (encoder: captured; decoder: re-run)."""
    start = time.time()
    if capture.states is None:
        raise ConfigError("the encoder did not run during generate: cannot collect gate usage")
    prompt = batch["decoder_input_ids"][:, :PROMPT_LENGTH].to(sequences.device)
    generated = generated_tokens(sequences, prompt)
    inputs, mask = decoder_positions(prompt, generated, eot, max_new_tokens)
    model.get_decoder()(
        input_ids=inputs,
        attention_mask=mask.long(),
        encoder_hidden_states=capture.states,
        use_cache=False,
    )
    decoder_gates = [m.last_gates for m in clsr.clsr_modules(model) if m.side == "decoder"]
    encoder_mask = clsr.encoder_token_mask(
        batch["feature_lengths"], int(capture.gates[0].shape[1])
    ).to(capture.gates[0].device)
    language = batch["language"] or batch["languages"][0]
    usage.add(language, capture.gates, decoder_gates, encoder_mask, mask)
    capture.reset()
    usage.seconds += time.time() - start


def duration_token_cap(duration: float, tokens_per_second: float) -> int:
    """New tokens allowed for ``duration`` seconds of audio: ``ceil(rate * duration)`` (>= 1)."""
    return max(1, math.ceil(tokens_per_second * duration))


def truncate_rows(
    sequences: torch.Tensor, prompt: torch.Tensor, caps: Sequence[int], eot: int
) -> torch.Tensor:
    """``generate``'s sequences with the generated tokens after row ``r``'s first ``caps[r]``
    replaced by ``eot`` (the prompt, when returned, is kept)."""
    size = prompt.shape[1]
    offset = 0
    if sequences.shape[1] >= size and torch.equal(sequences[:, :size], prompt):
        offset = size
    positions = torch.arange(sequences.shape[1], device=sequences.device).unsqueeze(0)
    limits = offset + torch.tensor(list(caps), device=sequences.device).unsqueeze(1)
    return sequences.masked_fill(positions >= limits, eot)


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
    gate_usage: GateUsage | None = None,
    tokens_per_second: float | None = None,
) -> list[Hypothesis]:
    """Decode every cut (language-homogeneous batches) and return hypotheses in cut order.

    ``before_batch(model, batch)`` runs before each ``generate`` call; CLSR models get the
    batch language activated automatically. With ``gate_usage`` (CLSR models) the gate usage
    of every batch is added to it. ``tokens_per_second`` caps the new tokens of each cut by its
    duration (:func:`duration_token_cap`), on top of ``max_new_tokens``: a looping hypothesis
    then costs a few tokens per second of audio, not the whole context. A batch is generated up
    to the cap of its longest cut and each hypothesis is cut at its own cap (greedy rows do not
    depend on each other), so the hypotheses do not depend on how the cuts are batched.
    """
    device = default_device(None if device is None else str(device))
    model = model.to(device).eval()
    configure_generation(model, tokenizer)
    config = model.config
    dataset = WhisperAsrDataset.for_model(
        tokenizer, config, task=task, text_field=text_field, max_target_length=10**9
    )
    sampler = DurationBatchSampler(
        cuts, max_duration, shuffle=False, language_homogeneous=True, num_buckets=1
    )
    limit = config.max_target_positions - PROMPT_LENGTH
    max_new_tokens = limit if max_new_tokens is None else min(max_new_tokens, limit)
    if tokens_per_second is not None and tokens_per_second <= 0:
        raise ConfigError(f"tokens_per_second must be positive, got {tokens_per_second}")
    # in the generation config rather than as an argument: transformers warns when an argument
    # max_new_tokens meets a config max_length
    previous = model.generation_config.max_new_tokens
    model.generation_config.max_new_tokens = max_new_tokens
    capture = _EncoderCapture(model) if gate_usage is not None and clsr.has_clsr(model) else None
    try:
        found = _generate_all(
            model,
            tokenizer,
            dataset,
            sampler,
            task,
            num_beams,
            device,
            before_batch,
            progress,
            capture,
            gate_usage,
            max_new_tokens,
            tokens_per_second,
        )
    finally:
        model.generation_config.max_new_tokens = previous
        if capture is not None:
            capture.remove()
    return [found[cut.id] for cut in cuts]


def _generate_all(
    model,
    tokenizer,
    dataset,
    sampler,
    task,
    num_beams,
    device,
    before_batch,
    progress,
    capture=None,
    gate_usage=None,
    max_new_tokens=None,
    tokens_per_second=None,
) -> dict[str, Hypothesis]:
    found: dict[str, Hypothesis] = {}
    eot = PromptTokens.from_tokenizer(tokenizer).eot
    for cut_batch in tqdm(sampler, total=len(sampler), desc="decode", disable=not progress):
        batch = move_batch(dataset[cut_batch], device)
        cap, row_caps = max_new_tokens, None
        if tokens_per_second is not None:
            durations = {cut.id: cut.duration for cut in cut_batch}
            row_caps = [
                min(max_new_tokens, duration_token_cap(durations[cut_id], tokens_per_second))
                for cut_id in batch["cut_ids"]
            ]
            cap = max(row_caps)
        model.generation_config.max_new_tokens = cap
        _activate_language(model, batch["language"])
        if before_batch is not None:
            before_batch(model, batch)
        if capture is not None:
            capture.reset()
        generated = model.generate(
            input_features=batch["input_features"],
            language=batch["language"],
            task=task,
            return_timestamps=False,
            num_beams=num_beams,
            do_sample=False,
        )
        sequences = generated.sequences if hasattr(generated, "sequences") else generated
        if row_caps is not None:
            prompt = batch["decoder_input_ids"][:, :PROMPT_LENGTH].to(sequences.device)
            sequences = truncate_rows(sequences, prompt, row_caps, eot)
        texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
        for cut_id, lang, ref, hyp in zip(
            batch["cut_ids"], batch["languages"], batch["texts"], texts, strict=True
        ):
            found[cut_id] = Hypothesis(cut_id, lang, ref, hyp.strip())
        if capture is not None and gate_usage is not None:
            limits = cap if row_caps is None else row_caps  # a capped row feeds its cap - 1
            _gate_usage_of_batch(model, batch, sequences, capture, eot, limits, gate_usage)
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
