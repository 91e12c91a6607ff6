"""Shared pieces of our own preparers (MuST-C, CoVoST 2, Europarl-ST, CSRC, ClovaCall).

Every preparer turns a corpus on disk into lhotse manifests
``<output_dir>/<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz`` (saved atomically by
``lhotse_recipe.save_split``). The cuts hold one cut per supervision (``cut.id ==
supervision.id``), so long recordings (a TED talk, a parliament speech) and one-utterance files
(a CommonVoice clip) come out the same way.

Bad input raises :class:`~speechkd.errors.DataError` naming the file (and line or entry). Skipping
is never implicit: where a preparer offers it, it is an option, and the count is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.utils import fastcopy
from tqdm.auto import tqdm

from speechkd.data.prepare.lhotse_recipe import save_split
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# A supervision may end this far (seconds) past the end of its audio; it is then clipped to the
# audio and counted. Segment times in corpora are rounded and encoded audio (mp3, m4a) may be a
# few frames shorter than the transcriber's tool saw. Anything further is an error.
END_TOLERANCE = 0.5


def parse_list_option(value: str | Sequence[str] | None, name: str) -> list[str] | None:
    """A list option given as a Python list or as a comma-separated string (from a CLI)."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [str(item).strip() for item in items if str(item).strip()]
    if not items:
        raise ConfigError(f"{name}: empty list")
    return items


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a DataError naming it."""
    if not path.is_dir():
        raise DataError(f"{path}: {what} not found (not a directory)")
    return path


def read_text_lines(path: Path, skip_empty: bool = False) -> list[str]:
    """Stripped lines of a UTF-8 text file; an empty line is an error naming ``file:line``.

    With ``skip_empty`` the caller is responsible for handling ``""`` entries (they are kept so
    that line-aligned files stay aligned).
    """
    lines = [line.strip() for line in read_utf8_lines(path)]
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0].lstrip("\ufeff").strip()
    if not skip_empty:
        for number, line in enumerate(lines, start=1):
            if not line:
                raise DataError(f"{path}:{number}: empty transcript line")
    return lines


def check_aligned(named_lengths: dict[Path, int]) -> None:
    """Line-aligned files (segment list, transcript, translation) must have equal lengths."""
    if len(set(named_lengths.values())) > 1:
        counts = ", ".join(f"{path} has {n}" for path, n in named_lengths.items())
        raise DataError(f"line counts differ between files that must be aligned: {counts}")


def check_unique_ids(ids: Iterable[str], where: str) -> None:
    """Ids within one split must be unique."""
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise DataError(f"{where}: duplicate id {item!r}")
        seen.add(item)


def probe_recording(path: Path, recording_id: str) -> Recording:
    """A Recording from an audio file's header; a missing or unreadable file is a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: audio file not found (recording {recording_id!r})")
    try:
        return Recording.from_file(path, recording_id=recording_id)
    except Exception as err:  # lhotse wraps every backend failure in AudioLoadingError
        raise DataError(f"{path}: cannot read audio header ({type(err).__name__}: {err})") from err


def probe_recordings(
    items: Sequence[tuple[str, Path]], num_jobs: int = 1, desc: str = "audio headers"
) -> list[Recording]:
    """Recordings for ``(recording_id, path)`` pairs, in order; headers are read by threads."""
    if num_jobs < 1:
        raise ConfigError(f"num_jobs: must be >= 1, got {num_jobs}")
    if num_jobs == 1:
        return [probe_recording(path, rid) for rid, path in tqdm(items, desc=desc, leave=False)]
    with ThreadPoolExecutor(max_workers=num_jobs) as pool:
        results = pool.map(lambda item: probe_recording(item[1], item[0]), items)
        return list(tqdm(results, total=len(items), desc=desc, leave=False))


def fit_to_recordings(
    supervisions: Sequence[SupervisionSegment],
    recordings: dict[str, Recording],
    where: str,
    tolerance: float = END_TOLERANCE,
) -> list[SupervisionSegment]:
    """Check every supervision lies inside its recording; clip ends overshooting by <= tolerance.

    A supervision starting outside its audio, or ending more than ``tolerance`` seconds after
    it, is a DataError naming the segment and audio file.
    """
    fitted = []
    clipped = 0
    for sup in supervisions:
        rec = recordings.get(sup.recording_id)
        if rec is None:
            raise DataError(f"{where}: segment {sup.id!r}: unknown audio {sup.recording_id!r}")
        audio = rec.sources[0].source
        if sup.start < 0 or sup.duration <= 0 or sup.start >= rec.duration:
            raise DataError(
                f"{where}: segment {sup.id!r} (start {sup.start:.3f} s, duration "
                f"{sup.duration:.3f} s) lies outside {audio} ({rec.duration:.3f} s)"
            )
        overshoot = sup.end - rec.duration
        if overshoot > tolerance:
            raise DataError(
                f"{where}: segment {sup.id!r} ends at {sup.end:.3f} s, {overshoot:.3f} s after "
                f"the end of {audio} ({rec.duration:.3f} s)"
            )
        if overshoot > 0:
            sup = fastcopy(sup, duration=round(rec.duration - sup.start, 6))
            clipped += 1
        fitted.append(sup)
    if clipped:
        logger.info(
            "%s: clipped %d segment end(s) overshooting their audio by <= %.2f s",
            where,
            clipped,
            tolerance,
        )
    return fitted


def whole_recording_supervision(
    recording: Recording, text: str, language: str, speaker: str | None, custom: dict | None
) -> SupervisionSegment:
    """A supervision covering a whole one-utterance recording, with the recording's id."""
    return SupervisionSegment(
        id=recording.id,
        recording_id=recording.id,
        start=0.0,
        duration=recording.duration,
        channel=recording.channel_ids[0] if len(recording.channel_ids) == 1 else 0,
        text=text,
        language=language,
        speaker=speaker,
        custom=custom,
    )


def save_segments(
    corpus: str,
    split: str,
    recordings: Sequence[Recording],
    supervisions: Sequence[SupervisionSegment],
    output_dir: str | os.PathLike,
) -> dict[str, Path]:
    """Save one split with :func:`~speechkd.data.prepare.lhotse_recipe.save_split`, one cut per
    supervision (``cut.id == supervision.id``); returns the paths keyed by kind."""
    check_unique_ids((r.id for r in recordings), f"{corpus} {split} recordings")
    return save_split(
        corpus,
        split,
        RecordingSet.from_recordings(recordings),
        SupervisionSet.from_segments(supervisions),
        output_dir,
        trim_cuts=True,
    )
