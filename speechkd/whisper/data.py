"""Whisper ASR batches from a lhotse CutSet: log-mel inputs, decoder prompts and labels.

Every cut becomes the decoder sequence ::

    <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|> text tokens <|endoftext|>

``decoder_input_ids`` is that sequence without its last token and ``labels`` the sequence shifted
by one (``labels[:, i]`` is the target of position ``i``). The loss covers the text tokens and
``<|endoftext|>`` only: the targets of the prompt positions (``<|lang|>``, ``<|transcribe|>``,
``<|notimestamps|>``) and the padding are -100. The language is ``supervision.language``.

Features come from the cut when it stores ``whisper-logmel`` features of the right size, else they
are computed from its audio with :class:`speechkd.data.features.WhisperLogMel`; they are padded to
the encoder's input length (3000 frames for the OpenAI sizes, ``2 * max_source_positions``).

:class:`DurationBatchSampler` groups cuts of similar duration into batches of at most
``max_duration`` seconds (optionally one language per batch, as CLSR training needs); its order
depends only on ``seed`` and the epoch, so a resumed run sees the same batches.
:class:`RankBatches` is one process's share of an epoch of such a sampler in data-parallel
training (and the remainder of an epoch when training resumes in its middle).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from lhotse import CutSet
from lhotse.cut import Cut

from speechkd.data.features import (
    WHISPER_NUM_FRAMES,
    WhisperLogMel,
    WhisperLogMelConfig,
    load_mono_audio,
    pad_whisper_features,
)
from speechkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
PROMPT_LENGTH = 4  # sot, language, task, notimestamps
TASKS = ("transcribe", "translate")
PAD_MODES = ("repeat", "drop", "none")


@dataclass(frozen=True)
class PromptTokens:
    """Ids of Whisper's special tokens used by the decoder prompt."""

    sot: int
    eot: int
    transcribe: int
    translate: int
    notimestamps: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> PromptTokens:
        ids = {
            name: _special_id(tokenizer, token)
            for name, token in (
                ("sot", "<|startoftranscript|>"),
                ("eot", "<|endoftext|>"),
                ("transcribe", "<|transcribe|>"),
                ("translate", "<|translate|>"),
                ("notimestamps", "<|notimestamps|>"),
            )
        }
        return cls(**ids)


def _special_id(tokenizer, token: str) -> int:
    token_id = token_to_id(tokenizer, token)
    if token_id is None:
        raise DataError(f"the Whisper tokenizer has no token {token}")
    return token_id


def token_to_id(tokenizer, token: str) -> int | None:
    """Id of ``token``, or None if the tokenizer maps it to its unknown token."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or tokenizer.convert_ids_to_tokens(token_id) != token:
        return None
    return token_id


def language_token_id(tokenizer, language: str) -> int:
    """Id of ``<|language|>``; DataError if the tokenizer does not know the language."""
    token = f"<|{language}|>"
    token_id = token_to_id(tokenizer, token)
    if token_id is None:
        raise DataError(f"language {language!r}: the Whisper tokenizer has no token {token}")
    return token_id


def prompt_ids(tokenizer, language: str, task: str = "transcribe") -> list[int]:
    """``[<|startoftranscript|>, <|language|>, <|task|>, <|notimestamps|>]``."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
    special = PromptTokens.from_tokenizer(tokenizer)
    return [
        special.sot,
        language_token_id(tokenizer, language),
        getattr(special, task),
        special.notimestamps,
    ]


def text_token_ids(tokenizer, text: str, leading_space: bool = True) -> list[int]:
    """Text tokens as Whisper emits them after the prompt (with a leading space by default)."""
    text = text.strip()
    return tokenizer.encode((" " + text) if leading_space else text, add_special_tokens=False)


def target_sequence(
    tokenizer, text: str, language: str, task: str = "transcribe", leading_space: bool = True
) -> list[int]:
    """The full decoder sequence: prompt + text tokens + ``<|endoftext|>``."""
    eot = PromptTokens.from_tokenizer(tokenizer).eot
    text_ids = text_token_ids(tokenizer, text, leading_space)
    return [*prompt_ids(tokenizer, language, task), *text_ids, eot]


