"""Peak memory of writing, sharding and iterating a large synthetic CutSet manifest.

    python -m speechkd.bin.manifest_scale_check --num-cuts 1000000 --num-shards 8 \\
        --work-dir /tmp/scale [--eager]

Each phase runs in a fresh Python process and reports its peak resident set size
(``resource.getrusage(...).ru_maxrss``) and its RSS after the imports, as a JSON line per
phase on stdout and a Markdown table at the end:

* ``write``: stream ``--num-cuts`` cuts into ``cuts.jsonl.gz``;
* ``shard``: split it lazily into ``--num-shards`` parts;
* ``iterate``: a ``DataLoader`` over ``lazy_batch_sampler`` (lhotse's DynamicBucketingSampler
  on a lazily opened CutSet) through every batch of every shard;
* ``iterate-eager`` (with ``--eager``): the same with ``DurationBatchSampler``, which loads the
  whole manifest into memory (for comparison; needs memory proportional to the manifest).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from speechkd.utils.cli import run_cli

PHASES = ("write", "shard", "iterate", "iterate-eager")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_batches(sampler) -> tuple[int, int]:
    from torch.utils.data import DataLoader

    class CountCuts:  # the map-style dataset a recipe's collator would be
        def __getitem__(self, cuts):
            return len(cuts)

    cuts = batches = 0
    for num in DataLoader(CountCuts(), sampler=sampler, batch_size=None):
        cuts += num
        batches += 1
    return cuts, batches


def run_phase(phase: str, work_dir: Path, num_cuts: int, num_shards: int, max_duration: float):
    """Run one phase in this process; a dict with its counts, seconds and memory."""
    from lhotse import CutSet

    from speechkd.data.lazy_manifests import (
        lazy_batch_sampler,
        shard_lazily,
        write_synthetic_manifest,
    )
    from speechkd.data.manifest_io import open_cuts_lazy, read_cuts
    from speechkd.whisper.data import DurationBatchSampler

    manifest = work_dir / "cuts.jsonl.gz"
    shard_dir = work_dir / "shards"
    baseline = peak_rss_mb()
    start = time.perf_counter()
    result: dict = {"phase": phase}
    if phase == "write":
        write_synthetic_manifest(manifest, num_cuts)
        result["cuts"] = num_cuts
    elif phase == "shard":
        shards = shard_lazily(manifest, shard_dir, num_shards)
        result["shards"] = len(shards)
    elif phase == "iterate":
        shards = sorted(shard_dir.glob("cuts.*.jsonl.gz"))
        cuts = (
            open_cuts_lazy(shards[0])
            if len(shards) == 1
            else CutSet.mux(*[open_cuts_lazy(p) for p in shards], seed=0)
        )
        result["cuts"], result["batches"] = _count_batches(lazy_batch_sampler(cuts, max_duration))
    elif phase == "iterate-eager":
        sampler = DurationBatchSampler(read_cuts(manifest), max_duration)
        result["cuts"], result["batches"] = _count_batches(sampler)
    else:
        raise ValueError(phase)
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["rss_after_imports_mb"] = round(baseline, 1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def run_all(
    work_dir: Path,
    num_cuts: int,
    num_shards: int,
    max_duration: float = 600.0,
    eager: bool = False,
) -> list[dict]:
    """Every phase in its own process (so each peak is its own); the results in order."""
    work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for phase in PHASES if eager else PHASES[:-1]:
        cmd = [sys.executable, "-m", "speechkd.bin.manifest_scale_check", "--phase", phase]
        cmd += ["--work-dir", str(work_dir), "--num-cuts", str(num_cuts)]
        cmd += ["--num-shards", str(num_shards), "--max-duration", str(max_duration)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def markdown_table(results: list[dict], num_cuts: int) -> str:
    lines = [
        f"| phase ({num_cuts:,} cuts) | seconds | RSS after imports (MiB) | peak RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['phase']} | {r['seconds']} | {r['rss_after_imports_mb']} | {r['peak_rss_mb']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--num-cuts", type=int, default=1_000_000)
    parser.add_argument("--num-shards", type=int, default=8)
    parser.add_argument("--max-duration", type=float, default=600.0, help="seconds per batch")
    parser.add_argument("--phase", choices=PHASES, default=None, help="run one phase only")
    parser.add_argument("--eager", action="store_true", help="also measure DurationBatchSampler")
    args = parser.parse_args(argv)
    if args.phase is not None:
        result = run_phase(
            args.phase, args.work_dir, args.num_cuts, args.num_shards, args.max_duration
        )
        print(json.dumps(result))
        return
    results = run_all(args.work_dir, args.num_cuts, args.num_shards, args.max_duration, args.eager)
    for r in results:
        print(json.dumps(r))
    print(markdown_table(results, args.num_cuts))


if __name__ == "__main__":
    run_cli(main)
