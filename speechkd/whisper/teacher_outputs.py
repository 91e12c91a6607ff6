"""Teacher outputs for knowledge distillation: a teacher-forced pass of a Whisper teacher over a
CutSet, cached as top-k distributions (:mod:`speechkd.whisper.teacher_cache`), in shards.

Batches are those of training: :class:`~speechkd.whisper.data.WhisperAsrDataset` (same prompt
``<|sot|><|lang|><|task|><|notimestamps|>``, text tokens, ``<|endoftext|>``, same features), so the
teacher sees exactly the decoder inputs the student sees.

Cached positions: every non-padding decoder position of an utterance, i.e. the positions where
``decoder_attention_mask`` is 1 (``len(prompt + text + eot) - 1`` of them, position ``i``
predicting token ``i + 1``). They are a prefix of the decoder sequence, so for a training batch
``cache.batch(batch["cut_ids"], length=batch["decoder_input_ids"].shape[1])`` is aligned
position by position with the student's logits and its mask equals ``decoder_attention_mask``.
The student's KD loss (:mod:`speechkd.whisper.distil`) uses the positions whose label is not
``IGNORE_INDEX`` (the text tokens and ``<|endoftext|>``, as the cross-entropy): a subset of the
cached ones, selected by AND-ing that mask with ``labels != IGNORE_INDEX``. The three prompt
positions (predicting ``<|lang|>``, ``<|task|>``, ``<|notimestamps|>``) are cached as well, so
that a KD over all decoder positions needs no other cache.

Shards: shard ``J`` of ``N`` (1-based) is the ``J``-th contiguous slice of the cuts sorted by
(duration, id); inside a shard the cuts are batched in that order (no shuffling), so the merged
cache lists the utterances in the same order whatever ``N``. Shard ``J`` is written atomically
to ``<dir>/shards/J``; its index records a fingerprint of the teacher, tokenizer, cuts and
options, and a rerun skips the shard only when the stored cache is complete and has the same
fingerprint. :func:`merge_teacher_caches` writes ``<dir>/index.json`` listing the shard files in
place (``shards/J/shard-XXXXX.safetensors``, no data is copied): ``TeacherCache(<dir>)`` reads
the whole set. Recomputing a shard first removes a merged index that points at it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from lhotse import CutSet
from torch import nn
from tqdm import tqdm

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.fingerprint import path_digest
from speechkd.whisper.data import (
    DurationBatchSampler,
    WhisperAsrDataset,
    cut_text_and_language,
)
from speechkd.whisper.teacher_cache import (
    CACHE_VERSION,
    DTYPES,
    INDEX_NAME,
    TeacherCacheWriter,
)

logger = logging.getLogger(__name__)

POSITIONS = "decoder_attention_mask"
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class TeacherCacheSpec:
    """Everything the content of a teacher cache depends on (paths are for the record only)."""

    teacher: str
    tokenizer: str
    cuts: str
    vocab_size: int
    top_k: int = 64
    dtype: str = "float32"
    num_shards: int = 1
    max_duration: float = 200.0
    max_cuts: int | None = None
    task: str = "transcribe"
    text_field: str = "text"
    default_language: str | None = None
    amp: bool = False

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"cache dtype {self.dtype!r} unknown; choose one of {sorted(DTYPES)}")
        if self.num_shards < 1:
            raise ConfigError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.max_duration <= 0:
            raise ConfigError(f"max_duration must be positive, got {self.max_duration}")

    def fingerprint(self) -> str:
        """Digest of the inputs' contents (teacher, tokenizer, cuts) and the options."""
        record = asdict(self)
        for name in ("teacher", "tokenizer", "cuts"):
            digest = path_digest(record[name])
            # a hub name (no such path) stands for itself
            record[name] = digest if digest != "missing" else f"name:{record[name]}"
        text = json.dumps(record, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shard_dir(out_dir: str | os.PathLike, job: int) -> Path:
    """``<out_dir>/shards/<job>``."""
    return Path(out_dir) / SHARDS_DIR / str(job)


def order_cuts(cuts: CutSet) -> list:
    """Cuts sorted by (duration, id): the order of the cache and of its batches."""
    return sorted(cuts, key=lambda c: (c.duration, c.id))


def select_cache_shard(cuts: CutSet, job: int, num_shards: int) -> CutSet:
    """The ``job``-th (1-based) of ``num_shards`` contiguous slices of the (duration, id) order."""
    if not 1 <= job <= num_shards:
        raise ConfigError(f"shard {job}/{num_shards}: need 1 <= J <= N")
    ordered = order_cuts(cuts)
    start = len(ordered) * (job - 1) // num_shards
    end = len(ordered) * job // num_shards
    return CutSet.from_cuts(ordered[start:end])


def check_teacher_vocab(model: nn.Module, tokenizer, teacher: str = "the teacher") -> None:
    """DataError when the teacher's output vocabulary and the tokenizer's size differ."""
    model_vocab = int(model.config.vocab_size)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "out_features", model_vocab) != model_vocab:
        model_vocab = int(output.out_features)
    if model_vocab != len(tokenizer):
        raise DataError(
            f"{teacher}: the teacher's vocabulary has {model_vocab} tokens but the tokenizer "
            f"{len(tokenizer)}: the cache must be made with the student's tokenizer"
        )