def cut_text_and_language(
    cut: Cut, text_field: str = "text", default_language: str | None = None
) -> tuple[str, str]:
    """Transcript (supervisions joined in time order) and the language of a cut."""
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    if not sups:
        raise DataError(f"cut {cut.id}: has no supervision (transcript)")
    texts = []
    languages = set()
    for sup in sups:
        text = sup.text if text_field == "text" else (sup.custom or {}).get(text_field)
        if text is None:
            raise DataError(f"cut {cut.id}, supervision {sup.id}: no {text_field!r} field")
        texts.append(str(text).strip())
        languages.add(sup.language or default_language)
    if None in languages:
        raise DataError(
            f"cut {cut.id}: supervision has no language (set supervision.language or pass a "
            f"default language)"
        )
    if len(languages) > 1:
        raise DataError(f"cut {cut.id}: supervisions of several languages {sorted(languages)}")
    return " ".join(t for t in texts if t), languages.pop()


def cut_language(cut: Cut, default_language: str | None = None) -> str:
    """The cut's language (``supervision.language`` of its first supervision)."""
    for sup in cut.supervisions:
        if sup.language:
            return sup.language
    if default_language is None:
        raise DataError(f"cut {cut.id}: supervision has no language")
    return default_language


def encoder_num_frames(config) -> int:
    """Input frames the encoder of a ``WhisperConfig`` takes (3000 for the OpenAI sizes)."""
    return 2 * int(config.max_source_positions)


class WhisperFeatureLoader:
    """Whisper log-mel features ``(frames, bins)`` of a cut: stored ones, else from its audio."""

    def __init__(self, num_mel_bins: int = 80, use_stored: bool = True) -> None:
        self.num_mel_bins = num_mel_bins
        self.use_stored = use_stored
        self._extractor: WhisperLogMel | None = None

    @property
    def extractor(self) -> WhisperLogMel:
        if self._extractor is None:
            self._extractor = WhisperLogMel(WhisperLogMelConfig(num_mel_bins=self.num_mel_bins))
        return self._extractor

    def _stored_usable(self, cut: Cut) -> bool:
        return (
            self.use_stored
            and cut.has_features
            and cut.features.type == WhisperLogMel.name
            and cut.num_features == self.num_mel_bins
        )

    def __call__(self, cut: Cut) -> torch.Tensor:
        if self._stored_usable(cut):
            try:
                return torch.as_tensor(cut.load_features(), dtype=torch.float32)
            except Exception as err:
                reason = re.split(r"\s*\[extra info\]", str(err))[0]  # lhotse's call repr
                raise DataError(
                    f"cut {cut.id}: cannot load stored features from "
                    f"{cut.features.storage_path} ({reason})"
                ) from err
        if not cut.has_recording:
            raise DataError(
                f"cut {cut.id}: no audio and no stored {WhisperLogMel.name} features with "
                f"{self.num_mel_bins} bins"
            )
        audio = load_mono_audio(cut)
        return torch.from_numpy(self.extractor.extract(audio, cut.sampling_rate))


