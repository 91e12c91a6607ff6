"""CSRC-2021: the SLT 2021 Children Speech Recognition Challenge data (Mandarin, 16 kHz).

The challenge released three training sets (Databaker, about 400 h in all):

    A   (A1, A2, ... when split)  adult read speech, ~341 h      style "read",           age "adult"
    C1                            child read speech, ~28.6 h     style "read",           age "child"
    C2                            child conversation, ~29.5 h    style "conversational", age "child"

plus development/evaluation sets. The layout parsed here, one directory per set::

    <corpus_dir>/<SET>/**/<utt>.wav      at any depth, commonly <SET>/WAV/<speaker>/<utt>.wav

and, for the transcripts, exactly one of

    (a) a transcript list at the top of the set directory, one utterance per line,
        "<utt>\\t<text>" or "<utt> <text>" (the utterance may be written as a file name,
        "<utt>.wav", or a relative path); it is found under one of the names in
        ``TRANSCRIPT_LISTS`` or given with ``transcript_list``;
    (b) per-utterance files, ``<utt>.txt`` beside ``<utt>.wav``, transcript on the first line
        (a leading "<utt>" field is removed; further lines, e.g. pinyin, are ignored).

(a) is used when a list file exists, else (b). Every audio file needs a transcript and every
list entry an audio file, or a DataError names the file; text must be UTF-8 (convert GBK files
with iconv first). Which sets exist, and their names, differ between copies of the data, so
nothing else is inferred: set names matching ``A``/``A<n>``, ``C1``, ``C2`` get the style and age
group above; any other set (``dev``, ``test``, ``dev/C1``) needs ``set_info`` entries
``NAME:style:age_group``.

Per utterance: ``supervision.id = recording.id = "<split>_<utt>"`` (split: the set name in lower
case, ``/`` -> ``_``; set names are prefixed because A and C1 reuse utterance names),
``language = "zh"``, ``speaker`` = the directory holding the audio (unless it is named like
``wav``/``audio`` or is the set directory), ``custom = {"style", "age_group", "subset"}``.
Output: ``csrc_{recordings,supervisions,cuts}_<split>.jsonl.gz`` (``csrc_cuts_c1.jsonl.gz``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

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

CORPUS = "csrc"
LANGUAGE = "zh"
STYLES = ("read", "conversational")
AGE_GROUPS = ("child", "adult")
TRANSCRIPT_LISTS = ("text", "trans.txt", "TRANS.txt", "transcript.txt", "transcripts.txt",
                    "content.txt", "label.txt")  # fmt: skip
NOT_SPEAKER_DIRS = {"wav", "wave", "wavs", "audio", "audios", "data"}
KNOWN_SETS = (
    (re.compile(r"^A\d*$", re.IGNORECASE), ("read", "adult")),
    (re.compile(r"^C1$", re.IGNORECASE), ("read", "child")),
    (re.compile(r"^C2$", re.IGNORECASE), ("conversational", "child")),
)


@dataclass(frozen=True)
class SetInfo:
    """A set directory and what it holds."""

    name: str  # path relative to corpus_dir, e.g. "C1" or "dev/C1"
    style: str
    age_group: str

    @property
    def split(self) -> str:
        return self.name.lower().replace("/", "_")


def parse_set_info(entries: list[str] | None) -> dict[str, tuple[str, str]]:
    """``["dev:read:child", ...]`` -> ``{"dev": ("read", "child")}`` (values checked)."""
    info = {}
    for entry in entries or []:
        parts = entry.split(":")
        if len(parts) != 3 or parts[1] not in STYLES or parts[2] not in AGE_GROUPS:
            raise ConfigError(
                f"set_info: {entry!r} is not NAME:style:age_group with style in {STYLES} "
                f"and age_group in {AGE_GROUPS}"
            )
        info[parts[0].strip("/")] = (parts[1], parts[2])
    return info


def resolve_sets(corpus_dir: Path, sets: list[str] | None, set_info: dict) -> list[SetInfo]:
    """The sets to prepare: the given names, or every directory with a known set name."""
    if sets is None:
        names = sorted(
            p.name
            for p in corpus_dir.iterdir()
            if p.is_dir() and (p.name in set_info or known_set(p.name))
        )
        if not names:
            found = sorted(p.name for p in corpus_dir.iterdir() if p.is_dir())
            raise DataError(
                f"{corpus_dir}: no CSRC set directory (A, A<n>, C1, C2) found; directories "
                f"there: {found}; name them with sets/set_info"
            )
    else:
        names = [name.strip("/") for name in sets]
    resolved = []
    for name in names:
        require_dir(corpus_dir / name, f"CSRC set {name}")
        style_age = set_info.get(name) or known_set(Path(name).name)
        if style_age is None:
            raise ConfigError(
                f"set {name!r}: style and age group unknown; give set_info {name}:style:age_group"
            )
        resolved.append(SetInfo(name, *style_age))
    return resolved


def known_set(name: str) -> tuple[str, str] | None:
    for pattern, style_age in KNOWN_SETS:
        if pattern.match(name):
            return style_age
    return None


def utterance_key(field: str, audio_ext: str) -> str:
    """``utt``, ``utt.wav`` or ``WAV/spk/utt.wav`` -> ``utt``."""
    name = field.replace("\\", "/").rsplit("/", 1)[-1]
    suffix = f".{audio_ext}"
    return name[: -len(suffix)] if name.lower().endswith(suffix.lower()) else name


def read_transcript_list(path: Path, audio_ext: str) -> dict[str, tuple[str, str]]:
    """``{utt: (text, "<file>:<line>")}`` from a transcript list."""
    entries: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        line = line.lstrip("\ufeff").strip()
        if not line:
            continue
        fields = line.split(maxsplit=1)
        where = f"{path}:{number}"
        if len(fields) < 2 or not fields[1].strip():
            raise DataError(f"{where}: empty transcript for {fields[0]!r}")
        key = utterance_key(fields[0], audio_ext)
        if key in entries:
            raise DataError(f"{where}: utterance {key!r} listed again (first at {entries[key][1]})")
        entries[key] = (fields[1].strip(), where)
    if not entries:
        raise DataError(f"{path}: no transcripts")
    return entries


def read_utterance_text(path: Path, utt: str) -> str:
    """The transcript in a per-utterance ``.txt`` file: its first non-empty line."""
    if not path.is_file():
        raise DataError(f"{path}: transcript file not found for {path.with_suffix('')}")
    lines = [line.lstrip("\ufeff").strip() for line in read_utf8_lines(path)]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path}: empty transcript")
    text = lines[0]
    fields = text.split(maxsplit=1)
    if fields[0] == utt:
        text = fields[1].strip() if len(fields) > 1 else ""
        if not text:
            raise DataError(f"{path}: empty transcript")
    return text


def speaker_of(audio: Path, set_dir: Path) -> str | None:
    parent = audio.parent
    if parent == set_dir or parent.name.lower() in NOT_SPEAKER_DIRS:
        return None
    return parent.name


def find_transcript_list(set_dir: Path, transcript_list: str | None) -> Path | None:
    if transcript_list:
        path = set_dir / transcript_list
        if not path.is_file():
            raise DataError(f"{path}: transcript list not found")
        return path
    found = [set_dir / n for n in TRANSCRIPT_LISTS if (set_dir / n).is_file()]
    if len(found) > 1:
        raise DataError(
            f"{set_dir}: several transcript lists {[p.name for p in found]}; choose one with "
            "transcript_list"
        )
    return found[0] if found else None


def collect_set(
    corpus_dir: Path, info: SetInfo, audio_ext: str, transcript_list: str | None
) -> list[tuple[str, Path, str, str | None]]:
    """``(recording_id, audio, text, speaker)`` for every utterance of one set."""
    set_dir = corpus_dir / info.name
    audios = sorted(p for p in set_dir.rglob(f"*.{audio_ext}") if p.is_file())
    if not audios:
        raise DataError(f"{set_dir}: no *.{audio_ext} files")
    by_utt: dict[str, Path] = {}
    for audio in audios:
        if audio.stem in by_utt:
            raise DataError(f"{audio}: utterance name also used by {by_utt[audio.stem]}")
        by_utt[audio.stem] = audio
    list_path = find_transcript_list(set_dir, transcript_list)
    items = []
    if list_path is not None:
        entries = read_transcript_list(list_path, audio_ext)
        orphans = sorted(set(entries) - set(by_utt))
        if orphans:
            where = entries[orphans[0]][1]
            raise DataError(
                f"{where}: no audio file {orphans[0]}.{audio_ext} under {set_dir} "
                f"({len(orphans)} listed utterance(s) without audio)"
            )
        for utt, audio in by_utt.items():
            if utt not in entries:
                raise DataError(f"{audio}: no transcript in {list_path}")
            items.append((utt, audio, entries[utt][0]))
    else:
        for utt, audio in by_utt.items():
            items.append((utt, audio, read_utterance_text(audio.with_suffix(".txt"), utt)))
    return [
        (f"{info.split}_{utt}", audio, text, speaker_of(audio, set_dir))
        for utt, audio, text in items
    ]


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    sets: str | list[str] | None = None,
    set_info: str | list[str] | None = None,
    transcript_list: str | None = None,
    audio_ext: str = "wav",
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare CSRC-2021 manifests, one split per set directory.

    ``sets``: set directories relative to ``corpus_dir`` (default: all named A, A<n>, C1, C2 or
    listed in ``set_info``). ``set_info``: ``NAME:style:age_group`` entries for other names.
    ``transcript_list``: name of the transcript list file in each set directory.
    Returns ``{"<split>": {kind: path}}``.
    """
    corpus_dir = require_dir(Path(corpus_dir), "CSRC corpus directory")
    info = parse_set_info(parse_list_option(set_info, "set_info"))
    audio_ext = audio_ext.lstrip(".")
    written = {}
    for set_ in resolve_sets(corpus_dir, parse_list_option(sets, "sets"), info):
        items = collect_set(corpus_dir, set_, audio_ext, transcript_list)
        recordings = probe_recordings(
            [(rid, audio) for rid, audio, _, _ in items], num_jobs=num_jobs, desc=set_.name
        )
        custom = {"style": set_.style, "age_group": set_.age_group, "subset": set_.name}
        supervisions = [
            whole_recording_supervision(rec, text, LANGUAGE, speaker, dict(custom))
            for rec, (_, _, text, speaker) in zip(recordings, items, strict=True)
        ]
        written[set_.split] = save_segments(
            CORPUS, set_.split, recordings, supervisions, output_dir
        )
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument(
        "--sets", default=None, help="comma-separated set directories (default: A*, C1, C2 found)"
    )
    parser.add_argument(
        "--set-info",
        default=None,
        help="comma-separated NAME:style:age_group for other sets, e.g. dev:read:child",
    )
    parser.add_argument(
        "--transcript-list", default=None, help="transcript list file name in each set directory"
    )
    parser.add_argument("--audio-ext", default="wav", help="audio file extension")
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