def check_transcripts(
    cuts: CutSet, text_field: str = "text", default_language: str | None = None
) -> None:
    """DataError naming the first cut without a transcript (or language), before any forward."""
    for cut in cuts:
        text, _ = cut_text_and_language(cut, text_field, default_language)
        if not text.strip():
            raise DataError(f"cut {cut.id}: empty transcript in field {text_field!r}")


def teacher_dataset(model: nn.Module, tokenizer, spec: TeacherCacheSpec) -> WhisperAsrDataset:
    """The training dataset (prompt, labels, features) sized for the teacher's encoder."""
    return WhisperAsrDataset.for_model(
        tokenizer,
        model.config,
        task=spec.task,
        text_field=spec.text_field,
        default_language=spec.default_language,
    )


@torch.inference_mode()
def teacher_logits(model: nn.Module, batch: Mapping[str, Any], amp: bool = False) -> torch.Tensor:
    """Teacher-forced logits ``(B, L, V)`` of a :class:`WhisperAsrDataset` batch."""
    device = batch["input_features"].device
    enabled = amp and device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled):
        outputs = model(
            input_features=batch["input_features"].to(model.dtype),
            decoder_input_ids=batch["decoder_input_ids"],
            decoder_attention_mask=batch["decoder_attention_mask"],
        )
    return outputs.logits


