"""Write the transcripts of CutSets as raw text, one supervision per line (phone LMs, word LMs,
lexicons).

    python -m speechkd.bin.cuts_to_text \\
        --cuts data/manifests/librispeech_cuts_train-clean-100.jsonl.gz \\
        --language en --out data/text/train.txt

Supervisions are written in manifest order; an empty transcript is a DataError naming the cut
(never silently dropped). The file is written atomically.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from speechkd.data.manifest_io import open_cuts_lazy
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", nargs="+", required=True, help="CutSet manifests")
    parser.add_argument("--language", help="only supervisions of this language")
    parser.add_argument("--out", required=True, help="output text file")
    parser.add_argument("--log-file")
    return parser


def cuts_text(paths: Sequence[str | Path], language: str | None = None) -> list[str]:
    """The transcripts of the CutSets' supervisions (of ``language`` when given)."""
    lines = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such CutSet")
        for cut in open_cuts_lazy(path):
            for sup in cut.supervisions:
                if language and sup.language and sup.language != language:
                    continue
                text = " ".join((sup.text or "").split())
                if not text:
                    raise DataError(f"{path}: cut {cut.id}: empty transcript")
                lines.append(text)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    lines = cuts_text(args.cuts, args.language)
    if not lines:
        raise DataError(f"no transcripts in {', '.join(args.cuts)}")
    atomic_write_text(args.out, "".join(line + "\n" for line in lines))
    logger.info("wrote %d transcripts to %s", len(lines), args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
