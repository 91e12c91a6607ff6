"""Joint speech/text ST KD report section: what the run shows (the paper's claims with computed
verdicts), structure and initialisation without KD (the paper's Table 3), KD loss terms (Table 4),
training schemes (Table 5) and parameters (Table 1), with BLEU of the speech and of the text
input.

Systems are given in table order as ``NAME=SYSTEM_DIR``; a system dir holds the recipe's
``system.json`` (and ``model.json``) and ``decode_<set>_{sph,txt}/scores-<set>.json``.
``--params`` is the JSON of ``python -m speechkd.bin.st_param_table --json``, ``--best`` the
recipe's ``best_kd.json``. The Markdown section goes to ``--out``, every number of its tables to
RESULTS.json beside it; pass the section to ``speechkd.bin.write_results --section`` to include
it in RESULTS.md.

Example::

    python -m speechkd.bin.st_kd_report --system teacher=exp/st_kd/teacher \\
        --system c_student_6_6_6_pretrained=exp/st_kd/c_student_6_6_6_pretrained \\
        --system kd_res=exp/st_kd/kd_res --system mstar_kd_res=exp/st_kd/mstar_kd_res \\
        --sets tst-COMMON --params exp/st_kd/params.json --best exp/st_kd/best_kd.json \\
        --out exp/st_kd/report.md
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechkd.eval.report_inputs import parse_system_specs
from speechkd.eval.st_kd_data import SCHEME_DIR
from speechkd.eval.st_kd_report import write_report
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechkd.bin.st_kd_report",
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
    parser.add_argument("--params", default=None, help="JSON of speechkd.bin.st_param_table")
    parser.add_argument("--best", default=None, help="best_kd.json of the recipe (M* base)")
    parser.add_argument(
        "--scheme-dir",
        type=Path,
        default=SCHEME_DIR,
        help="scheme files of the KD students (their KD terms label the rows)",
    )
    parser.add_argument(
        "--results-meta",
        action="store_true",
        help="also write results_meta.json in every system dir (RESULTS.md's experiments: the "
        "paper's label, parameters, training commands)",
    )
    parser.add_argument("--out", required=True, help="Markdown section to write")
    parser.add_argument("--title", default="Joint speech/text ST KD", help="heading")
    parser.add_argument(
        "--language", default="de", help="target language of the BLEU rows of RESULTS.json"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    out = write_report(
        parse_system_specs(args.system),
        args.sets,
        args.out,
        params=args.params,
        best=args.best,
        title=args.title,
        scheme_dir=args.scheme_dir,
        results_meta=args.results_meta,
        language=args.language,
    )
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
