"""A miniature GigaSpeech: GigaSpeech.json (real field names) + audio/<source>/P*/<aid>.opus."""

from __future__ import annotations

import json
from pathlib import Path

from fake_corpora.tone import write_tone

# aid -> (source, audio subsets, [(sid suffix, begin, end, text_tn, segment subsets)])
AUDIOS = {
    "POD0000000001": (
        "podcast",
        ["{XL}", "{L}", "{M}", "{S}", "{XS}"],
        [
            (
                "S0000",
                0.2,
                1.0,
                "AS THEY'RE LEAVING <COMMA> CAN KASH PULL ZAHRA ASIDE",
                ["{XL}", "{L}", "{M}", "{S}", "{XS}"],
            ),
            ("S0001", 1.1, 1.8, "WHAT DID YOU SAY <QUESTIONMARK>", ["{XL}", "{L}"]),
        ],
    ),
    "YOU0000000002": (
        "youtube",
        ["{DEV}"],
        [
            ("S0000", 0.0, 0.9, "HELLO EVERYBODY <PERIOD>", ["{DEV}"]),
            ("S0001", 1.0, 1.9, "<MUSIC>", ["{DEV}"]),
        ],
    ),
}
SECONDS = 2.0


def build_gigaspeech(root: Path) -> Path:
    """Write ``root/GigaSpeech`` (metadata and opus audio) and return it."""
    corpus = root / "GigaSpeech"
    audios = []
    for index, (aid, (source, subsets, segments)) in enumerate(AUDIOS.items()):
        rel = f"audio/{source}/P{index:04d}/{aid}.opus"
        write_tone(corpus / rel, SECONDS, 16000, 180.0 + 40 * index, fmt="OGG")
        audios.append(
            {
                "title": f"episode {index}",
                "url": "https://example.invalid/episode",
                "path": rel,
                "aid": aid,
                "source": source,
                "channels": 1,
                "sample_rate": 16000,
                "duration": SECONDS,
                "format": "opus",
                "md5": "0" * 32,
                "speaker": "N/A",
                "subsets": subsets,
                "segments": [
                    {
                        "sid": f"{aid}_{suffix}",
                        "speaker": "N/A",
                        "begin_time": begin,
                        "end_time": end,
                        "text_tn": text,
                        "subsets": seg_subsets,
                    }
                    for suffix, begin, end, text, seg_subsets in segments
                ],
            }
        )
    meta = {"dataset": "GigaSpeech", "language": "EN", "version": "v1.0.0", "audios": audios}
    (corpus / "GigaSpeech.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return corpus
