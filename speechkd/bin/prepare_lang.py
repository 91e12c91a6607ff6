"""Prepare a ``data/lang_<unit>`` directory: a sentencepiece model or the Whisper tokenizer.

Examples::

    python -m speechkd.bin.prepare_lang --type bpe --vocab-size 500 \\
        --text data/text/foo.txt --text data/text/bar.txt --out-dir data/lang_bpe_500
    python -m speechkd.bin.prepare_lang --type whisper --out-dir data/lang_whisper
    python -m speechkd.bin.prepare_lang --type whisper --english-only --out-dir data/lang_whisper_en

The output directory appears atomically (built in a temporary sibling, then renamed) and
replaces a previous one.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechkd.data.units import MODEL_TYPES, train_sentencepiece
from speechkd.errors import ConfigError
from speechkd.utils.atomic import atomic_directory
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--type", required=True, choices=[*MODEL_TYPES, "whisper"])
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument(
        "--text",
        action="append",
        type=Path,
        default=[],
        help="text file, one sentence per line (repeatable; sentencepiece types)",
    )
    parser.add_argument("--vocab-size", type=int, help="number of units (sentencepiece types)")
    parser.add_argument("--character-coverage", type=float, default=1.0)
    parser.add_argument(
        "--user-defined-symbols",
        default="<blk>,<sos/eos>",
        help="comma-separated symbols given the first ids (icefall: <blk>=0)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--english-only", action="store_true", help="whisper: the English-only (*.en) vocabulary"
    )
    parser.add_argument(
        "--num-languages",
        type=int,
        default=99,
        help="whisper: 99 (up to large-v2) or 100 (large-v3)",
    )
    parser.add_argument("--log-file", type=Path)
    return parser


def prepare_lang(args: argparse.Namespace) -> Path:
    """Build the directory described by the parsed arguments; return it."""
    if args.type == "whisper":
        from speechkd.data.whisper_tokenizer import build_whisper_tokenizer

        return build_whisper_tokenizer(
            args.out_dir, multilingual=not args.english_only, num_languages=args.num_languages
        )
    if not args.text:
        raise ConfigError(f"--type {args.type} needs at least one --text file")
    if args.vocab_size is None:
        raise ConfigError(f"--type {args.type} needs --vocab-size")
    symbols = [s for s in args.user_defined_symbols.split(",") if s]
    with atomic_directory(args.out_dir) as tmp:
        train_sentencepiece(
            args.text,
            tmp,
            vocab_size=args.vocab_size,
            model_type=args.type,
            character_coverage=args.character_coverage,
            user_defined_symbols=symbols,
            seed=args.seed,
        )
    logger.info("Wrote %s", args.out_dir)
    return args.out_dir


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    prepare_lang(args)


if __name__ == "__main__":
    run_cli(main)
