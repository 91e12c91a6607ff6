"""Large CutSets with bounded memory: streaming writing, lazy sharding and lazy batch sampling.

``speechkd.whisper.data.DurationBatchSampler`` holds the whole CutSet in memory (it sorts all
cuts by duration each epoch); that is right for the recipes' corpora but grows with the
manifest. For manifests of millions of cuts, :func:`lazy_batch_sampler` gives lhotse's
``DynamicBucketingSampler`` over a lazily opened CutSet: it reads the manifest as a stream and
keeps only its shuffling and bucketing buffers in memory.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler

from speechkd.data.manifest_io import READ_ERRORS, manifest_error, open_cuts_lazy
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_path

LANGUAGES = ("en", "ca", "de", "uk")


def synthetic_cut_dicts(
    num_cuts: int, seed: int = 0, audio_dir: str = "/nonexistent"
) -> Iterator[dict]:
    """``num_cuts`` MonoCut dicts (0.5-20 s, a transcript and a language each), one at a time.

    Recordings point at files under ``audio_dir`` that need not exist: enough for sharding,
    sampling and iterating a manifest, not for loading audio.
    """
    rng = random.Random(seed)
    for i in range(num_cuts):
        duration = round(rng.uniform(0.5, 20.0), 2)
        num_samples = int(duration * 16000)
        rec_id = f"rec{i:08d}"
        yield {
            "id": f"cut{i:08d}",
            "start": 0.0,
            "duration": duration,
            "channel": 0,
            "supervisions": [
                {
                    "id": f"sup{i:08d}",
                    "recording_id": rec_id,
                    "start": 0.0,
                    "duration": duration,
                    "channel": 0,
                    "text": f"utterance number {i}",
                    "language": LANGUAGES[i % len(LANGUAGES)],
                }
            ],
            "recording": {
                "id": rec_id,
                "sources": [
                    {"type": "file", "channels": [0], "source": f"{audio_dir}/{rec_id}.wav"}
                ],
                "sampling_rate": 16000,
                "num_samples": num_samples,
                "duration": num_samples / 16000,
                "channel_ids": [0],
            },
            "type": "MonoCut",
        }


def write_synthetic_manifest(path: str | os.PathLike, num_cuts: int, seed: int = 0) -> Path:
    """Stream ``num_cuts`` synthetic cuts into a ``.jsonl.gz`` CutSet (written atomically)."""
    path = Path(path)
    if not path.name.endswith(".jsonl.gz"):
        raise ConfigError(f"{path}: a lazily readable manifest must be .jsonl.gz")
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
        for cut in synthetic_cut_dicts(num_cuts, seed):
            f.write(json.dumps(cut, separators=(",", ":")) + "\n")
    return path


def count_lines(path: str | os.PathLike) -> int:
    """Number of entries of a ``.jsonl.gz`` manifest, read as a stream."""
    try:
        with gzip.open(path, "rb") as f:
            return sum(1 for _ in f)
    except READ_ERRORS as err:
        raise manifest_error(path, err) from err


def shard_lazily(
    path: str | os.PathLike, output_dir: str | os.PathLike, num_shards: int, prefix: str = "cuts"
) -> list[Path]:
    """Split a manifest into ``num_shards`` contiguous near-equal ``<prefix>.<j>.jsonl.gz`` parts.

    Two streaming passes over the lines (count, then copy; each line is one manifest entry, so
    nothing is parsed): memory does not grow with the manifest. Shard ``j`` (1-based) holds
    entries ``[total*(j-1)//N, total*j//N)``, as ``compute_features --shard j/N`` selects them;
    every shard is written atomically. Returns the shard paths in order.
    """
    if num_shards < 1:
        raise ConfigError(f"num_shards must be >= 1, got {num_shards}")
    total = count_lines(path)
    if total == 0:
        raise DataError(f"{path}: the manifest is empty")
    output_dir = Path(output_dir)
    shards = [output_dir / f"{prefix}.{j}.jsonl.gz" for j in range(1, num_shards + 1)]
    with gzip.open(path, "rb") as source:
        for j, shard in enumerate(shards, start=1):
            count = total * j // num_shards - total * (j - 1) // num_shards
            with atomic_path(shard) as tmp, gzip.open(tmp, "wb", compresslevel=1) as out:
                for _ in range(count):
                    out.write(next(source))
    return shards


def lazy_batch_sampler(
    cuts: CutSet | str | os.PathLike,
    max_duration: float,
    shuffle: bool = True,
    seed: int = 0,
    num_buckets: int = 10,
    max_cuts: int | None = None,
    buffer_size: int = 20000,
    world_size: int | None = None,
    rank: int | None = None,
) -> DynamicBucketingSampler:
    """Duration-bucketed batches of at most ``max_duration`` s, read lazily from a manifest.

    ``cuts`` is a path (opened with :func:`~speechkd.data.manifest_io.open_cuts_lazy`) or a
    lazy CutSet. Memory holds about ``buffer_size`` cuts whatever the manifest's size. Use as
    ``DataLoader(dataset, sampler=sampler, batch_size=None)``.
    """
    if max_duration <= 0:
        raise ConfigError(f"max_duration must be positive, got {max_duration}")
    if not isinstance(cuts, CutSet):
        cuts = open_cuts_lazy(cuts)
    return DynamicBucketingSampler(
        cuts,
        max_duration=max_duration,
        max_cuts=max_cuts,
        shuffle=shuffle,
        seed=seed,
        num_buckets=num_buckets,
        buffer_size=buffer_size,
        num_cuts_for_bins_estimate=min(buffer_size, 10000),
        world_size=world_size,
        rank=rank,
    )
