"""Validate recordings/supervisions(/cuts) manifests against the audio and transcripts.

Strict by default: any problem stops with an error naming the item, its file and the problem.

    python -m speechkd.bin.validate_data \\
        --recordings data/manifests/mini_asr_recordings_train.jsonl.gz \\
        --supervisions data/manifests/mini_asr_supervisions_train.jsonl.gz \\
        --sampling-rate 16000

``--lhotse-validate`` also runs lhotse's own validator (reading the audio) over every manifest of
a set, in this process; ``--lhotse-manifests F...`` runs only that, over any manifests (e.g. cuts
with features). With ``--skip-bad`` bad items (and what depends on them) are dropped, counted in
the log and listed in ``--bad-list``; the cleaned manifests go to ``--output-dir`` under the input
names.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet

from speechkd.data.manifest_io import read_cuts, read_manifest
from speechkd.data.validate import (
    DEFAULT_DURATION_TOLERANCE,
    check_text_file,
    save_manifests_together,
    validate_manifests,
    write_bad_list,
)
from speechkd.errors import ConfigError, DataError
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=Path, help="RecordingSet manifest")
    parser.add_argument("--supervisions", type=Path, help="SupervisionSet manifest")
    parser.add_argument(
        "--from-dir",
        type=Path,
        help="validate every <prefix>_{recordings,supervisions,cuts}_<split> set of this dir",
    )
    parser.add_argument("--pattern", default="*_recordings_*.jsonl.gz", help="glob for --from-dir")
    parser.add_argument("--cuts", type=Path, default=None, help="optional CutSet manifest")
    parser.add_argument(
        "--sampling-rate", type=int, default=None, help="expected sampling rate of every file (Hz)"
    )
    parser.add_argument(
        "--duration-tolerance",
        type=float,
        default=DEFAULT_DURATION_TOLERANCE,
        help="allowed difference between file and manifest durations (s)",
    )
    parser.add_argument(
        "--header-only",
        action="store_true",
        help="read only audio headers instead of decoding every file",
    )
    parser.add_argument(
        "--text",
        type=Path,
        nargs="*",
        default=[],
        help="text files (transcripts, LM text) that must be valid UTF-8",
    )
    parser.add_argument(
        "--lhotse-validate",
        action="store_true",
        help="also run lhotse.validate(read_data=True) over each manifest (strict mode only)",
    )
    parser.add_argument(
        "--lhotse-manifests",
        type=Path,
        nargs="+",
        default=None,
        help="only run lhotse.validate(read_data=True) over these manifests",
    )
    parser.add_argument("--skip-bad", action="store_true", help="drop bad items instead of failing")
    parser.add_argument(
        "--bad-list",
        type=Path,
        default=None,
        help="with --skip-bad: TSV of dropped items (default: OUTPUT_DIR/bad_list.tsv)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="with --skip-bad: cleaned manifests go here"
    )
    parser.add_argument("--log-file", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    if args.lhotse_manifests is not None:
        if args.recordings or args.supervisions or args.cuts or args.from_dir or args.skip_bad:
            raise ConfigError("--lhotse-manifests runs alone (no other manifests, no --skip-bad)")
        for path in args.lhotse_manifests:
            lhotse_validate(path, read_manifest(path))
            logger.info("%s: lhotse validation passed", path)
        return
    if args.skip_bad and args.output_dir is None:
        raise ConfigError("--skip-bad needs --output-dir for the cleaned manifests")
    if not args.skip_bad and (args.bad_list is not None or args.output_dir is not None):
        raise ConfigError("--bad-list and --output-dir are only used with --skip-bad")
    if args.skip_bad and args.lhotse_validate:
        raise ConfigError("--lhotse-validate checks the manifests as they are: not with --skip-bad")
    if args.from_dir is not None:
        if args.recordings or args.supervisions or args.cuts or args.skip_bad:
            raise ConfigError("--from-dir replaces --recordings/--supervisions/--cuts/--skip-bad")
        sets = manifest_sets(args.from_dir, args.pattern)
    elif args.recordings is None or args.supervisions is None:
        raise ConfigError("--recordings and --supervisions are required unless --from-dir")
    else:
        sets = [(args.recordings, args.supervisions, args.cuts)]
    for text_file in args.text:
        lines = check_text_file(text_file)
        logger.info("%s: %d lines of valid UTF-8", text_file, len(lines))
    for recordings, supervisions, cuts in sets:
        validate_set(args, recordings, supervisions, cuts)


def manifest_sets(manifest_dir: Path, pattern: str) -> list[tuple[Path, Path, Path | None]]:
    """(recordings, supervisions, cuts or None) of every set matching ``pattern`` in a dir."""
    sets = []
    for rec in sorted(manifest_dir.glob(pattern)):
        if "_recordings_" not in rec.name:
            raise DataError(f"{rec}: expected a name <prefix>_recordings_<split>.jsonl.gz")
        sup = rec.with_name(rec.name.replace("_recordings_", "_supervisions_", 1))
        cuts = rec.with_name(rec.name.replace("_recordings_", "_cuts_", 1))
        if not sup.is_file():
            raise DataError(f"{rec}: its supervisions {sup} are missing")
        sets.append((rec, sup, cuts if cuts.is_file() else None))
    if not sets:
        raise DataError(f"{manifest_dir}: no manifest matches {pattern!r}")
    return sets


def validate_set(
    args: argparse.Namespace, rec_path: Path, sup_path: Path, cuts_path: Path | None
) -> None:
    """Validate one set of manifests (and write the cleaned set with --skip-bad)."""
    logger.info("validating %s", rec_path)
    inputs = [p for p in (rec_path, sup_path, cuts_path) if p is not None]
    outputs_paths = [args.output_dir / p.name for p in inputs] if args.skip_bad else []
    for src, dst in zip(inputs, outputs_paths, strict=False):
        if src.resolve() == dst.resolve():
            raise ConfigError(f"--output-dir {args.output_dir} would overwrite the input {src}")

    recordings = read_manifest(rec_path, RecordingSet)
    supervisions = read_manifest(sup_path, SupervisionSet)
    cuts = read_cuts(cuts_path) if cuts_path is not None else None
    totals = {"recording": len(recordings), "supervision": len(supervisions)}
    if cuts is not None:
        totals["cut"] = len(cuts)
    result = validate_manifests(
        recordings,
        supervisions,
        cuts,
        sampling_rate=args.sampling_rate,
        duration_tolerance=args.duration_tolerance,
        decode=not args.header_only,
        skip_bad=args.skip_bad,
    )
    if not args.skip_bad:
        if args.lhotse_validate:
            for path, manifest in zip(inputs, (recordings, supervisions, cuts), strict=False):
                lhotse_validate(path, manifest)
        logger.info("all good: %s", ", ".join(f"{n} {kind}s" for kind, n in totals.items()))
        return

    kept = {"recording": len(result.recordings), "supervision": len(result.supervisions)}
    if result.cuts is not None:
        kept["cut"] = len(result.cuts)
    for kind, total in totals.items():
        logger.info("%ss: %d kept, %d dropped", kind, kept[kind], total - kept[kind])
    for problem in result.problems:
        logger.warning("dropped %s", problem)
    write_bad_list(result.problems, args.bad_list or args.output_dir / "bad_list.tsv")
    outputs = [(result.recordings, outputs_paths[0]), (result.supervisions, outputs_paths[1])]
    if cuts is not None:
        outputs.append((result.cuts, outputs_paths[2]))
    save_manifests_together(outputs)
    logger.info("wrote cleaned manifests to %s", args.output_dir)


def lhotse_validate(path: Path, manifest: RecordingSet | SupervisionSet | CutSet) -> None:
    """lhotse's validator over ``manifest`` with its audio read; DataError naming ``path``."""
    from lhotse.qa import validate

    try:
        validate(manifest, read_data=True)
    except Exception as err:  # lhotse's assertions and audio readers' errors alike
        raise DataError(f"{path}: lhotse validation failed: {err}") from None


if __name__ == "__main__":
    run_cli(main)
