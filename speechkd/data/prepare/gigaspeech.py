"""GigaSpeech from its ``GigaSpeech.json`` metadata, with lhotse's per-audio parser.

Layout (as released)::

    GigaSpeech/GigaSpeech.json                     {"audios": [{"aid", "path", "subsets",
    GigaSpeech/audio/{podcast,youtube,audiobook}/P*/<aid>.opus     "segments": [...], ...}]}

``lhotse.recipes.gigaspeech.prepare_gigaspeech`` needs the ``speechcolab`` package only for its
JSON iterator; this module reads the JSON itself (streaming with ``ijson`` when installed,
else ``json`` -- which holds the whole file, tens of GB for the full corpus, in memory) and
reuses lhotse's ``parse_utterance``. Manifests are written streaming and renamed at the end.
Splits are the subsets (``XL``, ``L``, ``M``, ``S``, ``XS``, ``DEV``, ``TEST``); cuts are one per
segment (``gigaspeech_cuts_DEV.jsonl.gz``); ``supervision.language`` is ``en``. Garbage
utterance tags (``<SIL>``, ``<MUSIC>``, ...) in DEV/TEST are kept as in the corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lhotse import CutSet, RecordingSet, SupervisionSet, validate_recordings_and_supervisions
from lhotse.recipes.gigaspeech import parse_utterance
from lhotse.utils import is_module_available
from tqdm.auto import tqdm

from speechkd.data.prepare.lhotse_recipe import require_file, require_text, split_paths
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

CORPUS = "gigaspeech"
LANGUAGE = "en"
SUBSETS = ("XS", "S", "M", "L", "XL", "DEV", "TEST")
DEFAULT_SUBSETS = ("XL", "DEV", "TEST")  # as lhotse's "auto"

if is_module_available("ijson"):
    from ijson.common import JSONError

    _IJSON_ERRORS: tuple[type[Exception], ...] = (JSONError,)
else:
    _IJSON_ERRORS = ()


def iter_audios(json_path: Path) -> Iterator[dict[str, Any]]:
    """The entries of ``audios`` in GigaSpeech.json (streamed with ijson when available)."""
    if not json_path.is_file():
        raise DataError(f"{json_path}: GigaSpeech metadata not found")
    try:
        if is_module_available("ijson"):
            import ijson

            with open(json_path, "rb") as f:
                yield from ijson.items(f, "audios.item", use_float=True)
        else:
            logger.warning("ijson is not installed: loading all of %s into memory", json_path)
            with open(json_path, encoding="utf-8") as f:
                yield from json.load(f)["audios"]
    except UnicodeDecodeError as err:
        raise DataError(f"{json_path}: not valid UTF-8 ({err.reason})") from None
    except _IJSON_ERRORS as err:
        if "UTF8" in str(err):
            raise DataError(f"{json_path}: not valid UTF-8 ({err})") from None
        raise DataError(f"{json_path}: not GigaSpeech metadata ({err})") from None
    except (ValueError, KeyError) as err:  # json.JSONDecodeError is a ValueError
        raise DataError(f"{json_path}: not GigaSpeech metadata ({err})") from None


def check_audio_entry(audio: dict[str, Any], corpus_dir: Path, json_path: Path) -> None:
    """Raise DataError unless the entry has the fields lhotse reads, text, and its audio file."""
    aid = audio.get("aid", "?")
    for key in ("aid", "path", "sample_rate", "channels", "duration", "subsets", "segments"):
        if key not in audio:
            raise DataError(f"{json_path}: audio {aid}: field {key!r} missing")
    require_file(corpus_dir / audio["path"], f"{json_path}: audio {aid}")
    for seg in audio["segments"]:
        sid = seg.get("sid", "?")
        for key in ("sid", "begin_time", "end_time", "text_tn", "subsets"):
            if key not in seg:
                raise DataError(f"{json_path}: audio {aid} segment {sid}: field {key!r} missing")
        require_text(seg["text_tn"], f"{json_path}: audio {aid} segment {sid}")
        seg.setdefault("speaker", "N/A")


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    subsets: Sequence[str] | str = "auto",
) -> dict[str, dict[str, Path]]:
    """Prepare manifests for the given subsets ("auto": XL, DEV, TEST) in one pass over the JSON.

    Returns ``{subset: {"recordings"|"supervisions"|"cuts": path}}``.
    """
    corpus_dir = Path(corpus_dir)
    if subsets in ("auto", ["auto"]):
        subsets = DEFAULT_SUBSETS
    elif isinstance(subsets, str):
        subsets = subsets.split()
    subsets = [s.upper() for s in subsets]
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        raise DataError(f"GigaSpeech subset(s) {unknown}: not one of {SUBSETS}")
    json_path = corpus_dir / "GigaSpeech.json"
    paths = {s: split_paths(output_dir, CORPUS, s) for s in subsets}
    counts = {s: 0 for s in subsets}
    with contextlib.ExitStack() as stack:
        writers = {}
        for subset in subsets:
            tmp = {k: stack.enter_context(atomic_path(p)) for k, p in paths[subset].items()}
            writers[subset] = {
                "recordings": stack.enter_context(RecordingSet.open_writer(tmp["recordings"])),
                "supervisions": stack.enter_context(
                    SupervisionSet.open_writer(tmp["supervisions"])
                ),
                "cuts": stack.enter_context(CutSet.open_writer(tmp["cuts"])),
            }
        for audio in tqdm(iter_audios(json_path), desc="GigaSpeech audios"):
            wanted = [s for s in subsets if "{" + s + "}" in audio.get("subsets", [])]
            if not wanted:
                continue
            check_audio_entry(audio, corpus_dir, json_path)
            for subset in wanted:
                entry = dict(audio)
                entry["segments"] = [
                    g for g in audio["segments"] if "{" + subset + "}" in g["subsets"]
                ]
                counts[subset] += _write_audio(entry, corpus_dir, writers[subset], json_path)
        empty = [s for s in subsets if counts[s] == 0]
        if empty:
            raise DataError(f"{json_path}: no segments in subset(s) {', '.join(empty)}")
    for subset in subsets:
        logger.info(
            "gigaspeech %s: %d segments -> %s", subset, counts[subset], paths[subset]["cuts"]
        )
    return paths


def _write_audio(audio: dict[str, Any], corpus_dir: Path, writers: dict, json_path: Path) -> int:
    recording, segments = parse_utterance(audio, corpus_dir)
    segments = [dataclasses.replace(s, language=LANGUAGE) for s in segments]
    recordings = RecordingSet.from_recordings([recording])
    supervisions = SupervisionSet.from_segments(segments)
    try:
        validate_recordings_and_supervisions(recordings, supervisions)
    except (AssertionError, ValueError) as err:
        raise DataError(f"{json_path}: audio {audio['aid']}: {err}") from None
    writers["recordings"].write(recording)
    for segment in segments:
        writers["supervisions"].write(segment)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    for cut in cuts.trim_to_supervisions(keep_overlapping=False):
        writers["cuts"].write(cut)
    return len(segments)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument(
        "--subsets",
        nargs="+",
        default="auto",
        help=f"subsets among {SUBSETS}, or auto (XL DEV TEST)",
    )
