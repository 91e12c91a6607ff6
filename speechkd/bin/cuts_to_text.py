"""Write the transcripts of CutSets as raw text, one supervision per line (phone LMs, word LMs,
lexicons).

    python -m speechkd.bin.cuts_to_text \\
        --cuts data/manifests/librispeech_cuts_train-clean-100.jsonl.gz \\
        --language en --out data/text/train.txt

Supervisions are written in manifest order; an empty transcript is a DataError naming the cut
(never silently dropped). ``--drop-tags`` removes ``<TAG>`` tokens first (GigaSpeech's
punctuation and garbage tags, as ``speechkd.bin.drop_text_tags``); transcripts left without words
are then left out, counted and logged. The file is written atomically.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from speechkd.bin import drop_text_tags
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
    parser.add_argument(
        "--drop-tags",
        action="store_true",
        help="remove <TAG> tokens; transcripts left empty are left out (and counted)",
    )
    parser.add_argument("--log-file")
    return parser


def cuts_text(
    paths: Sequence[str | Path], language: str | None = None, drop_tags: bool = False
) -> list[str]:
    """The transcripts of the CutSets' supervisions (of ``language`` when given), without
    ``<TAG>`` tokens with ``drop_tags`` (transcripts left empty are then left out)."""
    lines = []
    left_out = 0
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such CutSet")
        for cut in open_cuts_lazy(path):
            for sup in cut.supervisions:
                if language and sup.language and sup.language != language:
                    continue
                text = " ".join((sup.text or "").split())
                if drop_tags:
                    text = drop_text_tags.drop_tags(text)
                    if not text:
                        left_out += 1
                        continue
                if not text:
                    raise DataError(f"{path}: cut {cut.id}: empty transcript")
                lines.append(text)
    if left_out:
        logger.info("%d transcripts without words once their tags are removed: left out", left_out)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    lines = cuts_text(args.cuts, args.language, args.drop_tags)
    if not lines:
        raise DataError(f"no transcripts in {', '.join(args.cuts)}")
    atomic_write_text(args.out, "".join(line + "\n" for line in lines))
    logger.info("wrote %d transcripts to %s", len(lines), args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
