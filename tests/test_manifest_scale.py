"""Large manifests: streaming writing, lazy sharding and lazy batch sampling in bounded memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from lhotse import CutSet

from speechkd.bin import compute_features, manifest_scale_check
from speechkd.data.lazy_manifests import (
    count_lines,
    lazy_batch_sampler,
    shard_lazily,
    write_synthetic_manifest,
)
from speechkd.errors import ConfigError, DataError


def test_shards_match_compute_features_slices(tmp_path: Path) -> None:
    manifest = write_synthetic_manifest(tmp_path / "cuts.jsonl.gz", 11)
    shards = shard_lazily(manifest, tmp_path / "shards", 3)
    assert [p.name for p in shards] == ["cuts.1.jsonl.gz", "cuts.2.jsonl.gz", "cuts.3.jsonl.gz"]
    eager = CutSet.from_file(manifest).to_eager()
    for j, shard in enumerate(shards, start=1):
        expected = compute_features.select_shard(eager, j, 3)
        assert list(CutSet.from_file(shard).ids) == list(expected.ids)
    assert sum(count_lines(p) for p in shards) == 11
    with pytest.raises(ConfigError, match="num_shards"):
        shard_lazily(manifest, tmp_path / "s", 0)
    with pytest.raises(ConfigError, match=r"\.jsonl\.gz"):
        write_synthetic_manifest(tmp_path / "cuts.jsonl", 1)


def test_lazy_sampler_yields_every_cut_once(tmp_path: Path) -> None:
    manifest = write_synthetic_manifest(tmp_path / "cuts.jsonl.gz", 500, seed=3)
    sampler = lazy_batch_sampler(manifest, max_duration=60.0, seed=1, buffer_size=200)
    assert all(cuts.is_lazy for cuts in sampler.cuts)  # read as a stream, not loaded
    ids = []
    for batch in sampler:
        assert sum(c.duration for c in batch) <= 60.0 or len(batch) == 1
        ids.extend(batch.ids)
    assert sorted(ids) == sorted(CutSet.from_file(manifest).ids)
    # same seed, same order; another seed, another order
    again = [c.id for b in lazy_batch_sampler(manifest, 60.0, seed=1, buffer_size=200) for c in b]
    other = [c.id for b in lazy_batch_sampler(manifest, 60.0, seed=2, buffer_size=200) for c in b]
    assert again == ids and other != ids
    with pytest.raises(DataError, match="missing.jsonl.gz"):
        lazy_batch_sampler(tmp_path / "missing.jsonl.gz", 60.0)


def test_100k_cut_manifest_in_bounded_memory(tmp_path: Path) -> None:
    """Each phase in a fresh process; its peak RSS barely moves above the imports' RSS.

    An eager CutSet of 100,000 cuts takes ~180 MiB more; the lazy sampler's buffers ~40 MiB,
    the same for 1,000,000 cuts (see ``manifest_scale_check``).
    """
    num_cuts = 100_000
    results = {
        r["phase"]: r for r in manifest_scale_check.run_all(tmp_path, num_cuts, num_shards=4)
    }
    assert results["write"]["cuts"] == num_cuts and results["shard"]["shards"] == 4
    assert results["iterate"]["cuts"] == num_cuts and results["iterate"]["batches"] > 100
    for phase, limit in (("write", 50), ("shard", 50), ("iterate", 150)):
        r = results[phase]
        assert r["peak_rss_mb"] - r["rss_after_imports_mb"] < limit, r
        assert r["peak_rss_mb"] < 1500, r
    table = manifest_scale_check.markdown_table(list(results.values()), num_cuts)
    assert "| iterate |" in table and "100,000 cuts" in table
