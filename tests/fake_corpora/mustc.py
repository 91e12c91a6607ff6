"""A miniature MuST-C en-de release with the real on-disk layout (en-de/data/<split>/{wav,txt})."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

# split -> talks -> (offset, duration, speaker, English, German)
SEGMENTS = {
    "train": {
        "ted_1": [
            (0.0, 1.0, "spk.1", "Hello there.", "Hallo zusammen."),
            (1.2, 0.8, "spk.1", "Thank you.", "Danke schön."),
        ],
        "ted_2": [(0.5, 1.0, "spk.2", "Good morning.", "Guten Morgen.")],
    },
    "dev": {"ted_3": [(0.1, 1.5, "spk.3", "How are you?", "Wie geht es dir?")]},
    "tst-COMMON": {
        "ted_4": [
            (0.0, 0.7, "spk.4", "Yes.", "Ja."),
            (0.9, 1.0, "spk.4", "No.", "Nein."),
        ]
    },
}
TALK_SECONDS = 2.2


def build_mustc(root: Path, tgt_lang: str = "de") -> Path:
    """Write the corpus under ``root`` and return ``root`` (the directory holding en-<tgt>)."""
    for split, talks in SEGMENTS.items():
        split_dir = root / f"en-{tgt_lang}" / "data" / split
        yaml_lines, en_lines, tgt_lines = [], [], []
        for talk, segments in talks.items():
            write_tone(split_dir / "wav" / f"{talk}.wav", TALK_SECONDS)
            for offset, duration, speaker, en, tgt in segments:
                yaml_lines.append(
                    f"- {{duration: {duration:.6f}, offset: {offset:.6f}, rW: 2, uW: 0, "
                    f"speaker_id: {speaker}, wav: {talk}.wav}}"
                )
                en_lines.append(en)
                tgt_lines.append(tgt)
        txt = split_dir / "txt"
        txt.mkdir(parents=True, exist_ok=True)
        (txt / f"{split}.yaml").write_text("\n".join(yaml_lines) + "\n", encoding="utf-8")
        (txt / f"{split}.en").write_text("\n".join(en_lines) + "\n", encoding="utf-8")
        (txt / f"{split}.{tgt_lang}").write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")
    return root
