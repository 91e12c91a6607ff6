"""S2-LoRA report section: error rate of every method on every test set with its trainable
parameters (the paper's Table 2), the change against zero-shot, the rank distribution (Fig. 3)
and the trainable-parameter table of ``peft_param_table``.

Systems are given in table order as ``NAME=DECODE_DIR`` or ``NAME=DECODE_DIR,PARAMS_JSON``;
every decode dir holds ``scores-<set>.json`` for every set. The Markdown section goes to
``--out`` and every number of its tables to RESULTS.json beside it; pass the section to
``speechkd.bin.write_results --section`` to include it in RESULTS.md.

Example::

    python -m speechkd.bin.s2lora_report \\
        --system Zero-shot=exp/s2lora_1k/zeroshot/decode \\
        --system "S2-LoRA=exp/s2lora_1k/s2lora/decode,exp/s2lora_1k/s2lora/params.json" \\
        --system "AdaLoRA=exp/s2lora_1k/adalora/decode,exp/s2lora_1k/adalora/params.json" \\
        --baseline Zero-shot --in-domain zh_c1 --out-of-domain zh_c2 zh_a1 zh_hk en \\
        --ranks-plot exp/s2lora_1k/ranks.png --ranks-json exp/s2lora_1k/ranks.json \\
        --param-table exp/s2lora_1k/param_table.md --out exp/s2lora_1k/report.md
"""

from __future__ import annotations

import argparse
import logging

from speechkd.eval.report_inputs import parse_named_list
from speechkd.eval.s2lora_report import write_report
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
    parser.add_argument("--in-domain", nargs="*", default=[], metavar="SET")
    parser.add_argument("--out-of-domain", nargs="*", default=[], metavar="SET")
    parser.add_argument(
        "--baseline", default=None, help="system the others are compared with (zero-shot)"
    )
    parser.add_argument("--ranks-plot", default=None, help="rank heatmap PNG to link")
    parser.add_argument("--ranks-json", default=None, help="ranks JSON of pruning_plots ranks")
    parser.add_argument("--param-table", default=None, help="Markdown of peft_param_table")
    parser.add_argument("--title", default="S2-LoRA", help="heading of the section")
    parser.add_argument("--out", required=True, help="Markdown section to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    systems = parse_named_list(args.system, "--system", 2, "NAME=DECODE_DIR[,PARAMS_JSON]")
    out = write_report(
        {name: values[0] for name, values in systems.items()},
        args.in_domain,
        args.out_of_domain,
        args.out,
        params={name: values[1] for name, values in systems.items() if len(values) > 1},
        baseline=args.baseline,
        ranks_plot=args.ranks_plot,
        ranks_json=args.ranks_json,
        param_table=args.param_table,
        title=args.title,
    )
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
