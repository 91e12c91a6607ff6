"""A miniature Europarl-ST v1.1 en→de corpus (audios as wav: real audios are m4a)."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

SPEECH_SECONDS = {"en.20080924.23.3-130": 3.0, "en.20090115.6.3-077": 2.5}
# split -> [(speech, start, end, English, German)]
SEGMENTS = {
    "train": [
        (
            "en.20080924.23.3-130",
            0.25,
            1.5,
            "Madam President, thank you.",
            "Frau Präsidentin, danke.",
        ),
        ("en.20080924.23.3-130", 1.5, 2.96, "We agree.", "Wir stimmen zu."),
        ("en.20090115.6.3-077", 0.0, 2.0, "This is important.", "Das ist wichtig."),
    ],
    "dev": [("en.20090115.6.3-077", 0.1, 1.1, "Thank you.", "Danke.")],
    "test": [("en.20080924.23.3-130", 2.0, 2.9, "Yes.", "Ja.")],
}


def build_europarl_st(root: Path, audio_ext: str = "wav") -> Path:
    """Write ``root/v1.1/en/{audios,de/<split>}`` and return ``root/v1.1``."""
    base = root / "v1.1" / "en"
    for speech, seconds in SPEECH_SECONDS.items():
        write_tone(base / "audios" / f"{speech}.{audio_ext}", seconds, 16000)
    for split, segments in SEGMENTS.items():
        split_dir = base / "de" / split
        split_dir.mkdir(parents=True, exist_ok=True)
        lst = [f"{speech} {start:.2f} {end:.2f}" for speech, start, end, _, _ in segments]
        (split_dir / "segments.lst").write_text("\n".join(lst) + "\n", encoding="utf-8")
        en = [s[3] for s in segments]
        de = [s[4] for s in segments]
        (split_dir / "segments.en").write_text("\n".join(en) + "\n", encoding="utf-8")
        (split_dir / "segments.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    return root / "v1.1"
