"""CoVoST 2 speech translation (21 languages→en, en→15 languages) on Common Voice 4 clips.

Layout (the CoVoST 2 tsv extracted into the Common Voice locale directory of the source
language, as fairseq's ``prep_covost_data.py`` expects)::

    <corpus_dir>/clips/common_voice_<src>_<n>.mp3      Common Voice audio (48 kHz mp3)
    <corpus_dir>/validated.tsv                        Common Voice: client_id, path, sentence, ...
    <corpus_dir>/covost_v2.<src>_<tgt>.tsv            CoVoST 2: path, sentence, translation,
                                                      client_id, split

Both tsv files are tab-separated with a header, unquoted, ``\\`` as escape character (read as
CoVoST's and fairseq's loaders do). The split of a clip is the ``split`` column of the CoVoST tsv:
``train``, ``dev``, ``test``, plus ``train_covost`` (extra validated clips CoVoST added to
training) which joins ``train`` unless ``include_train_covost`` is off -- the official recipe
(CoVoST's ``get_covost_splits.py``, fairseq) does the same. It is *not* derived from Common
Voice's train/dev/test.tsv membership. The transcript and speaker come from ``validated.tsv``
joined on ``path`` (as the official loaders do); if ``validated.tsv`` is absent, the CoVoST tsv's
own ``sentence``/``client_id`` columns are used.

Language codes are CoVoST's (``fr``, ``zh-CN``, ``sv-SE``); ``supervision.language`` and
``custom["tgt_lang"]`` hold their ISO 639-1 form (``zh``, ``sv``). Per clip::

    supervision.id = recording.id = clip name without .mp3
    supervision.text = source transcript, supervision.speaker = client_id
    custom = {"translation": ..., "tgt_lang": ..., "covost_split": "train" | "train_covost" | ...}

mp3 is read by libsndfile (>= 1.1, bundled with soundfile): no ffmpeg needed. Output splits are
``<src>-<tgt>_<split>`` (``covost2_cuts_fr-en_train.jsonl.gz``).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from speechkd.data.prepare.languages import to_iso639_1
from speechkd.data.prepare.st_common import (
    parse_list_option,
    probe_recordings,
    require_dir,
    save_segments,
    whole_recording_supervision,
)
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CORPUS = "covost2"
SPLITS = ("train", "dev", "test")
COVOST_COLUMNS = ("path", "translation", "split")
CV_COLUMNS = ("path", "sentence", "client_id")


@dataclass(frozen=True)
class TsvRow:
    """One row of a tsv file and where it came from (``<file>:<line>``)."""

    fields: dict[str, str]
    where: str


def read_tsv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[TsvRow]]:
    """Header and rows of a CoVoST/Common Voice tsv (unquoted, ``\\`` escapes, strict UTF-8)."""
    lines = read_utf8_lines(path)
    if not lines:
        raise DataError(f"{path}: empty file (expected a header line)")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
    header = next(reader)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header: {header})")
    rows = []
    for number, values in enumerate(reader, start=2):
        if not values:
            continue  # blank line
        if len(values) != len(header):
            raise DataError(f"{path}:{number}: {len(values)} fields, the header has {len(header)}")
        rows.append(TsvRow(dict(zip(header, values, strict=True)), f"{path}:{number}"))
    return header, rows


def split_of(covost_split: str, include_train_covost: bool) -> str | None:
    """Our split of a CoVoST ``split`` value (None: not used)."""
    if covost_split in SPLITS:
        return covost_split
    if covost_split == "train_covost":
        return "train" if include_train_covost else None
    return None


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    src_lang: str = "fr",
    tgt_lang: str = "en",
    splits: str | list[str] | None = None,
    covost_tsv: str | os.PathLike | None = None,
    include_train_covost: bool = True,
    skip_missing: bool = False,
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare CoVoST 2 ``src_lang``→``tgt_lang`` manifests (one of the two must be ``en``).

    ``covost_tsv``: the CoVoST tsv (default ``<corpus_dir>/covost_v2.<src>_<tgt>.tsv``).
    ``skip_missing``: leave out clips whose mp3 is missing or that ``validated.tsv`` lacks
    (logged with counts) instead of failing. Returns ``{"<src>-<tgt>_<split>": {kind: path}}``.
    """
    if "en" not in (src_lang, tgt_lang) or src_lang == tgt_lang:
        raise ConfigError(
            f"src_lang/tgt_lang: CoVoST 2 pairs are X-en or en-X, got {src_lang}-{tgt_lang}"
        )
    corpus_dir = require_dir(Path(corpus_dir), "Common Voice locale directory")
    clips_dir = require_dir(corpus_dir / "clips", "Common Voice clips directory")
    wanted = parse_list_option(splits, "splits") or list(SPLITS)
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown:
        raise ConfigError(f"splits: unknown {unknown}; choose from {', '.join(SPLITS)}")

    covost_path = (
        Path(covost_tsv) if covost_tsv else corpus_dir / f"covost_v2.{src_lang}_{tgt_lang}.tsv"
    )
    covost_header, covost_rows = read_tsv(covost_path, COVOST_COLUMNS)
    cv_path = corpus_dir / "validated.tsv"
    if cv_path.is_file():
        _, cv_rows = read_tsv(cv_path, CV_COLUMNS)
        source = {row.fields["path"]: row for row in cv_rows}
        source_name = str(cv_path)
    elif all(c in covost_header for c in ("sentence", "client_id")):
        source = {row.fields["path"]: row for row in covost_rows}
        source_name = str(covost_path)
        logger.info("%s not found: transcripts and speakers taken from %s", cv_path, covost_path)
    else:
        raise DataError(
            f"{cv_path}: not found, and {covost_path} has no sentence/client_id columns"
        )

    src_iso, tgt_iso = to_iso639_1(src_lang), to_iso639_1(tgt_lang)
    by_split: dict[str, list[tuple[TsvRow, TsvRow]]] = {s: [] for s in wanted}
    unused, not_in_source, no_audio = 0, 0, 0
    seen: dict[str, str] = {}
    for row in covost_rows:
        split = split_of(row.fields["split"], include_train_covost)
        if split is None and row.fields["split"] not in ("train_covost",):
            raise DataError(f"{row.where}: unknown split value {row.fields['split']!r}")
        if split not in by_split:
            unused += 1
            continue
        clip = row.fields["path"]
        if clip in seen:
            raise DataError(f"{row.where}: clip {clip} listed again (first at {seen[clip]})")
        seen[clip] = row.where
        if clip not in source:
            if not skip_missing:
                raise DataError(f"{row.where}: clip {clip} is not in {source_name}")
            not_in_source += 1
            continue
        if not (clips_dir / clip).is_file() and skip_missing:
            no_audio += 1
            continue
        by_split[split].append((row, source[clip]))
    if not_in_source or no_audio:
        logger.warning(
            "skip_missing: left out %d clip(s) absent from %s and %d without an audio file",
            not_in_source,
            source_name,
            no_audio,
        )
    if unused:
        logger.info("%s: %d row(s) belong to splits not prepared now", covost_path, unused)

    written = {}
    for split, rows in by_split.items():
        items = [(Path(row.fields["path"]).stem, clips_dir / row.fields["path"]) for row, _ in rows]
        recordings = probe_recordings(items, num_jobs=num_jobs, desc=f"CoVoST 2 {split}")
        supervisions = []
        for recording, (row, src_row) in zip(recordings, rows, strict=True):
            text = src_row.fields["sentence"].strip()
            translation = row.fields["translation"].strip()
            if not text:
                raise DataError(f"{src_row.where}: empty transcript (sentence) for {recording.id}")
            if not translation:
                raise DataError(f"{row.where}: empty translation for {recording.id}")
            supervisions.append(
                whole_recording_supervision(
                    recording,
                    text=text,
                    language=src_iso,
                    speaker=src_row.fields["client_id"] or None,
                    custom={
                        "translation": translation,
                        "tgt_lang": tgt_iso,
                        "covost_split": row.fields["split"],
                    },
                )
            )
        name = f"{src_lang}-{tgt_lang}_{split}"
        written[name] = save_segments(CORPUS, name, recordings, supervisions, output_dir)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument("--src-lang", default="fr", help="CoVoST source language (fr, zh-CN, en)")
    parser.add_argument("--tgt-lang", default="en", help="CoVoST target language (en, de, ...)")
    parser.add_argument("--splits", default=None, help="comma-separated: train,dev,test (default)")
    parser.add_argument(
        "--covost-tsv", default=None, help="default: <corpus-dir>/covost_v2.<src>_<tgt>.tsv"
    )
    parser.add_argument(
        "--no-train-covost",
        dest="include_train_covost",
        action="store_false",
        help="leave the train_covost rows out of train",
    )
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="leave out clips without audio or validated.tsv row (counted) instead of failing",
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