def write_teacher_cache(
    model: nn.Module,
    tokenizer,
    cuts: CutSet,
    directory: str | os.PathLike,
    spec: TeacherCacheSpec,
    job: int = 1,
    total_cuts: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    utterances_per_file: int = 2000,
    progress: bool = True,
    start_time: float | None = None,
) -> dict[str, Any]:
    """Cache the teacher's top-k outputs of ``cuts`` (shard ``job`` of ``spec.num_shards`` of a
    set of ``total_cuts``) in ``directory``, in (duration, id) order, atomically.

    ``metadata`` is stored in the index with the teacher, tokenizer (and its vocabulary size),
    cuts, fingerprint, wall time (from ``start_time``, default now: pass the time before the
    teacher was loaded to count its loading), audio duration and real-time factor. Returns that
    metadata.
    """
    if not 1 <= job <= spec.num_shards:
        raise ConfigError(f"shard {job}/{spec.num_shards}: need 1 <= J <= N")
    start = time.time() if start_time is None else start_time
    check_teacher_vocab(model, tokenizer, spec.teacher)
    check_transcripts(cuts, spec.text_field, spec.default_language)
    model = model.to(device).eval()
    dataset = teacher_dataset(model, tokenizer, spec)
    ordered = order_cuts(cuts)
    sampler = (
        DurationBatchSampler(
            CutSet.from_cuts(ordered),
            spec.max_duration,
            shuffle=False,
            num_buckets=1,
            max_cuts=spec.max_cuts,
            default_language=spec.default_language,
        )
        if ordered
        else []  # more shards than cuts: an empty cache
    )
    record = dict(metadata or {})
    record.update(
        teacher=spec.teacher,
        tokenizer=spec.tokenizer,
        tokenizer_vocab_size=len(tokenizer),
        cuts=spec.cuts,
        positions=POSITIONS,
        top_k=spec.top_k,
        shard=job,
        num_shards=spec.num_shards,
        total_cuts=len(cuts) if total_cuts is None else total_cuts,
        fingerprint=spec.fingerprint(),
        device=str(device),
    )
    audio = 0.0
    with TeacherCacheWriter(
        directory,
        k=spec.top_k,
        vocab_size=len(tokenizer),
        shard_size=utterances_per_file,
        dtype=spec.dtype,
        metadata=record,
    ) as writer:
        batches = tqdm(sampler, total=len(sampler), desc="teacher", disable=not progress)
        for cut_batch in batches:
            batch = dataset[cut_batch]
            inputs = {
                key: batch[key].to(device)
                for key in ("input_features", "decoder_input_ids", "decoder_attention_mask")
            }
            logits = teacher_logits(model, inputs, spec.amp)
            writer.add_batch(batch["cut_ids"], logits, batch["decoder_attention_mask"].bool())
            audio += sum(c.duration for c in cut_batch)
        seconds = time.time() - start
        record.update(
            num_cuts=len(cuts),
            audio_seconds=round(audio, 3),
            wall_seconds=round(seconds, 3),
            rtf=round(seconds / audio, 5) if audio else None,
        )
        writer.metadata = record
    logger.info(
        "%s: %d cuts (%.1f s of audio) in %.1f s (RTF %.4f)",
        directory,
        record["num_cuts"],
        audio,
        seconds,
        seconds / audio if audio else float("nan"),
    )
    return record


