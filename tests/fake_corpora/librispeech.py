"""A miniature LibriSpeech part with the real layout: <part>/<spk>/<chapter>/*.flac + trans.txt."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

# (speaker, chapter) -> [(utterance number, text)]
UTTERANCES = {
    ("84", "121123"): [(0, "GO DO YOU HEAR"), (1, "BUT IN LESS THAN FIVE MINUTES")],
    ("174", "50561"): [(0, "FORGOTTEN TOO THE NAME OF GILLIAN")],
}


# librispeech-lm-norm.txt (OpenSLR 11): normalised book text, one upper-case sentence a line
LM_SENTENCES = [
    "CHAPTER ONE THE HOUSE ON THE HILL",
    "SHE HAD NEVER SEEN SO MANY STARS IN THE SKY",
    "THE OLD MAN SAT BY THE FIRE AND TOLD US A STORY",
    "WE DIDN'T KNOW WHERE THE ROAD WOULD TAKE US",
    "IT WAS LATE IN THE EVENING WHEN THEY CAME HOME",
    "HE OPENED THE DOOR AND LOOKED OUT INTO THE GARDEN",
]


def write_lm_corpus(corpus: Path) -> Path:
    """Write ``corpus/librispeech-lm-norm.txt`` (the LM corpus where the recipe looks first)."""
    path = corpus / "librispeech-lm-norm.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in LM_SENTENCES), encoding="utf-8")
    return path


def utt_id(speaker: str, chapter: str, number: int) -> str:
    return f"{speaker}-{chapter}-{number:04d}"


def build_librispeech(root: Path, part: str = "dev-clean") -> Path:
    """Write ``root/LibriSpeech/<part>`` and return ``root/LibriSpeech``."""
    corpus = root / "LibriSpeech"
    for (speaker, chapter), utts in UTTERANCES.items():
        chapter_dir = corpus / part / speaker / chapter
        lines = []
        for number, text in utts:
            uid = utt_id(speaker, chapter, number)
            write_tone(chapter_dir / f"{uid}.flac", 0.5 + 0.1 * number, 16000, 250.0, fmt="FLAC")
            lines.append(f"{uid} {text}\n")
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text(
            "".join(lines), encoding="utf-8"
        )
    return corpus
