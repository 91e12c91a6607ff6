"""A miniature CSRC-2021: sets A1 (list transcripts), C1 and C2 (per-utterance .txt files)."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

# set -> speaker -> [(utterance, text)]
UTTERANCES = {
    "A1": {"S0001": [("A0001_001", "今天天气很好"), ("A0001_002", "我们去公园")]},
    "C1": {
        "G0101": [("C1_0101_001", "小猫在睡觉")],
        "G0102": [("C1_0102_001", "一二三四五"), ("C1_0102_002", "春天来了")],
    },
    "C2": {"K0201": [("C2_0201_001", "你喜欢什么颜色")]},
}


def build_csrc(root: Path) -> Path:
    """Write ``root/<set>/WAV/<speaker>/<utt>.wav`` and the transcripts; return ``root``."""
    for set_name, speakers in UTTERANCES.items():
        list_lines = []
        for speaker, utterances in speakers.items():
            for number, (utt, text) in enumerate(utterances):
                wav = write_tone(
                    root / set_name / "WAV" / speaker / f"{utt}.wav", 0.5 + 0.1 * number
                )
                if set_name.startswith("A"):
                    list_lines.append(f"{utt}\t{text}")
                else:
                    wav.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        if list_lines:
            (root / set_name / "content.txt").write_text(
                "\n".join(list_lines) + "\n", encoding="utf-8"
            )
    return root