def read_index(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The ``index.json`` of a cache directory, or None when missing or unreadable."""
    path = Path(directory) / INDEX_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def shard_is_complete(
    directory: str | os.PathLike, fingerprint: str, job: int, num_cuts: int
) -> tuple[bool, str]:
    """Whether shard ``job``'s cache in ``directory`` is complete for ``fingerprint``, and why."""
    directory = Path(directory)
    index = read_index(directory)
    if index is None:
        return False, "no readable index"
    metadata = index.get("metadata", {})
    if index.get("version") != CACHE_VERSION:
        return False, f"cache version {index.get('version')!r}"
    if metadata.get("fingerprint") != fingerprint:
        return False, "teacher, tokenizer, cuts or options changed"
    if metadata.get("shard") != job:
        return False, f"made as shard {metadata.get('shard')!r}"
    if index.get("num_utterances") != num_cuts:
        return False, f"{index.get('num_utterances')} utterances cached, {num_cuts} expected"
    keys = [key for shard in index.get("shards", []) for key in shard.get("keys", [])]
    if len(keys) != num_cuts:
        return False, f"{len(keys)} keys listed, {num_cuts} expected"
    for shard in index.get("shards", []):
        if not (directory / shard["file"]).is_file():
            return False, f"file {shard['file']} is missing"
    return True, "complete, same fingerprint"


def merge_teacher_caches(out_dir: str | os.PathLike, num_shards: int) -> dict[str, Any]:
    """Merge ``<out_dir>/shards/1..N`` into ``<out_dir>/index.json`` (files stay in place).

    Every shard must be complete, made for ``num_shards`` shards with the same fingerprint, and
    the keys must be unique. The merged metadata sums the shards' wall times. Returns the index.
    """
    if num_shards < 1:
        raise ConfigError(f"the number of shards to merge must be >= 1, got {num_shards}")
    out_dir = Path(out_dir)
    start = time.time()
    indexes = []
    for job in range(1, num_shards + 1):
        directory = shard_dir(out_dir, job)
        index = read_index(directory)
        if index is None:
            raise DataError(f"{directory / INDEX_NAME}: shard {job}/{num_shards} is not finished")
        metadata = index.get("metadata", {})
        if metadata.get("num_shards") != num_shards or metadata.get("shard") != job:
            raise DataError(
                f"{directory / INDEX_NAME}: made as shard {metadata.get('shard')}/"
                f"{metadata.get('num_shards')}, not {job}/{num_shards}"
            )
        indexes.append((directory, index))
    first_dir, first = indexes[0]
    first_meta = first["metadata"]
    for directory, index in indexes[1:]:
        if index["metadata"].get("fingerprint") != first_meta.get("fingerprint"):
            raise DataError(
                f"{directory / INDEX_NAME}: fingerprint differs from {first_dir / INDEX_NAME}: "
                "the shards were made from different teachers, cuts or options"
            )
        for field in ("k", "vocab_size", "dtype"):
            if index.get(field) != first.get(field):
                raise DataError(
                    f"{directory / INDEX_NAME}: field {field} is {index.get(field)!r}, "
                    f"{first_dir / INDEX_NAME} has {first.get(field)!r}"
                )
    files: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for job, (directory, index) in enumerate(indexes, start=1):
        for shard in index["shards"]:
            path = directory / shard["file"]
            if not path.is_file():
                raise DataError(f"{path}: shard file is missing")
            for key in shard["keys"]:
                if key in seen:
                    raise DataError(
                        f"utterance {key} is in shards {seen[key]} and {job} of {out_dir}"
                    )
                seen[key] = job
            files.append(
                {"file": path.relative_to(out_dir).as_posix(), "keys": list(shard["keys"])}
            )
    total = first_meta.get("total_cuts")
    if total is not None and len(seen) != total:
        raise DataError(f"{out_dir}: the {num_shards} shards hold {len(seen)} cuts, not {total}")
    shard_seconds = [index["metadata"].get("wall_seconds", 0.0) for _, index in indexes]
    audio = sum(index["metadata"].get("audio_seconds", 0.0) for _, index in indexes)
    metadata = {
        key: first_meta.get(key)
        for key in (
            "teacher",
            "tokenizer",
            "tokenizer_vocab_size",
            "cuts",
            "positions",
            "top_k",
            "fingerprint",
            "total_cuts",
        )
    }
    metadata.update(
        num_shards=num_shards,
        num_cuts=len(seen),
        audio_seconds=round(audio, 3),
        wall_seconds=round(sum(shard_seconds), 3),
        shard_wall_seconds=shard_seconds,
        max_shard_wall_seconds=max(shard_seconds),
        rtf=round(sum(shard_seconds) / audio, 5) if audio else None,
        devices=sorted({str(index["metadata"].get("device")) for _, index in indexes}),
        merge_seconds=round(time.time() - start, 3),
    )
    merged = {
        "version": CACHE_VERSION,
        "k": first["k"],
        "vocab_size": first["vocab_size"],
        "dtype": first["dtype"],
        "num_utterances": len(seen),
        "num_tokens": sum(index.get("num_tokens", 0) for _, index in indexes),
        "metadata": metadata,
        "shards": files,
    }
    atomic_write_text(out_dir / INDEX_NAME, json.dumps(merged, indent=1) + "\n")
    logger.info(
        "merged %d shards into %s: %d utterances, %d tokens, teacher time %.1f s",
        num_shards,
        out_dir / INDEX_NAME,
        merged["num_utterances"],
        merged["num_tokens"],
        metadata["wall_seconds"],
    )
    return merged


def remove_merged_index(out_dir: str | os.PathLike) -> None:
    """Remove ``<out_dir>/index.json`` (before a shard it may point at is rewritten)."""
    path = Path(out_dir) / INDEX_NAME
    if path.exists():
        logger.info("removing %s: a shard it points at is being rewritten", path)
        path.unlink()
