"""A miniature Common Voice 13.0 release with the real layout: <locale>/{clips/*.mp3, *.tsv}."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

RELEASE = "cv-corpus-13.0-2023-03-09"
HEADER = [
    "client_id", "path", "sentence", "up_votes", "down_votes",
    "age", "gender", "accents", "variant", "locale", "segment",
]  # fmt: skip
# locale -> part -> [(clip number, sentence, up_votes, down_votes)]
CLIPS = {
    "ca": {
        "train": [
            (1, "Bon dia a tothom.", 2, 0),
            (2, "On és la biblioteca?", 5, 1),
            (3, "Fa molt de fred avui.", 3, 0),
            (4, 'M\'agrada el "pa amb tomàquet".', 5, 0),
            (5, "Tinc dos gats.", 2, 1),
            (6, "La platja és a prop.", 3, 0),
            (7, "Gràcies per tot.", 4, 2),
            (8, "Anem al mercat.", 2, 0),
        ],
        "dev": [(20, "Quina hora és?", 2, 0), (21, "Plou molt.", 3, 1), (22, "Adéu.", 3, 0)],
        "test": [(30, "Bona nit.", 2, 0), (31, "Fins demà.", 2, 0)],
    },
    "th": {
        "train": [(1, "สวัสดีครับ", 2, 0), (2, "ขอบคุณมาก", 3, 0), (3, "ไปไหนมา", 2, 0)],
        "dev": [(10, "กินข้าวหรือยัง", 2, 0)],
        "test": [(20, "ลาก่อน", 2, 0)],
    },
}


def clip_name(locale: str, number: int) -> str:
    return f"common_voice_{locale}_{3000000 + number}.mp3"


def _row(locale: str, clip: tuple[int, str, int, int]) -> list[str]:
    number, sentence, up, down = clip
    return [
        f"client{number % 3:02d}" + "0" * 60, clip_name(locale, number), sentence, str(up),
        str(down), "twenties", "female" if number % 2 else "male", "", "", locale, "",
    ]  # fmt: skip


def write_tsv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(HEADER)] + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_commonvoice(root: Path) -> Path:
    """Write the release under ``root`` and return the release directory."""
    release = root / RELEASE
    for locale, parts in CLIPS.items():
        locale_dir = release / locale
        validated = []
        for part, clips in parts.items():
            rows = [_row(locale, c) for c in clips]
            write_tsv(locale_dir / f"{part}.tsv", rows)
            validated += rows
            for number, *_ in clips:
                path = locale_dir / "clips" / clip_name(locale, number)
                write_tone(path, 0.3 + 0.01 * number, 48000, 200.0 + number, fmt="MP3")
        write_tsv(locale_dir / "validated.tsv", validated)
        write_tsv(locale_dir / "invalidated.tsv", [])
        write_tsv(locale_dir / "other.tsv", [])
    return release
