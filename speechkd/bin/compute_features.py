"""Compute fbank or Whisper log-mel features of a CutSet into lilcom storage.

    # whole split at once
    python -m speechkd.bin.compute_features --cuts data/manifests/mini_asr_cuts_train.jsonl.gz \\
        --output-dir data/fbank --prefix mini_asr --split train --feature-type fbank
    # as a job array: shard J of N, then merge (in the original cut order)
    $train_cmd JOB=1:4 log/fbank.JOB.log python -m speechkd.bin.compute_features \\
        --cuts ... --output-dir data/fbank --prefix mini_asr --split train --shard JOB/4
    python -m speechkd.bin.compute_features --output-dir data/fbank --prefix mini_asr \\
        --split train --merge 4
    # every <prefix>_cuts_<split>.jsonl.gz of a manifest directory in one process per job
    $train_cmd JOB=1:4 log/fbank.JOB.log python -m speechkd.bin.compute_features \\
        --from-dir data/manifests --pattern 'mini_*_cuts_*.jsonl.gz' --output-dir data/fbank \\
        --shard JOB/4
    python -m speechkd.bin.compute_features --from-dir data/manifests \\
        --pattern 'mini_*_cuts_*.jsonl.gz' --output-dir data/fbank --merge 4

Outputs: ``<output-dir>/<prefix>_cuts_<split>[.J].jsonl.gz`` and the feature archive
``<output-dir>/<prefix>_feats_<split>[.J].lca``. Shard J (1-based) holds the J-th of N
contiguous, near-equal slices of the input cuts, so merging shards 1..N restores the input
order and gives the same manifest and feature values as a single run. An existing output
manifest (for a shard: also the merged one) is removed before the archive it points to is
rewritten; the archive is written under a ``.tmp-`` name and renamed when complete, and the
new manifest is written atomically last: a killed run leaves only ``.tmp-*`` files, never a
manifest or an archive that a rerun would take for finished ones.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import CutSet, FeatureExtractor

from speechkd.data.features import (
    WHISPER_SAMPLING_RATE,
    KaldiNativeFbank,
    KaldiNativeFbankConfig,
    WhisperLogMel,
    WhisperLogMelConfig,
    check_sampling_rates,
    compute_and_store,
)
from speechkd.data.manifest_io import read_cuts
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import save_manifest
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.utils.shards import parse_shard

logger = logging.getLogger(__name__)

FEATURE_TYPES = ("fbank", "whisper")


def select_shard(cuts: CutSet, job: int, num_shards: int) -> CutSet:
    """The ``job``-th (1-based) of ``num_shards`` contiguous near-equal slices of ``cuts``."""
    cut_list = list(cuts)
    start = len(cut_list) * (job - 1) // num_shards
    end = len(cut_list) * job // num_shards
    return CutSet.from_cuts(cut_list[start:end])


def cuts_path(output_dir: Path, prefix: str, split: str, job: int | None = None) -> Path:
    """``<output_dir>/<prefix>_cuts_<split>[.J].jsonl.gz``."""
    shard = f".{job}" if job is not None else ""
    return output_dir / f"{prefix}_cuts_{split}{shard}.jsonl.gz"


def feats_path(output_dir: Path, prefix: str, split: str, job: int | None = None) -> Path:
    """Storage path of the archive (the writer appends ``.lca``)."""
    shard = f".{job}" if job is not None else ""
    return output_dir / f"{prefix}_feats_{split}{shard}"


def make_extractor(feature_type: str, num_mel_bins: int, sampling_rate: int) -> FeatureExtractor:
    """The extractor for ``--feature-type``: Kaldi fbank or Whisper log-mel."""
    if feature_type == "fbank":
        return KaldiNativeFbank(
            KaldiNativeFbankConfig(num_mel_bins=num_mel_bins, sampling_rate=sampling_rate)
        )
    if feature_type == "whisper":
        if sampling_rate != WHISPER_SAMPLING_RATE:
            raise ConfigError(f"Whisper features need --sampling-rate 16000, got {sampling_rate}")
        return WhisperLogMel(WhisperLogMelConfig(num_mel_bins=num_mel_bins))
    raise ConfigError(f"--feature-type must be one of {FEATURE_TYPES}, got {feature_type!r}")


def compute(
    cuts_file: Path,
    output_dir: Path,
    prefix: str,
    split: str,
    extractor: FeatureExtractor,
    shard: tuple[int, int] | None = None,
    sampling_rate: int = 16000,
) -> Path:
    """Compute features for all cuts or one shard; returns the written manifest path."""
    cuts = read_cuts(cuts_file)
    job = None
    if shard is not None:
        job, num_shards = shard
        cuts = select_shard(cuts, job, num_shards)
        logger.info("shard %d/%d: %d cuts", job, num_shards, len(cuts))
    check_sampling_rates(cuts, sampling_rate)
    manifest = cuts_path(output_dir, prefix, split, job)
    # a merged manifest points into the shard archives too
    stale = [manifest] if job is None else [manifest, cuts_path(output_dir, prefix, split)]
    for path in stale:
        if path.exists():
            logger.info("removing %s: the features it points to are being rewritten", path)
            path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    with_feats, archive = compute_and_store(
        cuts, extractor, feats_path(output_dir, prefix, split, job)
    )
    save_manifest(with_feats, manifest)
    logger.info("wrote %d cuts to %s (features in %s)", len(with_feats), manifest, archive)
    return manifest


def merge(output_dir: Path, prefix: str, split: str, num_shards: int) -> Path:
    """Concatenate shard manifests 1..N (input order) into the split's manifest."""
    shard_files = [cuts_path(output_dir, prefix, split, j) for j in range(1, num_shards + 1)]
    missing = [str(p) for p in shard_files if not p.is_file()]
    if missing:
        raise DataError(f"cannot merge {num_shards} shards: missing {', '.join(missing)}")
    cuts = []
    for path in shard_files:
        cuts.extend(read_cuts(path))
    ids = [c.id for c in cuts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(
            f"shards {shard_files[0]}.. share cut id {dup}: were they made from different inputs?"
        )
    merged = cuts_path(output_dir, prefix, split)
    save_manifest(CutSet.from_cuts(cuts), merged)
    logger.info("merged %d shards (%d cuts) into %s", num_shards, len(cuts), merged)
    return merged


def inputs_from_dir(manifest_dir: Path, pattern: str) -> list[tuple[Path, str, str]]:
    """(cuts file, prefix, split) of each ``<prefix>_cuts_<split>.jsonl.gz`` matching a glob."""
    found = []
    for path in sorted(manifest_dir.glob(pattern)):
        name = path.name.removesuffix(".jsonl.gz")
        prefix, sep, split = name.partition("_cuts_")
        if not sep or not prefix or not split:
            raise DataError(f"{path}: expected a name <prefix>_cuts_<split>.jsonl.gz")
        found.append((path, prefix, split))
    if not found:
        raise DataError(f"{manifest_dir}: no manifest matches {pattern!r}")
    return found


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cuts", type=Path, help="input CutSet (not needed with --merge)")
    parser.add_argument("--output-dir", type=Path, required=True, help="e.g. data/fbank")
    parser.add_argument("--prefix", help="corpus name, e.g. mini_asr")
    parser.add_argument("--split", help="e.g. train, dev, test")
    parser.add_argument("--from-dir", type=Path, help="process every matching CutSet of this dir")
    parser.add_argument("--pattern", default="*_cuts_*.jsonl.gz", help="glob for --from-dir")
    parser.add_argument("--feature-type", choices=FEATURE_TYPES, default="fbank")
    parser.add_argument("--num-mel-bins", type=int, default=80, help="80 (fbank, whisper) or 128")
    parser.add_argument("--sampling-rate", type=int, default=16000, help="expected audio rate")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--shard", default=None, help="J/N: process only the J-th of N shards")
    group.add_argument("--merge", type=int, default=None, metavar="N", help="merge N shards")
    parser.add_argument("--log-file", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    if args.from_dir is not None:
        if args.cuts is not None or args.prefix is not None or args.split is not None:
            raise ConfigError("--from-dir replaces --cuts, --prefix and --split")
        inputs = inputs_from_dir(args.from_dir, args.pattern)
    else:
        if args.prefix is None or args.split is None:
            raise ConfigError("--prefix and --split are required unless --from-dir is given")
        if args.cuts is None and args.merge is None:
            raise ConfigError("--cuts is required unless --merge or --from-dir is given")
        inputs = [(args.cuts, args.prefix, args.split)]
    if args.merge is not None:
        if args.merge < 1:
            raise ConfigError(f"--merge needs a positive number of shards, got {args.merge}")
        for _, prefix, split in inputs:
            merge(args.output_dir, prefix, split, args.merge)
        return
    shard = parse_shard(args.shard) if args.shard is not None else None
    extractor = make_extractor(args.feature_type, args.num_mel_bins, args.sampling_rate)
    for cuts_file, prefix, split in inputs:
        compute(cuts_file, args.output_dir, prefix, split, extractor, shard, args.sampling_rate)


if __name__ == "__main__":
    run_cli(main)
