"""A miniature CoVoST 2 fr→en corpus: a Common Voice locale directory with the CoVoST tsv."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

CV_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent"]
COVOST_HEADER = ["path", "sentence", "translation", "split"]
# clip number -> (client, French sentence, English translation, CoVoST split)
CLIPS = {
    1: ("c1", "Bonjour à tous.", "Hello everyone.", "train"),
    2: ("c2", "Merci beaucoup.", "Thank you very much.", "train_covost"),
    3: ("c1", "Il fait beau.", "The weather is nice.", "train"),
    4: ("c3", "À demain !", "See you tomorrow!", "dev"),
    5: ("c4", "C'est « vrai ».", 'It is "true".', "test"),
}
# A validated clip that CoVoST does not use.
EXTRA_CV_CLIP = 6


def clip_name(number: int, src: str = "fr") -> str:
    return f"common_voice_{src}_{1000 + number}.mp3"


def build_covost2(root: Path, src: str = "fr", tgt: str = "en") -> Path:
    """Write clips (48 kHz mp3), validated.tsv and covost_v2.<src>_<tgt>.tsv under ``root``."""
    cv_rows = ["\t".join(CV_HEADER)]
    covost_rows = ["\t".join(COVOST_HEADER)]
    for number, (client, sentence, translation, split) in CLIPS.items():
        name = clip_name(number, src)
        write_tone(root / "clips" / name, 0.6 + 0.1 * number, 48000, fmt="MP3")
        cv_rows.append("\t".join([client, name, sentence, "2", "0", "", "", ""]))
        covost_rows.append("\t".join([name, sentence, translation, split]))
    extra = clip_name(EXTRA_CV_CLIP, src)
    write_tone(root / "clips" / extra, 0.5, 48000, fmt="MP3")
    cv_rows.append("\t".join(["c9", extra, "Encore.", "2", "0", "", "", ""]))
    (root / "validated.tsv").write_text("\n".join(cv_rows) + "\n", encoding="utf-8")
    (root / f"covost_v2.{src}_{tgt}.tsv").write_text(
        "\n".join(covost_rows) + "\n", encoding="utf-8"
    )
    return root
