"""Tiny deterministic audio files for the miniature corpora of the preparer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(
    path: Path,
    seconds: float,
    sampling_rate: int = 16000,
    freq: float = 220.0,
    fmt: str | None = None,
) -> Path:
    """Write a quiet sine tone of ``seconds`` to ``path`` (WAV unless ``fmt``, e.g. "MP3")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    samples = (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(path, samples, sampling_rate, format=fmt)
    return path
