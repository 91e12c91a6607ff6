"""Shared steps of the preparers built on ``lhotse.recipes``: check, name and save manifests.

Every preparer ends with :func:`save_split`, which checks that no utterance was lost on the way
(lhotse's recipes skip files they cannot find; we never do), sets ``supervision.language`` to the
ISO 639-1 code, validates recordings against supervisions and writes, atomically::

    <output_dir>/<corpus>_recordings_<split>.jsonl.gz
    <output_dir>/<corpus>_supervisions_<split>.jsonl.gz
    <output_dir>/<corpus>_cuts_<split>.jsonl.gz
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet, validate_recordings_and_supervisions

from speechkd.errors import DataError
from speechkd.utils.atomic import save_manifest

logger = logging.getLogger(__name__)

MANIFEST_KINDS = ("recordings", "supervisions", "cuts")


def manifest_path(output_dir: str | os.PathLike, corpus: str, kind: str, split: str) -> Path:
    """``<output_dir>/<corpus>_<kind>_<split>.jsonl.gz`` (kind: recordings, supervisions, cuts)."""
    if kind not in MANIFEST_KINDS:
        raise ValueError(f"manifest kind {kind!r} is not one of {MANIFEST_KINDS}")
    return Path(output_dir) / f"{corpus}_{kind}_{split}.jsonl.gz"


def split_paths(output_dir: str | os.PathLike, corpus: str, split: str) -> dict[str, Path]:
    """The three manifest paths of one split, keyed by kind."""
    return {kind: manifest_path(output_dir, corpus, kind, split) for kind in MANIFEST_KINDS}


def require_file(path: Path, named_in: str) -> Path:
    """Return ``path`` if it is a file, else raise a DataError naming it and where it was listed."""
    if not path.is_file():
        raise DataError(f"{named_in}: audio file {path} not found")
    return path


def require_text(text: str, where: str) -> str:
    """Return ``text`` stripped; an empty transcript is a DataError naming ``where``."""
    text = text.strip()
    if not text:
        raise DataError(f"{where}: empty transcript")
    return text


def _describe(ids: Iterable[str], limit: int = 5) -> str:
    ids = sorted(ids)
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def check_same_ids(got: Iterable[str], expected: Iterable[str], what: str) -> None:
    """Raise a DataError naming the ids present on one side only."""
    got, expected = set(got), set(expected)
    missing, extra = expected - got, got - expected
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} expected but not prepared: {_describe(missing)}")
        if extra:
            parts.append(f"{len(extra)} unexpected: {_describe(extra)}")
        raise DataError(f"{what}: " + "; ".join(parts))


def save_split(
    corpus: str,
    split: str,
    recordings: RecordingSet,
    supervisions: SupervisionSet,
    output_dir: str | os.PathLike,
    *,
    language: str | None = None,
    expected_ids: Iterable[str] | None = None,
    trim_cuts: bool = False,
) -> dict[str, Path]:
    """Check, normalise and atomically save one split; return its paths keyed by kind.

    ``expected_ids``: the supervision ids the corpus lists for this split; any difference is a
    DataError. ``language``: ISO 639-1 code written to every supervision. ``trim_cuts``: make one
    cut per supervision (for long recordings with many segments) instead of one per recording.
    """
    what = f"{corpus} {split}"
    if len(supervisions) == 0:
        raise DataError(f"{what}: no utterances found")
    ids = [s.id for s in supervisions]
    if len(set(ids)) != len(ids):
        dup = [i for i, n in Counter(ids).items() if n > 1]
        raise DataError(f"{what}: duplicate supervision ids {_describe(dup)}")
    if expected_ids is not None:
        check_same_ids(ids, expected_ids, what)
    check_same_ids({s.recording_id for s in supervisions}, recordings.ids, f"{what} recordings")
    if language is not None:
        supervisions = SupervisionSet.from_segments(
            dataclasses.replace(s, language=language) for s in supervisions
        )
    try:
        validate_recordings_and_supervisions(recordings, supervisions)
    except (AssertionError, ValueError) as err:
        raise DataError(f"{what}: manifests are inconsistent: {err}") from None
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    if trim_cuts:
        cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    paths = split_paths(output_dir, corpus, split)
    save_manifest(recordings, paths["recordings"])
    save_manifest(supervisions, paths["supervisions"])
    save_manifest(cuts.to_eager(), paths["cuts"])
    logger.info(
        "%s: %d recordings, %d supervisions -> %s",
        what,
        len(recordings),
        len(supervisions),
        paths["cuts"],
    )
    return paths
