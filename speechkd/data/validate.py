"""Checks of corpus manifests against the audio on disk, before anything is trained on them.

Recordings: every file exists, decodes, is not empty, has the manifest's (and the expected)
sampling rate, channel count and duration. Supervisions: a non-blank transcript, an existing
recording, times inside it, an existing channel. Cuts: an existing recording and supervisions,
times inside the recording. Duplicate ids are problems too. Finally lhotse's own
``validate_recordings_and_supervisions`` runs on what is kept.

By default any problem raises :class:`~speechkd.errors.DataError` listing every problem found
(each naming the item id, its file and what is wrong). With ``skip_bad=True`` bad items, and
whatever depends on them, are dropped instead; the caller logs and lists them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.cut import Cut, MonoCut
from lhotse.qa import validate_recordings_and_supervisions
from tqdm import tqdm

from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

DEFAULT_DURATION_TOLERANCE = 0.025  # seconds, lhotse's default audio duration mismatch tolerance
TIME_TOLERANCE = 1e-3  # seconds, lhotse's tolerance for supervision bounds
MAX_LISTED_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one manifest item."""

    kind: str  # "recording", "supervision" or "cut"
    item_id: str
    path: str
    reason: str
    derived: bool = False  # bad only because an item it depends on is bad

    def __str__(self) -> str:
        return f"{self.kind} {self.item_id} ({self.path}): {self.reason}"


@dataclass
class ValidationResult:
    """The manifests that passed (all of them unless skipping) and the problems found."""

    recordings: RecordingSet
    supervisions: SupervisionSet
    cuts: CutSet | None
    problems: list[Problem] = field(default_factory=list)

    def bad_counts(self) -> dict[str, int]:
        """Number of distinct bad items per kind."""
        return dict(Counter(kind for kind, _ in {(p.kind, p.item_id) for p in self.problems}))


def recording_path(recording: Recording) -> str:
    """The recording's file path(s), or its source type where it is not a file."""
    if not recording.sources:
        return "<no audio source>"
    return ", ".join(
        str(s.source) if s.type == "file" else f"<{s.type} source>" for s in recording.sources
    )


def _check_file_source(
    path: Path, channels: int, decode: bool
) -> tuple[list[str], int | None, int | None]:
    """Problems of one file source, and its (sampling rate, number of samples) when readable."""
    if not path.is_file():
        return ["audio file does not exist"], None, None
    if path.stat().st_size == 0:
        return ["audio file is empty (0 bytes)"], None, None
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        return [f"audio file cannot be decoded ({err})"], None, None
    reasons = []
    if info.frames == 0:
        reasons.append("audio file has zero length (0 samples)")
    if info.channels != channels:
        reasons.append(f"audio file has {info.channels} channel(s), the manifest says {channels}")
    if decode and info.frames > 0:
        try:
            samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as err:
            return [f"audio file cannot be decoded ({err})"], None, None
        if samples.shape[0] == 0:
            reasons.append("audio file decodes to zero samples")
        elif not np.all(np.isfinite(samples)):
            reasons.append("audio contains NaN or infinite samples")
        frames = samples.shape[0]
    else:
        frames = info.frames
    return reasons, info.samplerate, frames


def check_recording(
    recording: Recording,
    sampling_rate: int | None = None,
    duration_tolerance: float = DEFAULT_DURATION_TOLERANCE,
    decode: bool = True,
) -> list[Problem]:
    """Problems of one recording: its files against the manifest and the expected rate."""
    path = recording_path(recording)
    reasons: list[str] = []
    if not recording.sources:
        reasons.append("recording has no audio source")
    if recording.duration <= 0 or recording.num_samples <= 0:
        reasons.append(
            f"manifest duration is {recording.duration} s ({recording.num_samples} samples)"
        )
    if sampling_rate is not None and recording.sampling_rate != sampling_rate:
        reasons.append(
            f"manifest sampling rate is {recording.sampling_rate} Hz, expected {sampling_rate} Hz"
        )
    for source in recording.sources:
        if source.type != "file":
            try:
                samples = recording.load_audio()
            except Exception as err:  # any backend failure is a decoding failure
                reasons.append(f"audio cannot be loaded from its {source.type} source ({err})")
            else:
                if samples.shape[-1] == 0:
                    reasons.append("audio has zero length (0 samples)")
            continue
        file_reasons, file_rate, frames = _check_file_source(
            Path(source.source), len(source.channels), decode
        )
        prefix = f"{source.source}: " if len(recording.sources) > 1 else ""
        reasons.extend(prefix + r for r in file_reasons)
        if file_rate is None or not frames:
            continue
        if sampling_rate is not None and file_rate != sampling_rate:
            reasons.append(f"{prefix}audio file is {file_rate} Hz, expected {sampling_rate} Hz")
        if file_rate != recording.sampling_rate:
            reasons.append(
                f"{prefix}audio file is {file_rate} Hz, the manifest says "
                f"{recording.sampling_rate} Hz"
            )
        file_duration = frames / file_rate
        if abs(file_duration - recording.duration) > duration_tolerance:
            reasons.append(
                f"{prefix}audio file lasts {file_duration:.3f} s, the manifest says "
                f"{recording.duration:.3f} s (tolerance {duration_tolerance} s)"
            )
    return [Problem("recording", recording.id, path, r) for r in dict.fromkeys(reasons)]


