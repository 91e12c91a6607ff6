"""ClovaCall: Korean goal-oriented call-centre speech (restaurant reservations, NAVER Clova).

Layout (as in the ClovaCall repository's README)::

    <corpus_dir>/train_ClovaCall.json      [{"wav": "42_0603_748_0_03319_00.wav",
    <corpus_dir>/test_ClovaCall.json         "text": "단체 할인이 가능한 시간대가 따로 있나요?",
                                             "speaker_id": "03319"}, ...]
    <corpus_dir>/clean/<wav>               silence-trimmed audio (the "clean" version)
    <corpus_dir>/raw/<wav>                 untrimmed audio (the "raw" version)

Some copies instead ship ``wavs_train/`` and ``wavs_test/`` beside the json files; they are used
when present. ``audio_dir`` overrides both (a directory, relative to ``corpus_dir`` or absolute).
The sampling rate, channel count and duration are read from each file's header, never assumed
(call audio: narrow-band telephone speech stored as PCM wav).

Per utterance: ``supervision.id = recording.id`` = wav name without ``.wav``, ``text`` as in the
json, ``speaker`` = ``speaker_id``, ``language = "ko"``. Output splits are ``train``/``test``
for the clean version and ``train_raw``/``test_raw`` for the raw one
(``clovacall_cuts_test.jsonl.gz``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from speechkd.data.prepare.st_common import (
    parse_list_option,
    probe_recordings,
    require_dir,
    save_segments,
    whole_recording_supervision,
)
from speechkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CORPUS = "clovacall"
LANGUAGE = "ko"
SPLITS = ("train", "test")
VARIANTS = ("clean", "raw")


def read_json_list(path: Path) -> list[dict]:
    """The entries of a ClovaCall json file (strict UTF-8; each needs ``wav`` and ``text``)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        entries = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 at byte {err.start} ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of utterances")
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("wav"), str):
            raise DataError(f"{path}: entry {number} has no 'wav' string: {entry!r}")
        if not isinstance(entry.get("text"), str) or not entry["text"].strip():
            raise DataError(f"{path}: entry {number} ({entry['wav']}): empty transcript")
    return entries


def find_audio_dir(corpus_dir: Path, split: str, variant: str, audio_dir: str | None) -> Path:
    if audio_dir:
        path = Path(audio_dir)
        return require_dir(path if path.is_absolute() else corpus_dir / path, "audio directory")
    per_split = corpus_dir / f"wavs_{split}"
    if per_split.is_dir():
        return per_split
    return require_dir(corpus_dir / variant, f"ClovaCall {variant} audio directory")


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    variant: str = "clean",
    splits: str | list[str] | None = None,
    audio_dir: str | None = None,
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare ClovaCall manifests (``variant``: clean or raw audio).

    Returns ``{"train"|"test" (+ "_raw"): {kind: path}}``.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"variant: {variant!r} is not one of {VARIANTS}")
    corpus_dir = require_dir(Path(corpus_dir), "ClovaCall directory")
    wanted = parse_list_option(splits, "splits") or list(SPLITS)
    unknown = [s for s in wanted if s not in SPLITS]
    if unknown:
        raise ConfigError(f"splits: unknown {unknown}; choose from {', '.join(SPLITS)}")
    written = {}
    for split in wanted:
        json_path = corpus_dir / f"{split}_ClovaCall.json"
        entries = read_json_list(json_path)
        wav_dir = find_audio_dir(corpus_dir, split, variant, audio_dir)
        items = [(Path(e["wav"]).stem, wav_dir / e["wav"]) for e in entries]
        seen: dict[str, int] = {}
        for number, (rid, _) in enumerate(items):
            if rid in seen:
                raise DataError(f"{json_path}: entry {number}: {rid} repeats entry {seen[rid]}")
            seen[rid] = number
        recordings = probe_recordings(items, num_jobs=num_jobs, desc=f"ClovaCall {split}")
        supervisions = [
            whole_recording_supervision(
                rec,
                text=entry["text"].strip(),
                language=LANGUAGE,
                speaker=str(entry["speaker_id"]) if entry.get("speaker_id") is not None else None,
                custom=None,
            )
            for rec, entry in zip(recordings, entries, strict=True)
        ]
        rates = sorted({rec.sampling_rate for rec in recordings})
        logger.info("ClovaCall %s: sampling rate(s) %s Hz", split, rates)
        name = split if variant == "clean" else f"{split}_{variant}"
        written[name] = save_segments(CORPUS, name, recordings, supervisions, output_dir)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument("--variant", default="clean", choices=VARIANTS, help="audio version")
    parser.add_argument("--splits", default=None, help="comma-separated: train,test (default)")
    parser.add_argument(
        "--audio-dir", default=None, help="audio directory (default: wavs_<split> or <variant>)"
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
