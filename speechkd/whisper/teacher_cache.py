"""Cache of teacher top-k output distributions, computed once and reused every epoch.

For each utterance (key: the cut id) the teacher's teacher-forced decoder positions are stored as
the ``k`` most probable token ids and their log-probabilities (τ = 1). The KD target is the
teacher distribution restricted to its top-k and renormalised; temperature is applied at loss
time (``softmax(log p / τ)`` over the top-k equals the temperature-τ teacher renormalised over the
same tokens). With ``k`` equal to the vocabulary size the target is the full teacher
distribution, so top-k KD reproduces full KD exactly.

On disk (one directory, written atomically as a whole)::

    index.json                  version, k, vocab_size, dtype, counts, caller metadata, shards
    shard-00000.safetensors     ids (N, k) int32, log_probs (N, k), offsets (utterances + 1) int64

Positions of an utterance are stored in order; masks must be prefixes (right padding), which is
how Whisper decoder batches are padded.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from speechkd.errors import ConfigError, DataError
from speechkd.losses.divergences import get_divergence
from speechkd.utils.atomic import atomic_directory, atomic_write_text

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
INDEX_NAME = "index.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class TopKTargets:
    """Top-k targets of a batch: ids and log-probs ``(B, L, k)``, real positions ``(B, L)``."""

    ids: torch.Tensor
    log_probs: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> TopKTargets:
        return TopKTargets(self.ids.to(device), self.log_probs.to(device), self.mask.to(device))


def topk_log_probs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most probable token ids and their log-probabilities (τ = 1), ``(..., k)`` each."""
    if not 1 <= k <= logits.shape[-1]:
        raise ConfigError(f"top-k size k={k} must lie in [1, {logits.shape[-1]}]")
    log_probs = F.log_softmax(logits.float(), dim=-1)
    values, ids = log_probs.topk(k, dim=-1)
    return ids, values


