"""DistillW2V2 report section: model sizes and RTF (the paper's Table 1), two-step against
single-step distillation (Table 2) and the first-step objectives M1-M4 (Table 3).

Systems are given in table order as ``NAME=SYSTEM_DIR``; a system dir holds the recipe's
``system.json`` and the decode dirs of ``speechkd.bin.w2v2_decode`` (``decode_<set>/``,
``decode_<set>_lm/``, ``decode_<set>_streaming/``). ``--rtf`` is the JSON of
``python -m speechkd.bin.rtf --json``. The Markdown section goes to ``--out`` and every number
of its tables to RESULTS.json beside it; pass the section to ``speechkd.bin.write_results
--section`` to include it in RESULTS.md.

Example::

    python -m speechkd.bin.distill_w2v2_report \\
        --system T=exp/distill_w2v2/teacher --system M1=exp/distill_w2v2/sn_M1 \\
        --system M4=exp/distill_w2v2/sn_M4 --system SS=exp/distill_w2v2/ss \\
        --system single=exp/distill_w2v2/single_step \\
        --sets test test_ood --rtf exp/distill_w2v2/rtf.json --out exp/distill_w2v2/report.md
"""

from __future__ import annotations

import argparse
import logging

from speechkd.eval.distill_w2v2_report import write_report
from speechkd.eval.report_inputs import parse_system_specs
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechkd.bin.distill_w2v2_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--system",
        action="append",
        required=True,
        metavar="NAME=SYSTEM_DIR",
        help="a system, in table order (repeatable)",
    )
    parser.add_argument("--sets", nargs="+", required=True, metavar="SET", help="test sets")
    parser.add_argument("--rtf", default=None, help="JSON of speechkd.bin.rtf --json (Table 1)")
    parser.add_argument("--out", required=True, help="Markdown section to write")
    parser.add_argument("--title", default="DistillW2V2", help="heading of the section")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    out = write_report(parse_system_specs(args.system), args.sets, args.out, args.rtf, args.title)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
