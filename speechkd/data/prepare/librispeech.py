"""LibriSpeech through ``lhotse.recipes.librispeech``, checked first so nothing is dropped.

Layout (as released)::

    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   ("<id> TEXT" lines)

Each part's transcripts are read strictly (UTF-8, non-empty text, audio present) before
lhotse's ``prepare_librispeech`` builds the manifests in memory; output splits are the part
names (``librispeech_cuts_dev-clean.jsonl.gz``), ``supervision.language`` is ``en``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from lhotse.recipes.librispeech import LIBRISPEECH, MINI_LIBRISPEECH, prepare_librispeech

from speechkd.data.prepare.lhotse_recipe import require_file, require_text, save_split
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError

logger = logging.getLogger(__name__)

CORPUS = "librispeech"
LANGUAGE = "en"
KNOWN_PARTS = tuple(LIBRISPEECH) + tuple(MINI_LIBRISPEECH)


def find_corpus_root(corpus_dir: str | os.PathLike) -> Path:
    """``corpus_dir`` or its ``LibriSpeech`` subdirectory: the directory holding the parts."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise DataError(f"{corpus_dir}: LibriSpeech directory not found")
    nested = corpus_dir / "LibriSpeech"
    return nested if nested.is_dir() else corpus_dir


def read_part_transcripts(part_dir: Path) -> dict[str, str]:
    """``{utterance id: text}`` of one part; bad lines or missing audio raise DataError."""
    texts: dict[str, str] = {}
    for trans in sorted(part_dir.rglob("*.trans.txt")):
        for number, line in enumerate(read_utf8_lines(trans), start=1):
            where = f"{trans}:{number}"
            if not line.strip():
                continue
            fields = line.strip().split(maxsplit=1)
            utt = fields[0]
            text = require_text(fields[1] if len(fields) > 1 else "", f"{where} ({utt})")
            if utt in texts:
                raise DataError(f"{where}: utterance {utt} listed twice")
            require_file(trans.parent / f"{utt}.flac", where)
            texts[utt] = text
    if not texts:
        raise DataError(f"{part_dir}: no *.trans.txt transcripts found")
    return texts


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    parts: Sequence[str] | str = "auto",
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare the given LibriSpeech parts ("auto": every known part present).

    Returns ``{part: {"recordings"|"supervisions"|"cuts": path}}``.
    """
    root = find_corpus_root(corpus_dir)
    if parts in ("auto", ["auto"]):
        parts = [p for p in KNOWN_PARTS if (root / p).is_dir()]
        if not parts:
            raise DataError(f"{root}: none of the LibriSpeech parts {KNOWN_PARTS} found")
    elif isinstance(parts, str):
        parts = parts.split()
    written = {}
    for part in parts:
        if not (root / part).is_dir():
            raise DataError(f"{root / part}: LibriSpeech part not found")
        expected = read_part_transcripts(root / part)
        manifests = prepare_librispeech(
            root, dataset_parts=[part], output_dir=None, num_jobs=num_jobs
        )
        written[part] = save_split(
            CORPUS,
            part,
            manifests[part]["recordings"],
            manifests[part]["supervisions"],
            output_dir,
            language=LANGUAGE,
            expected_ids=expected,
        )
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument(
        "--parts", nargs="+", default="auto", help="parts (e.g. train-clean-100 dev-clean) or auto"
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