def topk_teacher_logits(
    ids: torch.Tensor, log_probs: torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """Dense teacher log-probabilities ``(..., vocab_size)``: top-k renormalised, −inf elsewhere.

    Feed them as ``teacher_logits`` to any divergence of :mod:`speechkd.losses.divergences`.
    """
    renormalised = log_probs.float() - torch.logsumexp(log_probs.float(), dim=-1, keepdim=True)
    dense = torch.full(
        (*ids.shape[:-1], vocab_size), float("-inf"), dtype=torch.float32, device=ids.device
    )
    return dense.scatter(-1, ids.long(), renormalised)


def topk_kd_loss(
    student_logits: torch.Tensor,
    targets: TopKTargets,
    divergence: str = "js",
    temperature: float = 1.0,
    **divergence_options: Any,
) -> torch.Tensor:
    """KD loss between cached top-k teacher targets and student logits ``(B, L, V)``.

    ``divergence``: "js" (default), "kl", "skew_kl", "ddsd" … (not "reverse_kl", which is infinite
    wherever the student puts mass outside the teacher's top-k). Padding is masked by
    ``targets.mask``; positions beyond the cached length must not be in the student batch.
    """
    if student_logits.shape[:-1] != targets.mask.shape:
        raise ConfigError(
            f"student positions {tuple(student_logits.shape[:-1])} differ from the cached "
            f"targets {tuple(targets.mask.shape)}"
        )
    teacher = topk_teacher_logits(
        targets.ids.to(student_logits.device),
        targets.log_probs.to(student_logits.device),
        student_logits.shape[-1],
    )
    loss_fn = get_divergence(divergence)
    return loss_fn(
        teacher,
        student_logits,
        targets.mask.to(student_logits.device),
        temperature,
        **divergence_options,
    )


def _prefix_length(mask_row: torch.Tensor, key: str) -> int:
    length = int(mask_row.sum())
    if not bool(mask_row[:length].all()):
        raise DataError(f"utterance {key}: the position mask is not a prefix (right padding)")
    return length


class TeacherCacheWriter:
    """Fill a teacher cache directory; use as a context manager (atomic on success)::

    with TeacherCacheWriter(out_dir, k=64, vocab_size=51865, metadata={...}) as writer:
        for batch in loader:
            writer.add_batch(batch_cut_ids, teacher_logits, decoder_mask)
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        k: int,
        vocab_size: int,
        shard_size: int = 2000,
        dtype: str = "float32",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not 1 <= k <= vocab_size:
            raise ConfigError(f"top-k size k={k} must lie in [1, vocab_size={vocab_size}]")
        if shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
        if dtype not in DTYPES:
            raise ConfigError(f"cache dtype {dtype!r} unknown; choose one of {sorted(DTYPES)}")
        self.directory = Path(directory)
        self.k = k
        self.vocab_size = vocab_size
        self.shard_size = shard_size
        self.dtype = dtype
        self.metadata = dict(metadata or {})
        self._context = None
        self._tmp: Path | None = None
        self._pending: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        self._shards: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._num_tokens = 0

    def __enter__(self) -> TeacherCacheWriter:
        self._context = atomic_directory(self.directory)
        self._tmp = self._context.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._context.__exit__(type(error), error, error.__traceback__)
                raise
        return self._context.__exit__(exc_type, exc, tb)

    def add(self, key: str, ids: torch.Tensor, log_probs: torch.Tensor) -> None:
        """Add one utterance: top-k ``ids`` and ``log_probs`` of shape ``(L, k)``."""
        if self._tmp is None:
            raise ConfigError("TeacherCacheWriter must be used as a context manager")
        if key in self._keys:
            raise DataError(f"utterance {key}: added twice to the teacher cache {self.directory}")
        if ids.shape != log_probs.shape or ids.dim() != 2 or ids.shape[1] != self.k:
            raise DataError(
                f"utterance {key}: top-k ids {tuple(ids.shape)} and log-probs "
                f"{tuple(log_probs.shape)} must both be (length, k={self.k})"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise DataError(f"utterance {key}: token ids outside [0, {self.vocab_size})")
        self._keys.add(key)
        self._pending.append(
            (
                key,
                ids.detach().to("cpu", torch.int32),
                log_probs.detach().to("cpu", DTYPES[self.dtype]),
            )
        )
        if len(self._pending) >= self.shard_size:
            self._flush()

    def add_batch(
        self, keys: Sequence[str], logits: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        """Add a batch of teacher logits ``(B, L, V)``; ``mask`` ``(B, L)`` marks real positions."""
        if logits.shape[-1] != self.vocab_size:
            raise DataError(
                f"teacher logits have {logits.shape[-1]} classes, the cache {self.vocab_size}"
            )
        if len(keys) != logits.shape[0]:
            raise DataError(f"{len(keys)} keys for a batch of {logits.shape[0]} utterances")
        ids, values = topk_log_probs(logits, self.k)
        for row, key in enumerate(keys):
            length = logits.shape[1] if mask is None else _prefix_length(mask[row], key)
            self.add(key, ids[row, :length], values[row, :length])

    def _flush(self) -> None:
        if not self._pending:
            return
        from safetensors.torch import save_file

        name = f"shard-{len(self._shards):05d}.safetensors"
        lengths = torch.tensor([ids.shape[0] for _, ids, _ in self._pending], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        tensors = {
            "ids": torch.cat([ids for _, ids, _ in self._pending]).contiguous(),
            "log_probs": torch.cat([lp for _, _, lp in self._pending]).contiguous(),
            "offsets": offsets,
        }
        save_file(tensors, str(self._tmp / name))
        self._shards.append({"file": name, "keys": [key for key, _, _ in self._pending]})
        self._num_tokens += int(offsets[-1])
        self._pending = []

    def _finish(self) -> None:
        self._flush()
        index = {
            "version": CACHE_VERSION,
            "k": self.k,
            "vocab_size": self.vocab_size,
            "dtype": self.dtype,
            "num_utterances": len(self._keys),
            "num_tokens": self._num_tokens,
            "metadata": self.metadata,
            "shards": self._shards,
        }
        atomic_write_text(self._tmp / INDEX_NAME, json.dumps(index, indent=1) + "\n")
        logger.info(
            "teacher cache %s: %d utterances, %d tokens, k=%d, %d shards",
            self.directory,
            len(self._keys),
            self._num_tokens,
            self.k,
            len(self._shards),
        )


class TeacherCache:
    """Read a teacher cache directory written by :class:`TeacherCacheWriter`."""

    def __init__(self, directory: str | os.PathLike, max_open_shards: int = 4) -> None:
        self.directory = Path(directory)
        index_path = self.directory / INDEX_NAME
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{index_path}: teacher cache index is missing") from None
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(
                f"{index_path}: cannot read the teacher cache index: {error}"
            ) from error
        if index.get("version") != CACHE_VERSION:
            raise DataError(f"{index_path}: field version is {index.get('version')!r}")
        for field in ("k", "vocab_size", "shards"):
            if field not in index:
                raise DataError(f"{index_path}: field {field} is missing")
        self.k: int = index["k"]
        self.vocab_size: int = index["vocab_size"]
        self.metadata: dict[str, Any] = index.get("metadata", {})
        self._shard_files = [self.directory / shard["file"] for shard in index["shards"]]
        self._where: dict[str, tuple[int, int]] = {}
        for shard_index, shard in enumerate(index["shards"]):
            for row, key in enumerate(shard["keys"]):
                self._where[key] = (shard_index, row)
        self._loaded: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self._max_open = max(1, max_open_shards)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def keys(self) -> list[str]:
        return list(self._where)

    def _shard(self, shard_index: int) -> dict[str, torch.Tensor]:
        if shard_index in self._loaded:
            self._loaded.move_to_end(shard_index)
            return self._loaded[shard_index]
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._shard_files[shard_index]
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as error:
            raise DataError(f"{path}: cannot read teacher cache shard: {error}") from error
        for name in ("ids", "log_probs", "offsets"):
            if name not in tensors:
                raise DataError(f"{path}: tensor {name} is missing")
        if tensors["ids"].shape[-1] != self.k:
            raise DataError(f"{path}: tensor ids has k={tensors['ids'].shape[-1]}, index {self.k}")
        self._loaded[shard_index] = tensors
        while len(self._loaded) > self._max_open:
            self._loaded.popitem(last=False)
        return tensors

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k ids (int64) and log-probs (float32) of utterance ``key``, ``(L, k)`` each."""
        if key not in self._where:
            raise DataError(f"{self.directory}: utterance {key} is not in the teacher cache")
        shard_index, row = self._where[key]
        tensors = self._shard(shard_index)
        start, end = int(tensors["offsets"][row]), int(tensors["offsets"][row + 1])
        return tensors["ids"][start:end].long(), tensors["log_probs"][start:end].float()

    def batch(self, keys: Sequence[str], length: int | None = None) -> TopKTargets:
        """Right-padded targets of ``keys``; ``length`` (default: the longest) is the padded length.

        Padding positions hold a uniform distribution over k tokens (finite everywhere) and are
        false in the mask. An utterance longer than ``length`` raises DataError.
        """
        entries = [self.get(key) for key in keys]
        longest = max((ids.shape[0] for ids, _ in entries), default=0)
        length = longest if length is None else length
        ids = torch.arange(self.k, dtype=torch.int64).expand(len(keys), length, self.k).clone()
        log_probs = torch.full((len(keys), length, self.k), -math.log(self.k))
        mask = torch.zeros(len(keys), length, dtype=torch.bool)
        for row, (key, (entry_ids, entry_log_probs)) in enumerate(zip(keys, entries, strict=True)):
            size = entry_ids.shape[0]
            if size > length:
                raise DataError(
                    f"{self.directory}: utterance {key} has {size} cached positions, more than "
                    f"the batch length {length}"
                )
            ids[row, :size] = entry_ids
            log_probs[row, :size] = entry_log_probs
            mask[row, :size] = True
        return TopKTargets(ids, log_probs, mask)
