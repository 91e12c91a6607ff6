"""A miniature FLEURS with the released layout: <code>/{train,dev,test}.tsv + audio/<part>/*.wav."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

# code -> part -> [(sentence id, file number, raw transcription, transcription, gender)]
ROWS = {
    "ca_es": {
        "train": [
            (1001, 11, "Hola, món!", "hola món", "FEMALE"),
            (1001, 12, "Hola, món!", "hola món", "MALE"),
            (1002, 13, "El gat dorm.", "el gat dorm", "MALE"),
        ],
        "dev": [(1003, 21, "Bon dia.", "bon dia", "FEMALE")],
        "test": [(1004, 31, "Adéu, Joan.", "adéu joan", "MALE")],
    },
    "th_th": {
        "train": [(2001, 41, "สวัสดี", "สวัสดี", "FEMALE")],
        "dev": [(2002, 51, "ขอบคุณ", "ขอบคุณ", "MALE")],
        "test": [(2003, 61, "ลาก่อน", "ลาก่อน", "FEMALE"), (2004, 62, "ไป", "ไป", "MALE")],
    },
}
SECONDS = 0.4


def wav_name(number: int) -> str:
    return f"{10000000000000000000 + number}.wav"


def tsv_line(row: tuple[int, int, str, str, str]) -> str:
    prompt, number, raw, text, gender = row
    chars = " ".join("|".join(text.split())) + " |"
    return "\t".join(
        [str(prompt), wav_name(number), raw, text, chars, str(int(SECONDS * 16000)), gender]
    )


def build_fleurs(root: Path, lhotse_layout: bool = False) -> Path:
    """Write the corpus under ``root`` (released layout, or lhotse's download layout)."""
    for code, parts in ROWS.items():
        for part, rows in parts.items():
            tsv = (
                root / "metadata" / code / f"{part}.tsv"
                if lhotse_layout
                else root / code / f"{part}.tsv"
            )
            tsv.parent.mkdir(parents=True, exist_ok=True)
            tsv.write_text("".join(tsv_line(r) + "\n" for r in rows), encoding="utf-8")
            audio_dir = root / code / part if lhotse_layout else root / code / "audio" / part
            for row in rows:
                write_tone(audio_dir / wav_name(row[1]), SECONDS, 16000, 300.0 + row[1])
    return root
