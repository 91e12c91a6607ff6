"""Write RESULTS.md from the scores-*.json files under experiment directories: what the run shows
(the claims of the report sections) and the sections' tables; RESULTS-details.md beside it holds
the environment, the commands, the per-method tables and the sclite-style tables per set.

Example::

    python -m speechkd.bin.write_results --exp-dir exp --out RESULTS.md \\
        --title "Mini corpus results" --commands-file exp/commands.log \\
        --section exp/distilwhisper/report.md
"""

from __future__ import annotations

import argparse
import logging

from speechkd.eval.results import write_results
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--exp-dir", action="append", required=True, help="experiment root (repeatable)"
    )
    parser.add_argument(
        "--out", required=True, help="Markdown file to write (RESULTS.md; its details beside it)"
    )
    parser.add_argument("--title", default="Results")
    parser.add_argument(
        "--commands-file",
        action="append",
        default=[],
        help="a log of the commands that produced the results (repeatable)",
    )
    parser.add_argument(
        "--section",
        action="append",
        default=[],
        help="a Markdown file inserted after the per-method tables (repeatable, in order); "
        "the RESULTS.json beside it goes into RESULTS.json beside --out",
    )
    parser.add_argument(
        "--repo-dir", default=".", help="git checkout whose revision is reported (default: .)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    out = write_results(
        args.exp_dir,
        args.out,
        title=args.title,
        commands_files=args.commands_file,
        repo_dir=args.repo_dir,
        section_files=args.section,
    )
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
