"""Lhotse manifests of the synthetic corpora."""

from __future__ import annotations

from pathlib import Path

from lhotse import (
    AudioSource,
    CutSet,
    MonoCut,
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
)

from speechkd.data.synth.espeak import SAMPLE_RATE
from speechkd.data.synth.plan import UtterancePlan
from speechkd.utils.atomic import save_manifest


def manifest_path(output_dir: str | Path, corpus: str, kind: str, split: str) -> Path:
    """``<output>/manifests/<corpus>_<kind>_<split>.jsonl.gz`` (kind: recordings, ...)."""
    return Path(output_dir) / "manifests" / f"{corpus}_{kind}_{split}.jsonl.gz"


def build_manifests(
    plans: list[UtterancePlan], num_samples: dict[str, int], output_dir: str | Path
) -> tuple[RecordingSet, SupervisionSet, CutSet]:
    """Recordings (real durations), supervisions (text, language, speaker, custom) and cuts
    (one per recording, same id, no features)."""
    recordings, supervisions = [], []
    for p in plans:
        n = num_samples[p.utt_id]
        source = str(Path(output_dir) / p.wav_relpath)
        recordings.append(
            Recording(
                id=p.utt_id,
                sources=[AudioSource(type="file", channels=[0], source=source)],
                sampling_rate=SAMPLE_RATE,
                num_samples=n,
                duration=n / SAMPLE_RATE,
            )
        )
        supervisions.append(
            SupervisionSegment(
                id=p.utt_id,
                recording_id=p.utt_id,
                start=0.0,
                duration=n / SAMPLE_RATE,
                channel=0,
                text=p.text,
                language=p.lang,
                speaker=p.speaker.speaker_id,
                custom=dict(p.custom),
            )
        )
    cuts = [
        MonoCut(id=r.id, start=0.0, duration=r.duration, channel=0, recording=r, supervisions=[s])
        for r, s in zip(recordings, supervisions, strict=True)
    ]
    return (
        RecordingSet.from_recordings(recordings),
        SupervisionSet.from_segments(supervisions),
        CutSet.from_cuts(cuts),
    )


def write_manifests(
    output_dir: str | Path,
    corpus: str,
    split: str,
    manifests: tuple[RecordingSet, SupervisionSet, CutSet],
) -> list[Path]:
    """Save the three manifests of (corpus, split) atomically; returns their paths."""
    paths = []
    for kind, manifest in zip(("recordings", "supervisions", "cuts"), manifests, strict=True):
        path = manifest_path(output_dir, corpus, kind, split)
        save_manifest(manifest, path)
        paths.append(path)
    return paths
