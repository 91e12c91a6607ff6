"""FLEURS (out-of-domain evaluation in DistilWhisper): one directory per language.

Layouts read (the tsv files are the same, no header, 7 columns: id, file name, raw
transcription, transcription, characters, number of samples, gender):

- as released (``google/fleurs`` ``data/``, archives extracted)::

      <code>/{train,dev,test}.tsv      <code>/audio/{train,dev,test}/<n>.wav

- as written by ``lhotse download fleurs``::

      metadata/<code>/{train,dev,test}.tsv      <code>/{train,dev,test}/<n>.wav

lhotse's ``prepare_fleurs`` reads only the second layout (and skips missing files), so the rows
are read here with lhotse's naming: supervision id ``<id>_<k>_<file stem>`` (``k`` counts
repeats of a sentence id), speaker ``<id>_<k>``, text = the normalised ``transcription``,
``custom["raw_text"]`` = the raw transcription. ``supervision.language`` is ISO 639-1;
output splits are ``<iso>_<part>`` (``fleurs_cuts_ca_test.jsonl.gz``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from tqdm.auto import tqdm

from speechkd.data.prepare.languages import parse_language_list, to_iso639_1
from speechkd.data.prepare.lhotse_recipe import require_file, require_text, save_split
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError

logger = logging.getLogger(__name__)

CORPUS = "fleurs"
PARTS = ("train", "dev", "test")
COLUMNS = (
    "id",
    "file_name",
    "raw_transcription",
    "transcription",
    "characters",
    "num_samples",
    "gender",
)


def find_language_dirs(corpus_dir: Path) -> dict[str, Path]:
    """``{fleurs code: directory}`` for every language directory with audio."""
    found = {}
    for path in sorted(corpus_dir.iterdir()):
        if path.is_dir() and path.name != "metadata" and "_" in path.name:
            found[path.name] = path
    return found


def resolve_codes(available: dict[str, Path], languages: list[str] | str) -> list[str]:
    """FLEURS codes for ``languages`` given as FLEURS codes (``ca_es``) or ISO codes (``ca``)."""
    if languages in ("auto", "all"):
        return list(available)
    by_iso: dict[str, list[str]] = {}
    for code in available:
        by_iso.setdefault(to_iso639_1(code), []).append(code)
    codes = []
    for language in languages:
        if language in available:
            codes.append(language)
        elif len(by_iso.get(language, [])) == 1:
            codes.append(by_iso[language][0])
        else:
            raise DataError(
                f"FLEURS language {language!r}: no single matching directory among "
                f"{', '.join(available) or 'none'}"
            )
    return codes


def locate_part(corpus_dir: Path, code: str, part: str) -> tuple[Path, Path]:
    """(tsv file, audio directory) of one language and part, in either layout."""
    released = (corpus_dir / code / f"{part}.tsv", corpus_dir / code / "audio" / part)
    lhotse_layout = (corpus_dir / "metadata" / code / f"{part}.tsv", corpus_dir / code / part)
    for tsv, audio_dir in (released, lhotse_layout):
        if tsv.is_file():
            archive = audio_dir.with_name(f"{part}.tar.gz")
            if not audio_dir.is_dir() and archive.is_file():
                raise DataError(f"{audio_dir}: not found; extract {archive} in {archive.parent}")
            return tsv, audio_dir
    raise DataError(f"FLEURS {code} {part}: neither {released[0]} nor {lhotse_layout[0]} exists")


def read_part(
    tsv: Path, audio_dir: Path, language: str, code: str
) -> list[tuple[Path, SupervisionSegment]]:
    """(wav path, supervision without duration) for each row of a FLEURS tsv, checked."""
    items = []
    repeats: dict[str, int] = {}
    seen: dict[str, str] = {}
    for number, line in enumerate(read_utf8_lines(tsv), start=1):
        where = f"{tsv}:{number}"
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(COLUMNS):
            raise DataError(f"{where}: {len(values)} fields, expected {len(COLUMNS)} {COLUMNS}")
        row = dict(zip(COLUMNS, values, strict=True))
        stem = Path(row["file_name"]).stem
        if stem in seen:
            raise DataError(f"{where}: audio {row['file_name']} already listed at {seen[stem]}")
        seen[stem] = where
        wav = require_file(audio_dir / Path(row["file_name"]).name, where)
        text = require_text(row["transcription"], f"{where} ({row['file_name']})")
        repeats[row["id"]] = repeats.get(row["id"], 0) + 1
        speaker = f"{row['id']}_{repeats[row['id']]}"
        segment = SupervisionSegment(
            id=f"{speaker}_{stem}",
            recording_id=stem,
            start=0.0,
            duration=0.0,  # set from the audio file
            channel=0,
            text=text,
            language=language,
            speaker=speaker,
            gender=row["gender"],
            custom={"raw_text": row["raw_transcription"].strip(), "fleurs_code": code},
        )
        items.append((wav, segment))
    return items


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    languages: Sequence[str] | str = "auto",
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare train/dev/test manifests of each FLEURS language.

    ``languages``: FLEURS codes (``ca_es``) or ISO 639-1 codes (``ca``), or "auto" (all found).
    Returns ``{"<iso>_<part>": {"recordings"|"supervisions"|"cuts": path}}``.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise DataError(f"{corpus_dir}: FLEURS directory not found")
    codes = resolve_codes(find_language_dirs(corpus_dir), parse_language_list(languages))
    if not codes:
        raise DataError(f"{corpus_dir}: no FLEURS language directories (e.g. ca_es/) found")
    written = {}
    for code in codes:
        language = to_iso639_1(code)
        for part in PARTS:
            tsv, audio_dir = locate_part(corpus_dir, code, part)
            items = read_part(tsv, audio_dir, language, code)
            with ThreadPoolExecutor(max(1, num_jobs)) as pool:
                recordings = list(
                    tqdm(
                        pool.map(lambda item: Recording.from_file(item[0]), items),
                        total=len(items),
                        desc=f"fleurs {code} {part}",
                        leave=False,
                    )
                )
            segments = [
                dataclasses.replace(segment, duration=recording.duration)
                for (_, segment), recording in zip(items, recordings, strict=True)
            ]
            split = f"{language}_{part}"
            written[split] = save_split(
                CORPUS,
                split,
                RecordingSet.from_recordings(recordings),
                SupervisionSet.from_segments(segments),
                output_dir,
                language=language,
                expected_ids=[segment.id for _, segment in items],
            )
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument(
        "--languages", nargs="+", default="auto", help='FLEURS or ISO codes ("ca_es th") or auto'
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