def check_supervision(
    supervision: SupervisionSegment,
    recordings: Mapping[str, Recording],
    time_tolerance: float = TIME_TOLERANCE,
) -> list[Problem]:
    """Problems of one supervision: its transcript and its place in its recording."""
    recording = recordings.get(supervision.recording_id)
    path = recording_path(recording) if recording is not None else "<no recording>"
    reasons = []
    if supervision.text is None or not supervision.text.strip():
        reasons.append(f"transcript is empty or blank ({supervision.text!r})")
    if supervision.duration <= 0:
        reasons.append(f"duration is {supervision.duration} s")
    if recording is None:
        reasons.append(f"recording {supervision.recording_id} does not exist")
    else:
        if supervision.start < -time_tolerance or (
            supervision.end > recording.duration + time_tolerance
        ):
            reasons.append(
                f"spans [{supervision.start:.3f}, {supervision.end:.3f}] s, outside recording "
                f"{recording.id} of {recording.duration:.3f} s"
            )
        channels = supervision.channel
        channels = channels if isinstance(channels, list) else [channels]
        missing = [c for c in channels if c not in recording.channel_ids]
        if missing:
            reasons.append(
                f"channel(s) {missing} not in recording {recording.id} "
                f"(channels {recording.channel_ids})"
            )
    return [Problem("supervision", supervision.id, path, r) for r in reasons]


def check_cut(
    cut: Cut,
    recordings: Mapping[str, Recording],
    supervisions: Mapping[str, SupervisionSegment],
    time_tolerance: float = TIME_TOLERANCE,
) -> list[Problem]:
    """Problems of one cut: its recording and supervisions exist and it lies inside the audio."""
    if not isinstance(cut, MonoCut) or not cut.has_recording:
        return [Problem("cut", cut.id, "-", "not a single-recording cut (MonoCut with audio)")]
    recording = recordings.get(cut.recording_id)
    path = recording_path(recording or cut.recording)
    reasons = []
    if recording is None:
        reasons.append(f"recording {cut.recording_id} is not in the recordings manifest")
    elif cut.start < -time_tolerance or cut.end > recording.duration + time_tolerance:
        reasons.append(
            f"spans [{cut.start:.3f}, {cut.end:.3f}] s, outside recording {recording.id} "
            f"of {recording.duration:.3f} s"
        )
    for sup in cut.supervisions:
        if sup.id not in supervisions:
            reasons.append(f"supervision {sup.id} is not in the supervisions manifest")
        if sup.text is None or not sup.text.strip():
            reasons.append(f"supervision {sup.id} has an empty or blank transcript")
    return [Problem("cut", cut.id, path, r) for r in reasons]


def _duplicates(kind: str, ids: Iterable[str], paths: Iterable[str]) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for item_id, path in zip(ids, paths, strict=True):
        if item_id in seen:
            problems.append(Problem(kind, item_id, path, f"duplicate {kind} id"))
        seen.add(item_id)
    return problems


