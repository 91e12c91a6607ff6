"""DistilWhisper report section: what the run shows (the paper's claims with computed verdicts),
the error-rate table (paper's Table 1), gap closed, parameters, and the gate activation plot
(Fig. 2), from the decode directories of the systems.

Systems are given in table order as ``NAME=DECODE_DIR`` or ``NAME=DECODE_DIR,PARAMS_JSON``;
every decode dir holds ``scores-<set>.json`` for every set. CLSR systems for the gate plot are
given as ``LABEL=DECODE_DIR`` (holding ``gate-usage-<set>.json``). The Markdown section goes to
``--out`` and every number of its tables to RESULTS.json beside it (systems under stable names:
``--large`` is ``teacher``, ``--small`` ``zero_shot``); pass the section to
``speechkd.bin.write_results --section`` to include it in RESULTS.md.

Example::

    python -m speechkd.bin.distilwhisper_report \\
        --system whisper-large-v2=exp/zero_shot/large/decode \\
        --system whisper-small=exp/zero_shot/small/decode \\
        --system "DistilWhisper=exp/distilwhisper/js/decode,exp/distilwhisper/js/params.json" \\
        --small whisper-small --large whisper-large-v2 \\
        --in-domain test --out-of-domain test_ood \\
        --gate-system "DistilWhisper 10k=exp/distilwhisper/js/decode" \\
        --out exp/distilwhisper/report.md --plot exp/distilwhisper/gates.png
"""

from __future__ import annotations

import argparse
import logging

from speechkd.errors import ConfigError
from speechkd.eval.distilwhisper_data import GATE_PARTS, load_kd_cost
from speechkd.eval.distilwhisper_report import write_report
from speechkd.eval.report_inputs import parse_named_list
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--system",
        action="append",
        required=True,
        metavar="NAME=DECODE_DIR[,PARAMS_JSON]",
        help="a system, in table order (repeatable)",
    )
    parser.add_argument("--small", required=True, help="system that the gap starts from (0%%)")
    parser.add_argument("--large", required=True, help="system that closes the gap (100%%)")
    parser.add_argument("--in-domain", nargs="*", default=[], metavar="SET")
    parser.add_argument("--out-of-domain", nargs="*", default=[], metavar="SET")
    parser.add_argument(
        "--gate-system",
        action="append",
        default=[],
        metavar="LABEL=DECODE_DIR",
        help="a CLSR system for the gate activation plot (repeatable), e.g. 'DistilWhisper 3k=…'",
    )
    parser.add_argument(
        "--gate-part",
        choices=GATE_PARTS,
        default="all",
        help="tokens whose routing is shown: encoder, decoder or all (default)",
    )
    parser.add_argument("--online-summary", help="train-summary.json of an online-teacher KD run")
    parser.add_argument("--cached-summary", help="train-summary.json of the cached-teacher run")
    parser.add_argument("--cache-index", help="index.json of the teacher cache (build time)")
    parser.add_argument(
        "--rescore",
        nargs="*",
        default=[],
        choices=("wer", "cer"),
        help="also score the same hypotheses with these metrics (tables, gap and claims each)",
    )
    parser.add_argument("--out", required=True, help="Markdown section to write")
    parser.add_argument("--plot", help="PNG of the gate activation (needed with --gate-system)")
    parser.add_argument("--title", default="DistilWhisper", help="heading of the section")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    systems = parse_named_list(args.system, "--system", 2, "NAME=DECODE_DIR[,PARAMS_JSON]")
    gates = parse_named_list(args.gate_system, "--gate-system", 1, "LABEL=DECODE_DIR")
    kd_cost = None
    if args.online_summary or args.cached_summary:
        if not (args.online_summary and args.cached_summary):
            raise ConfigError("--online-summary and --cached-summary go together")
        kd_cost = load_kd_cost(args.online_summary, args.cached_summary, args.cache_index)
    out = write_report(
        {name: values[0] for name, values in systems.items()},
        args.small,
        args.large,
        args.in_domain,
        args.out_of_domain,
        args.out,
        params={name: values[1] for name, values in systems.items() if len(values) > 1},
        gate_systems={label: values[0] for label, values in gates.items()},
        plot=args.plot,
        title=args.title,
        gate_part=args.gate_part,
        kd_cost=kd_cost,
        rescore=args.rescore,
    )
    logger.info("wrote %s%s", out, f" and {args.plot}" if gates else "")
    return 0


if __name__ == "__main__":
    run_cli(main)