class WhisperAsrDataset(torch.utils.data.Dataset):
    """Map-style lhotse dataset: a CutSet (one batch, from a sampler) → a dict of tensors.

    Batch keys: ``input_features`` (B, bins, frames), ``feature_lengths`` (B,) real frames,
    ``decoder_input_ids`` / ``decoder_attention_mask`` / ``labels`` (B, L) (padding: eot, 0,
    -100), ``cut_ids``, ``languages``, ``texts`` (lists) and ``language`` (the common language, or
    None if the batch mixes languages).
    """

    def __init__(
        self,
        tokenizer,
        num_frames: int = WHISPER_NUM_FRAMES,
        num_mel_bins: int = 80,
        task: str = "transcribe",
        text_field: str = "text",
        default_language: str | None = None,
        max_target_length: int = 448,
        use_stored_features: bool = True,
        leading_space: bool = True,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
        self.tokenizer = tokenizer
        self.num_frames = num_frames
        self.task = task
        self.text_field = text_field
        self.default_language = default_language
        self.max_target_length = max_target_length
        self.leading_space = leading_space
        self.special = PromptTokens.from_tokenizer(tokenizer)
        self.features = WhisperFeatureLoader(num_mel_bins, use_stored_features)

    @classmethod
    def for_model(cls, tokenizer, config, **options) -> WhisperAsrDataset:
        """A dataset sized for a ``WhisperConfig``: its encoder input (frames, mel bins) and, unless
        ``max_target_length`` is given, its decoder length."""
        options.setdefault("max_target_length", config.max_target_positions)
        return cls(
            tokenizer,
            num_frames=encoder_num_frames(config),
            num_mel_bins=config.num_mel_bins,
            **options,
        )

    def _features(self, cut: Cut) -> tuple[torch.Tensor, int]:
        feats = self.features(cut)
        if feats.shape[0] > self.num_frames:
            raise DataError(
                f"cut {cut.id}: {feats.shape[0]} feature frames ({cut.duration:.2f} s), more than "
                f"the {self.num_frames} the encoder accepts"
            )
        return pad_whisper_features(feats, self.num_frames).T, int(feats.shape[0])

    def _sequence(self, cut: Cut) -> tuple[list[int], str, str]:
        text, language = cut_text_and_language(cut, self.text_field, self.default_language)
        seq = target_sequence(self.tokenizer, text, language, self.task, self.leading_space)
        if len(seq) - 1 > self.max_target_length:
            raise DataError(
                f"cut {cut.id}: {len(seq) - 1} decoder positions, more than the decoder's "
                f"{self.max_target_length}"
            )
        return seq, text, language

    def __getitem__(self, cuts: CutSet) -> dict:
        cut_list = list(cuts)
        if not cut_list:
            raise DataError("empty batch of cuts")
        feats, lengths, seqs, texts, languages = [], [], [], [], []
        for cut in cut_list:
            f, n = self._features(cut)
            seq, text, language = self._sequence(cut)
            feats.append(f)
            lengths.append(n)
            seqs.append(seq)
            texts.append(text)
            languages.append(language)
        batch = collate_sequences(seqs, self.special.eot)
        batch.update(
            input_features=torch.stack(feats),
            feature_lengths=torch.tensor(lengths, dtype=torch.long),
            cut_ids=[c.id for c in cut_list],
            languages=languages,
            texts=texts,
            language=languages[0] if len(set(languages)) == 1 else None,
        )
        return batch


def collate_sequences(seqs: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Decoder inputs, mask and labels (-100 on the prompt targets and padding) of sequences."""
    length = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    labels = torch.full((len(seqs), length), IGNORE_INDEX, dtype=torch.long)
    for row, seq in enumerate(seqs):
        n = len(seq) - 1
        inputs[row, :n] = torch.tensor(seq[:-1])
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(seq[1:])
        labels[row, : PROMPT_LENGTH - 1] = IGNORE_INDEX
    return {"decoder_input_ids": inputs, "decoder_attention_mask": mask, "labels": labels}


class DurationBatchSampler:
    """Batches (CutSets) of at most ``max_duration`` seconds of similar-length cuts.

    Cuts are sorted by duration, split into ``num_buckets`` buckets of equal count, shuffled inside
    each bucket (``shuffle``) and packed greedily; the batch order is shuffled too. With
    ``language_homogeneous`` every batch holds one language. The order depends only on ``seed``
    and the epoch (:meth:`set_epoch`), so every process of a data-parallel job builds the same
    order (:class:`RankBatches` deals it out). A cut longer than ``max_duration`` forms its own
    batch. Use as ``DataLoader(dataset, sampler=sampler, batch_size=None)``.
    """

    def __init__(
        self,
        cuts: CutSet,
        max_duration: float,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 10,
        language_homogeneous: bool = False,
        max_cuts: int | None = None,
        default_language: str | None = None,
    ) -> None:
        if max_duration <= 0:
            raise ConfigError(f"max_duration must be positive, got {max_duration}")
        if num_buckets < 1:
            raise ConfigError(f"num_buckets must be >= 1, got {num_buckets}")
        self.cuts = cuts.to_eager() if hasattr(cuts, "to_eager") else cuts
        if len(self.cuts) == 0:
            raise DataError("the CutSet to sample from is empty")
        self.max_duration = float(max_duration)
        self.shuffle = shuffle
        self.seed = seed
        self.num_buckets = num_buckets
        self.language_homogeneous = language_homogeneous
        self.max_cuts = max_cuts
        self.default_language = default_language
        self.epoch = 0
        self._cache: tuple[tuple, list[list[Cut]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])

    def _groups(self) -> list[list[Cut]]:
        if not self.language_homogeneous:
            return [list(self.cuts)]
        groups: dict[str, list[Cut]] = {}
        for cut in self.cuts:
            groups.setdefault(cut_language(cut, self.default_language), []).append(cut)
        return [groups[lang] for lang in sorted(groups)]

    def _pack(self, cuts: list[Cut]) -> list[list[Cut]]:
        batches: list[list[Cut]] = []
        current: list[Cut] = []
        total = 0.0
        for cut in cuts:
            full = self.max_cuts is not None and len(current) >= self.max_cuts
            if current and (total + cut.duration > self.max_duration or full):
                batches.append(current)
                current, total = [], 0.0
            current.append(cut)
            total += cut.duration
        if current:
            batches.append(current)
        return batches

    def batches(self) -> list[list[Cut]]:
        """The cut lists of this epoch's batches, in order (computed once per epoch)."""
        key = (
            self.seed,
            self.epoch,
            self.max_duration,
            self.shuffle,
            self.num_buckets,
            self.language_homogeneous,
            self.max_cuts,
        )
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._make_batches())
        return list(self._cache[1])

    def _make_batches(self) -> list[list[Cut]]:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        out: list[list[Cut]] = []
        for group in self._groups():
            ordered = sorted(group, key=lambda c: (c.duration, c.id))
            size = -(-len(ordered) // self.num_buckets)
            for start in range(0, len(ordered), size):
                bucket = ordered[start : start + size]
                if self.shuffle:
                    rng.shuffle(bucket)
                out.extend(self._pack(bucket))
        if self.shuffle:
            rng.shuffle(out)
        return out

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[CutSet]:
        for batch in self.batches():
            yield CutSet.from_cuts(batch)


def num_rounds(num_batches: int, world_size: int, pad: str = "repeat", rank: int = 0) -> int:
    """Batches each of ``world_size`` processes gets from an epoch of ``num_batches`` batches.

    ``repeat``: ceil(N / W) (the last incomplete round is filled with the epoch's first
    batches); ``drop``: floor(N / W) (the last incomplete round is dropped); ``none``: this
    ``rank``'s count without padding (ranks may differ: evaluation only).
    """
    if pad not in PAD_MODES:
        raise ConfigError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside the world of {world_size} processes")
    if pad == "repeat":
        return -(-num_batches // world_size)
    if pad == "drop":
        return num_batches // world_size
    return len(range(rank, num_batches, world_size))


class RankBatches:
    """One process's share of an epoch of a batch sampler, from round ``start`` on.

    The sampler's epoch order (the same in every process: it depends only on its seed and epoch)
    is dealt out in rounds: in round ``k`` process ``r`` of ``W`` gets global batch ``k*W + r``,
    so one optimizer step of ``W`` processes covers the same batches as one process with
    ``W`` times the gradient accumulation. With ``pad="repeat"`` (default) the last incomplete
    round takes global positions past the end modulo the epoch length (the epoch's first
    batches again); with ``"drop"`` it is left out; ``"none"`` (evaluation) gives each rank its
    own count. Iterating skips the first ``start`` rounds without loading their data (resuming
    in the middle of an epoch). Use as a DataLoader ``sampler`` with ``batch_size=None``.
    """

    def __init__(
        self,
        sampler: Iterable,
        rank: int = 0,
        world_size: int = 1,
        pad: str = "repeat",
        start: int = 0,
    ) -> None:
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.num_batches = len(sampler)  # type: ignore[arg-type]
        self.rounds = num_rounds(self.num_batches, world_size, pad, rank)
        if not 0 <= start <= self.rounds:
            raise ConfigError(f"start round {start} is outside 0..{self.rounds}")
        self.start = start

    def global_index(self, local_index: int) -> int:
        """Position in the (padded) epoch order of this rank's ``local_index``-th batch."""
        return local_index * self.world_size + self.rank

    def global_indices(self) -> list[int]:
        """Epoch-order positions of the batches this rank yields (from round ``start``)."""
        return [self.global_index(k) for k in range(self.start, self.rounds)]

    def __len__(self) -> int:
        return self.rounds - self.start

    def __iter__(self) -> Iterator:
        wanted = self.global_indices()
        if not wanted:
            return
        real = [g for g in wanted if g < self.num_batches]
        padded = [g % self.num_batches for g in wanted if g >= self.num_batches]
        keep = min(self.num_batches, self.world_size)  # padding comes from these
        head: list = []
        position = 0
        for index, batch in enumerate(self.sampler):
            if index < keep and padded:
                head.append(batch)
            if position < len(real) and index == real[position]:
                yield batch
                position += 1
            if position == len(real) and (not padded or len(head) == keep):
                break
        if position != len(real):
            raise DataError(f"the sampler yielded fewer batches than its length {self.num_batches}")
        for index in padded:
            yield head[index]