def format_problems(problems: list[Problem], limit: int = MAX_LISTED_PROBLEMS) -> str:
    """A multi-line listing of the first ``limit`` problems and how many more there are."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "\n".join(lines)


def validate_manifests(
    recordings: RecordingSet,
    supervisions: SupervisionSet,
    cuts: CutSet | None = None,
    *,
    sampling_rate: int | None = None,
    duration_tolerance: float = DEFAULT_DURATION_TOLERANCE,
    decode: bool = True,
    skip_bad: bool = False,
) -> ValidationResult:
    """Check recordings, supervisions and (optionally) cuts together.

    Raises DataError listing every problem (not those only inherited from a bad item it
    depends on), unless ``skip_bad``: then bad recordings, their
    supervisions and cuts, bad supervisions and cuts that use them are dropped and returned
    in ``ValidationResult.problems`` (items dropped only because of another item are listed
    with that reason).
    """
    recordings = recordings.to_eager()
    supervisions = supervisions.to_eager()
    cuts = cuts.to_eager() if cuts is not None else None
    problems: list[Problem] = []

    problems += _duplicates("recording", recordings.ids, map(recording_path, recordings))
    for recording in tqdm(recordings, desc="Checking recordings", disable=len(recordings) < 100):
        problems += check_recording(recording, sampling_rate, duration_tolerance, decode)
    id2rec = {r.id: r for r in recordings}
    bad_recordings = {p.item_id for p in problems if p.kind == "recording"}

    problems += _duplicates(
        "supervision",
        supervisions.ids,
        (
            recording_path(id2rec[s.recording_id]) if s.recording_id in id2rec else "-"
            for s in supervisions
        ),
    )
    for sup in supervisions:
        problems += check_supervision(sup, id2rec)
        if sup.recording_id in bad_recordings:
            path = recording_path(id2rec[sup.recording_id])
            problems.append(
                Problem("supervision", sup.id, path, f"recording {sup.recording_id} is bad", True)
            )
    id2sup = {s.id: s for s in supervisions}
    bad_supervisions = {p.item_id for p in problems if p.kind == "supervision"}

    if cuts is not None:
        problems += _duplicates("cut", cuts.ids, ("-" for _ in cuts))
        for cut in cuts:
            problems += check_cut(cut, id2rec, id2sup)
            if not isinstance(cut, MonoCut) or not cut.has_recording:
                continue
            if cut.recording_id in bad_recordings:
                problems.append(
                    Problem(
                        "cut",
                        cut.id,
                        recording_path(cut.recording),
                        f"recording {cut.recording_id} is bad",
                        derived=True,
                    )
                )
            for sup in cut.supervisions:
                if sup.id in bad_supervisions:
                    problems.append(
                        Problem(
                            "cut",
                            cut.id,
                            recording_path(cut.recording),
                            f"supervision {sup.id} is bad",
                            derived=True,
                        )
                    )

    if problems and not skip_bad:
        primary = [p for p in problems if not p.derived]
        raise DataError(f"{len(primary)} problem(s) in the manifests:\n{format_problems(primary)}")

    bad = {(p.kind, p.item_id) for p in problems}
    if problems:
        recordings = _drop_bad(recordings, "recording", bad)
        supervisions = _drop_bad(supervisions, "supervision", bad)
        if cuts is not None:
            cuts = _drop_bad(cuts, "cut", bad)

    try:
        validate_recordings_and_supervisions(recordings, supervisions, read_data=False)
    except AssertionError as err:
        raise DataError(f"lhotse validation of the manifests failed: {err}") from err
    return ValidationResult(recordings, supervisions, cuts, problems)


def _drop_bad(manifest, kind: str, bad: set[tuple[str, str]]):
    """The items whose id is not bad (every copy of a duplicated id is dropped)."""
    return manifest.filter(lambda item: (kind, item.id) not in bad).to_eager()


def check_text_file(path: str | os.PathLike) -> list[str]:
    """Read a corpus text file strictly (UTF-8), raising DataError naming file and line."""
    return read_utf8_lines(path)


def write_bad_list(problems: list[Problem], path: str | os.PathLike) -> None:
    """Write one tab-separated line per problem: kind, id, path, reason (atomically)."""
    lines = [f"{p.kind}\t{p.item_id}\t{p.path}\t{p.reason}" for p in problems]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def save_manifests_together(items: list[tuple[object, str | os.PathLike]]) -> None:
    """Save several lhotse manifests so that either all of them appear or none does."""
    with contextlib.ExitStack() as stack:
        for manifest, path in items:
            tmp = stack.enter_context(atomic_path(path))
            manifest.to_file(tmp)
