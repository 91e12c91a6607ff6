"""Keep at most N cuts per language: the most up-voted ones, or a seeded random draw.

    # DistilWhisper's Common Voice train set: the 10k most up-voted clips of each language
    python -m speechkd.bin.subsample_cuts \\
        --cuts data/manifests/commonvoice_cuts_{ca,th}_train.jsonl.gz \\
        --out data/subsets/cv13_10k/commonvoice_cuts_train.jsonl.gz \\
        --per-language 10k --by up_votes --resample 16000
    # no votes: 500 random cuts per language (--per-language all: merge whole sets)
    python -m speechkd.bin.subsample_cuts --cuts IN --out OUT --per-language 500 --by random

The inputs are concatenated (a cut id listed twice is an error). ``--by FIELD`` ranks by
``cut.custom[FIELD]`` or ``supervision.custom[FIELD]`` (most first; ties: fewer down-votes,
then recording id); ``--by random`` draws with ``--seed``. ``--disjoint-from`` makes a recording
shared with another manifest an error (dev against train). ``--resample`` records lhotse's
resampling in the output manifest. The output is written atomically; the per-language counts
are logged.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet

from speechkd.data.manifest_io import read_cuts
from speechkd.data.subsample import (
    MISSING_VOTES,
    check_disjoint,
    language_counts,
    parse_count,
    select_by_votes,
    select_random,
)
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import save_manifest
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechkd.bin.subsample_cuts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cuts", type=Path, nargs="+", required=True, help="input CutSet(s)")
    parser.add_argument("--out", type=Path, required=True, help="output CutSet (.jsonl.gz)")
    parser.add_argument(
        "--per-language", required=True, help="cuts kept per language: 10000, 10k, or all"
    )
    parser.add_argument(
        "--by", default="up_votes", help="custom field ranking the cuts (most first), or random"
    )
    parser.add_argument(
        "--tie-field", default="down_votes", help="custom field breaking ties (fewest first); none"
    )
    parser.add_argument("--languages", nargs="+", default=None, help="keep only these languages")
    parser.add_argument("--seed", type=int, default=None, help="random draw / tie-break seed")
    parser.add_argument(
        "--missing-votes",
        choices=MISSING_VOTES,
        default="error",
        help="a cut without the --by field: error, or count it as zero votes",
    )
    parser.add_argument(
        "--disjoint-from",
        type=Path,
        nargs="+",
        default=[],
        help="CutSets the output must share no recording with",
    )
    parser.add_argument("--resample", type=int, default=None, help="resample cuts to this rate")
    parser.add_argument(
        "--path-prefix",
        type=Path,
        default=None,
        help="directory that relative audio and feature paths are relative to: written "
        "absolute, so that the output works from any recipe directory",
    )
    parser.add_argument("--log-file", type=Path, default=None)
    return parser


def load_cuts(paths: Sequence[Path]) -> CutSet:
    """The CutSets in ``paths`` concatenated (DataError on a missing file or a repeated id)."""
    cuts, seen = [], {}
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such CutSet")
        for cut in read_cuts(path):
            if cut.id in seen:
                raise DataError(f"{path}: cut {cut.id} already read from {seen[cut.id]}")
            seen[cut.id] = path
            cuts.append(cut)
    return CutSet.from_cuts(cuts)


def _format_counts(counts: dict[str, int]) -> str:
    return " ".join(f"{lang}={n}" for lang, n in counts.items()) or "none"


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    per_language = parse_count(args.per_language)
    cuts = load_cuts(args.cuts)
    before = language_counts(cuts)
    logger.info(
        "read %d cuts from %d file(s): %s", len(cuts), len(args.cuts), _format_counts(before)
    )
    if args.by == "random":
        selected = select_random(
            cuts, per_language, seed=0 if args.seed is None else args.seed, languages=args.languages
        )
    else:
        tie_field = None if args.tie_field.lower() == "none" else args.tie_field
        selected = select_by_votes(
            cuts,
            per_language,
            field=args.by,
            seed=args.seed,
            tie_field=tie_field,
            missing_votes=args.missing_votes,
            languages=args.languages,
        )
    if args.disjoint_from:
        check_disjoint(
            selected,
            {str(p): load_cuts([p]) for p in args.disjoint_from},
            what=f"the selection for {args.out}",
        )
    if args.path_prefix is not None:
        prefix = str(args.path_prefix.resolve())
        # absolute paths stay as they are (pathlib: prefix / absolute == absolute)
        selected = (
            selected.with_recording_path_prefix(prefix).with_features_path_prefix(prefix).to_eager()
        )
    if args.resample is not None:
        if args.resample <= 0:
            raise ConfigError(f"--resample needs a positive rate, got {args.resample}")
        selected = selected.resample(args.resample).to_eager()
    save_manifest(selected, args.out)
    after = language_counts(selected)
    kept = " ".join(f"{lang}={after[lang]}/{before[lang]}" for lang in after) or "none"
    logger.info(
        "wrote %d cuts to %s (kept/available per language: %s)", len(selected), args.out, kept
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
