"""PEPSI report section: what the run shows (the paper's claims with computed verdicts), error
rates with trainable and alive parameters per language (the paper's Table 3), the transfer
experiment (Table 4), the language-specific subnetworks (Table 1), the alive ratio per layer
group (Fig. 3b) and other figures (Fig. 4), from the files the recipe stages wrote (see
:mod:`speechkd.eval.pepsi_report`).

Systems are given in table order as ``LANG:NAME=DECODE_DIR[,PARAMS]``: the decode dir holds
``scores-<set>_<LANG>.json`` for every ``--set``; PARAMS is a ``params.json`` or an IMP ticket's
``result.json`` (none: the foundation model, zero-shot). Links (PNG) are written as given,
relative to the directory of ``--out``; pass the section to ``speechkd.bin.write_results
--section`` to include it in RESULTS.md. Every number of the tables also goes to RESULTS.json
beside ``--out``.

Example::

    python -m speechkd.bin.pepsi_report --set test --out exp/pepsi/report.md \\
        --system "ko:Whisper zero-shot=exp/pepsi/zeroshot/decode" \\
        --system "ko:Whisper LTH=exp/pepsi/ko/imp/milestones/prune-50/decode,\\
exp/pepsi/ko/imp/milestones/prune-50/result.json" \\
        --system "ko:PEPSI=exp/pepsi/ko/pepsi/decode,exp/pepsi/ko/pepsi/params.json" \\
        --subnet "ko:ko:19=exp/pepsi/ko/imp/milestones/prune-19/decode" \\
        --subnet "ko:ml:19=exp/pepsi/ml/imp/milestones/prune-19/decode" \\
        --alive "ko=exp/pepsi/ko/imp,fig3b_alive_ko.png" \\
        --figure "Fig. 4: CER versus prune %=fig4_prune_ko.png,exp/pepsi/fig4_prune_ko.md"
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.pepsi_data import SubnetPoint, build_group, result_rows
from speechkd.eval.pepsi_report import render_report
from speechkd.eval.report_kit import write_section
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def split_spec(spec: str, option: str, form: str) -> tuple[str, list[str]]:
    """``KEY=V1[,V2]`` → (KEY, [V1, V2]); KEY must not hold ``=``."""
    key, sep, rest = spec.partition("=")
    values = [v.strip() for v in rest.split(",", 1)] if rest else []
    if not sep or not key.strip() or not values or not all(values):
        raise ConfigError(f"{option} {spec!r}: expected {form}")
    return key.strip(), values


def parse_system(spec: str) -> tuple[str, str, str, str | None]:
    """``LANG:NAME=DECODE_DIR[,PARAMS]`` → (lang, name, decode dir, params or None)."""
    form = "LANG:NAME=DECODE_DIR[,PARAMS]"
    key, values = split_spec(spec, "--system", form)
    lang, sep, name = key.partition(":")
    if not sep or not lang.strip() or not name.strip():
        raise ConfigError(f"--system {spec!r}: expected {form}")
    return lang.strip(), name.strip(), values[0], values[1] if len(values) > 1 else None


def parse_subnet(spec: str) -> SubnetPoint:
    """``LANG:PRUNED_ON:PCT=DECODE_DIR``."""
    form = "LANG:PRUNED_ON:PCT=DECODE_DIR"
    key, values = split_spec(spec, "--subnet", form)
    parts = [p.strip() for p in key.split(":")]
    if len(parts) != 3 or not all(parts) or len(values) != 1:
        raise ConfigError(f"--subnet {spec!r}: expected {form}")
    try:
        pct = float(parts[2])
    except ValueError:
        raise ConfigError(f"--subnet {spec!r}: PCT must be a number, got {parts[2]!r}") from None
    if not 0.0 <= pct < 100.0:
        raise ConfigError(f"--subnet {spec!r}: PCT must lie in [0, 100), got {pct}")
    return SubnetPoint(parts[0], parts[1], pct, Path(values[0]))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--system",
        action="append",
        required=True,
        metavar="LANG:NAME=DECODE_DIR[,PARAMS]",
        help="a system trained on LANG, in table order (repeatable)",
    )
    parser.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="SET",
        help="test set base name: scores-<SET>_<LANG>.json (repeatable)",
    )
    parser.add_argument("--transfer-name", help="the transfer corpus (Table 4), e.g. clovacall")
    parser.add_argument("--transfer-language", help="language its tickets were pruned on")
    parser.add_argument(
        "--transfer-system",
        action="append",
        default=[],
        metavar="NAME=DECODE_DIR[,PARAMS]",
        help="a system of the transfer experiment (repeatable)",
    )
    parser.add_argument(
        "--transfer-set", action="append", default=[], help="transfer test set (repeatable)"
    )
    parser.add_argument(
        "--subnet",
        action="append",
        default=[],
        metavar="LANG:PRUNED_ON:PCT=DECODE_DIR",
        help="a ticket pruned on PRUNED_ON to PCT %% decoded on LANG (Table 1; repeatable)",
    )
    parser.add_argument(
        "--alive",
        action="append",
        default=[],
        metavar="LANG=HISTORY[,PNG]",
        help="imp-history.json (or its directory) of the IMP on LANG and its Fig. 3b PNG",
    )
    parser.add_argument(
        "--figure",
        action="append",
        default=[],
        metavar="CAPTION=PNG[,TABLE_MD]",
        help="a figure with the Markdown table of its numbers (repeatable)",
    )
    parser.add_argument("--title", default="PEPSI", help="heading of the section")
    parser.add_argument("--out", required=True, help="Markdown section to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    from speechkd.whisper.imp import load_history

    setup_logging()
    args = get_parser().parse_args(argv)
    by_language: dict[str, list[tuple[str, str, str | None]]] = {}
    for spec in args.system:
        lang, name, decode_dir, params = parse_system(spec)
        by_language.setdefault(lang, []).append((name, decode_dir, params))
    groups = [
        build_group(lang, [f"{s}_{lang}" for s in args.set], specs)
        for lang, specs in by_language.items()
    ]
    transfer = None
    if args.transfer_system or args.transfer_name:
        if not (args.transfer_name and args.transfer_system and args.transfer_set):
            raise ConfigError(
                "the transfer experiment needs --transfer-name, --transfer-system and "
                "--transfer-set"
            )
        specs = []
        for spec in args.transfer_system:
            name, values = split_spec(spec, "--transfer-system", "NAME=DECODE_DIR[,PARAMS]")
            specs.append((name, values[0], values[1] if len(values) > 1 else None))
        transfer = build_group(args.transfer_name, args.transfer_set, specs)
    alive = []
    for spec in args.alive:
        lang, values = split_spec(spec, "--alive", "LANG=HISTORY[,PNG]")
        alive.append((lang, load_history(values[0]), values[1] if len(values) > 1 else None))
    figures = []
    for spec in args.figure:
        caption, values = split_spec(spec, "--figure", "CAPTION=PNG[,TABLE_MD]")
        table = None
        if len(values) > 1:
            path = Path(values[1])
            if not path.is_file():
                raise DataError(f"--figure {spec!r}: table {path} not found")
            table = path.read_text(encoding="utf-8")
        figures.append((caption, values[0], table))
    tables = dict(
        transfer=transfer,
        transfer_language=args.transfer_language,
        subnet=[parse_subnet(s) for s in args.subnet],
        subnet_sets=args.set,
        alive=alive,
        figures=figures,
    )
    text = render_report(groups, title=args.title, **tables)
    out = write_section(args.out, text, result_rows(groups, **tables))
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    run_cli(main)
