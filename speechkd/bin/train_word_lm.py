"""Train a word n-gram LM (interpolated modified Kneser-Ney) from raw text and write it as ARPA.

    python -m speechkd.bin.train_word_lm --text data/text/mini_raw_en.txt --order 4 \\
        --vocabulary data/lang_phone_en/lexicon.txt --out data/lm/word_4gram.arpa

Text is split into words as the lexicon tools split it (lower case, punctuation stripped).
``--vocabulary`` (a lexicon: the first field of each line) restricts the LM to the words the
decoder can spell; other words become ``<unk>``. The ARPA file is written atomically and read by
KenLM (flashlight-text) and :class:`speechkd.mmi.arpa.ArpaModel`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.lexicon_decoder import read_lm_sentences, write_arpa_lm
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--text", nargs="+", required=True, help="raw text files, one sentence a line"
    )
    parser.add_argument("--order", type=int, default=4, help="n-gram order (default 4)")
    parser.add_argument("--vocabulary", help="lexicon file whose first column is the vocabulary")
    parser.add_argument("--out", required=True, help="output ARPA file")
    parser.add_argument("--log-file")
    return parser


def read_vocabulary(path: str | Path) -> list[str]:
    """The words of a lexicon file (first field of every non-empty line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: vocabulary/lexicon file not found")
    words = [
        line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.split()
    ]
    if not words:
        raise DataError(f"{path}: no words")
    return words


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    if args.order < 1:
        raise ConfigError(f"--order must be >= 1, got {args.order}")
    for path in args.text:
        if not Path(path).is_file():
            raise DataError(f"{path}: text file not found")
    sentences = read_lm_sentences(args.text)
    if not sentences:
        raise DataError(f"no sentences in {', '.join(args.text)}")
    vocabulary = read_vocabulary(args.vocabulary) if args.vocabulary else None
    out = write_arpa_lm(args.out, sentences, order=args.order, vocabulary=vocabulary)
    logger.info("wrote a %d-gram LM of %d sentences to %s", args.order, len(sentences), out)
    return 0


if __name__ == "__main__":
    run_cli(main)
