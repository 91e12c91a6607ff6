"""A miniature ClovaCall: train/test json files and a clean/ directory of 8 kHz wavs."""

from __future__ import annotations

import json
from pathlib import Path

from fake_corpora.tone import write_tone

SAMPLING_RATE = 8000
ENTRIES = {
    "train": [
        {
            "wav": "42_0603_748_0_03319_00.wav",
            "text": "단체 할인이 가능한 시간대가 따로 있나요?",
            "speaker_id": "03319",
        },
        {
            "wav": "42_0610_778_0_03607_01.wav",
            "text": "애기들이 놀만한 놀이방이 따로 있나요?",
            "speaker_id": "03607",
        },
        {"wav": "41_0514_688_0_07118_05.wav", "text": "주차 가능한가요?", "speaker_id": "07118"},
    ],
    "test": [
        {"wav": "41_0514_301_0_07111_09.wav", "text": "예약하고 싶어요.", "speaker_id": "07111"}
    ],
}


def build_clovacall(root: Path, audio_dir: str = "clean") -> Path:
    """Write ``root/{train,test}_ClovaCall.json`` and the wavs under ``root/<audio_dir>``."""
    root.mkdir(parents=True, exist_ok=True)
    for split, entries in ENTRIES.items():
        for number, entry in enumerate(entries):
            write_tone(root / audio_dir / entry["wav"], 0.4 + 0.1 * number, SAMPLING_RATE)
        (root / f"{split}_ClovaCall.json").write_text(
            json.dumps(entries, ensure_ascii=False, indent=2), encoding="utf-8"
        )
    return root
