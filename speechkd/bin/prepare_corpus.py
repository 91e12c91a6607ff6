"""Prepare lhotse manifests of a corpus on disk.

    python -m speechkd.bin.prepare_corpus <corpus> --corpus-dir DIR --output-dir DIR [options]
    python -m speechkd.bin.prepare_corpus commonvoice --corpus-dir /data/cv-corpus-13.0 \\
        --output-dir data/manifests --languages ca th --train-utts 10000 --dev-utts 1000
    python -m speechkd.bin.prepare_corpus --list

Each corpus's options come from its preparer module (``speechkd.data.prepare.<corpus>``);
``python -m speechkd.bin.prepare_corpus <corpus> --help`` lists them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from speechkd.data.prepare import get_preparer, preparers
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechkd.bin.prepare_corpus",
        description="Write <corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz manifests.",
    )
    parser.add_argument("--list", action="store_true", help="list the known corpora and exit")
    parser.add_argument("--log-file", type=Path, default=None, help="also log to this file")
    sub = parser.add_subparsers(dest="corpus", metavar="CORPUS")
    for name, module in preparers().items():
        doc = (module.__doc__ or "").strip().splitlines()
        corpus_parser = sub.add_parser(
            name,
            help=doc[0] if doc else name,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        corpus_parser.add_argument("--corpus-dir", type=Path, required=True)
        corpus_parser.add_argument("--output-dir", type=Path, required=True)
        if hasattr(module, "add_arguments"):
            module.add_arguments(corpus_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_file)
    if args.list:
        print("\n".join(preparers()))
        return 0
    if args.corpus is None:
        parser.error("give a corpus (or --list)")
    module = get_preparer(args.corpus)
    options = {k: v for k, v in vars(args).items() if k not in ("corpus", "list", "log_file")}
    logger.info("preparing %s with %s", args.corpus, options)
    written = module.prepare(**options)
    logger.info("%s: wrote %d split(s) to %s", args.corpus, len(written or {}), args.output_dir)
    return 0


if __name__ == "__main__":
    run_cli(main)
