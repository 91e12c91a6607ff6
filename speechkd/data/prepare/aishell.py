"""AISHELL-1 through ``lhotse.recipes.aishell``, with the transcript checked first.

Layout (as released, speaker archives under ``wav/`` extracted)::

    data_aishell/wav/{train,dev,test}/<speaker>/<utt>.wav
    data_aishell/transcript/aishell_transcript_v0.8.txt   ("<utt> 词 词 ..." lines)

The corpus has wav files without a transcript line (and the reverse); as in Kaldi's and
lhotse's preparation those are not used, and their number is logged per split. Text is
lhotse's (full-width letters mapped, upper case, spaces removed); ``supervision.language`` is
``zh``; output splits are ``train``, ``dev``, ``test``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lhotse.recipes.aishell import prepare_aishell

from speechkd.data.prepare.lhotse_recipe import require_text, save_split
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError

logger = logging.getLogger(__name__)

CORPUS = "aishell"
LANGUAGE = "zh"
PARTS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")


def find_corpus_root(corpus_dir: str | os.PathLike) -> Path:
    """The directory holding ``data_aishell/`` (``corpus_dir`` or its parent)."""
    corpus_dir = Path(corpus_dir)
    if corpus_dir.name == "data_aishell":
        corpus_dir = corpus_dir.parent
    if not (corpus_dir / "data_aishell").is_dir():
        raise DataError(f"{corpus_dir}: no data_aishell/ directory (AISHELL-1) found")
    return corpus_dir


def read_transcript(path: Path) -> dict[str, str]:
    """``{utterance id: text}``; invalid UTF-8, empty text or a repeated id raise DataError."""
    texts: dict[str, str] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        text = require_text(fields[1] if len(fields) > 1 else "", f"{where} ({fields[0]})")
        if fields[0] in texts:
            raise DataError(f"{where}: utterance {fields[0]} listed twice")
        texts[fields[0]] = text
    return texts


def transcribed_wavs(root: Path, part: str, texts: dict[str, str]) -> set[str]:
    """Ids of the part's wav files that have a transcript; the others are counted and logged."""
    wav_dir = root / "data_aishell" / "wav" / part
    ids = {p.stem for p in wav_dir.rglob("*.wav")}
    if not ids:
        archives = sorted(wav_dir.parent.glob("*.tar.gz"))
        hint = (
            f" (extract the {len(archives)} speaker archives in {wav_dir.parent})"
            if archives
            else ""
        )
        raise DataError(f"{wav_dir}: no wav files{hint}")
    untranscribed = sorted(ids - texts.keys())
    if untranscribed:
        logger.warning(
            "aishell %s: %d of %d wav files have no transcript line in %s and are not used "
            "(e.g. %s)",
            part,
            len(untranscribed),
            len(ids),
            TRANSCRIPT,
            ", ".join(untranscribed[:3]),
        )
    return ids & texts.keys()


def prepare(
    corpus_dir: str | os.PathLike, output_dir: str | os.PathLike
) -> dict[str, dict[str, Path]]:
    """Prepare AISHELL-1 train/dev/test manifests.

    Returns ``{part: {"recordings"|"supervisions"|"cuts": path}}``.
    """
    root = find_corpus_root(corpus_dir)
    texts = read_transcript(root / TRANSCRIPT)
    expected = {part: transcribed_wavs(root, part, texts) for part in PARTS}
    unused = len(texts.keys() - set().union(*expected.values()))
    if unused:
        logger.info("aishell: %d transcript lines have no wav file (not used)", unused)
    manifests = prepare_aishell(root, output_dir=None)
    return {
        part: save_split(
            CORPUS,
            part,
            manifests[part]["recordings"],
            manifests[part]["supervisions"],
            output_dir,
            language=LANGUAGE,
            expected_ids=expected[part],
        )
        for part in PARTS
    }
