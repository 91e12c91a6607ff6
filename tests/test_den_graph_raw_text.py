"""Denominator graphs from a raw text corpus: sampling, normalisation to the lexicon's words,
OOV policies, seeded random silence and the text/silence record in ``stats.json``."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from speechkd.bin.make_den_graph import main
from speechkd.errors import ConfigError, DataError
from speechkd.mmi.lexicon import Lexicon, read_phone_table
from speechkd.mmi.text_to_phones import TextToPhones, TextToPhonesOptions, sample_text_lines

LEXICON = "the DH AH\nthe DH IY\ncat K AE T\nsat S AE T\non AA N\nmat M AE T\n"
# a raw corpus as LibriSpeech's LM text: upper case, punctuation, a blank line
CORPUS = [
    "THE CAT SAT ON THE MAT.",
    "",
    "The mat sat on the cat!",
    "CAT, THE CAT",
    "ON THE MAT THE CAT SAT",
    "THE MAT",
] * 8


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def lang(tmp_path: Path) -> tuple[Path, Path]:
    """(lexicon.txt, corpus.txt)"""
    return write(tmp_path / "lexicon.txt", LEXICON), write(
        tmp_path / "corpus.txt", "\n".join(CORPUS) + "\n"
    )


def build(out: Path, *argv: str) -> dict:
    main(["--out-dir", str(out), "--num-extra-states", "10", "--order", "3", *argv])
    return json.loads((out / "stats.json").read_text(encoding="utf-8"))


def test_sample_is_seeded_uniform_and_in_text_order(tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(1000)]
    text = tmp_path / "big.txt.gz"
    with gzip.open(text, "wt", encoding="utf-8") as f:
        f.write("\n\n".join(lines) + "\n")  # blank lines are neither counted nor kept
    a = sample_text_lines([text], 100, seed=3)
    assert a.lines == sample_text_lines([text], 100, seed=3).lines
    assert a.lines != sample_text_lines([text], 100, seed=4).lines
    assert a.lines_read == 1000 and a.sampled and len(a.lines) == 100
    numbers = [int(line.split()[1]) for _, line in a.lines]
    assert numbers == sorted(numbers) and numbers[-1] > 500  # not the first 100 lines
    assert a.lines[0][0].startswith(f"{text}:")  # located for error messages
    whole = sample_text_lines([text], 0)
    assert len(whole.lines) == 1000 and not whole.sampled and whole.max_sentences is None
    with pytest.raises(ConfigError, match="max_sentences"):
        sample_text_lines([text], -1)


def test_raw_text_with_seeded_random_silence(tmp_path: Path, lang) -> None:
    lexicon, corpus = lang
    args = ["--text", str(corpus), "--lexicon", str(lexicon), "--seed", "5"]
    stats = build(tmp_path / "a", *args)
    again = build(tmp_path / "b", *args)
    assert again["text"] == stats["text"] and again["silence"] == stats["silence"]
    den_a = (tmp_path / "a" / "den.fst.txt").read_text()
    assert den_a == (tmp_path / "b" / "den.fst.txt").read_text()
    build(tmp_path / "c", "--text", str(corpus), "--lexicon", str(lexicon), "--seed", "6")
    assert den_a != (tmp_path / "c" / "den.fst.txt").read_text()

    text = stats["text"]
    assert text["paths"] == [str(corpus)] and text["lines_read"] == 5 * 8
    assert text["sentences"] == 5 * 8 and text["words"] == 23 * 8
    assert text["oov_tokens"] == 0 and text["oov_sentences_skipped"] == 0
    assert text["case"] == "lower" and text["sampled"] is False
    silence = stats["silence"]
    assert silence["mode"] == "random" and silence["phone"] == "SIL" and silence["seed"] == 5
    assert silence["sil_prob"] == 0.2 and silence["sil_prob_boundary"] == 0.8
    # 0.8 at both edges of the 40 sentences, 0.2 between their 144 word pairs: about 93
    assert 70 < silence["inserted"] < 120
    assert read_phone_table(tmp_path / "a" / "phones.txt")[0] == "SIL"


def test_no_silence_and_a_sentence_cap(tmp_path: Path, lang) -> None:
    lexicon, corpus = lang
    stats = build(
        tmp_path / "lang", "--text", str(corpus), "--lexicon", str(lexicon), "--silence", "none",
        "--max-sentences", "7", "--heldout-every", "0",
    )  # fmt: skip
    assert stats["silence"] == {
        "mode": "none", "phone": None, "sil_prob": 0.0, "sil_prob_boundary": 0.0, "seed": 0,
        "inserted": 0,
    }  # fmt: skip
    assert stats["text"]["sentences"] == 7 and stats["text"]["lines_read"] == 40
    assert stats["text"]["sampled"] and stats["text"]["max_sentences"] == 7
    assert "SIL" not in read_phone_table(tmp_path / "lang" / "phones.txt")


def test_upper_case_lexicon_and_oov_sentences_skipped(tmp_path: Path, lang) -> None:
    _, corpus = lang
    upper = write(tmp_path / "upper.txt", LEXICON.replace("the", "THE").replace("cat", "CAT"))
    upper = write(upper, upper.read_text().replace("sat", "SAT").replace("on ", "ON "))
    upper = write(upper, upper.read_text().replace("mat", "MAT"))
    stats = build(tmp_path / "lang", "--text", str(corpus), "--lexicon", str(upper))
    assert stats["text"]["case"] == "upper" and stats["text"]["oov_tokens"] == 0

    small = write(tmp_path / "small.txt", "the DH AH\ncat K AE T\nmat M AE T\n")
    with pytest.raises(DataError, match=r"corpus.txt:1: word 'sat' is not in the lexicon"):
        build(tmp_path / "err", "--text", str(corpus), "--lexicon", str(small))
    stats = build(
        tmp_path / "skip", "--text", str(corpus), "--lexicon", str(small), "--oov", "skip"
    )
    text = stats["text"]
    assert text["oov_policy"] == "skip" and text["sentences"] == 2 * 8  # "CAT, THE CAT", "THE MAT"
    assert text["oov_sentences_skipped"] == 3 * 8 and text["oov_types"] == 2  # sat, on
    only_oov = write(tmp_path / "oov.txt", "sat on\non sat\n")
    with pytest.raises(DataError, match="every one of the 2 sentences has a word outside"):
        build(tmp_path / "none", "--text", str(only_oov), "--lexicon", str(small), "--oov", "skip")
    with pytest.raises(ConfigError, match="oov_word"):
        build(tmp_path / "bad", "--text", str(corpus), "--lexicon", str(small), "--oov", "map")


def test_skipped_sentences_spend_no_random_draws(lang) -> None:
    lexicon = Lexicon.from_kaldi(lang[0])
    opts = TextToPhonesOptions(oov_policy="skip")
    plain = TextToPhones(lexicon, opts, seed=1).convert(["the cat", "the mat"])
    with_oov = TextToPhones(lexicon, opts, seed=1).convert(["the cat", "the dog", "the mat"])
    assert plain == with_oov


def test_lexicon_only_covers_the_sample_and_more_text(tmp_path: Path, lang) -> None:
    _, corpus = lang
    sets = write(tmp_path / "sets.txt", "a dog\n")
    out = tmp_path / "lang_phone"
    stats = build(
        out, "--lexicon-only", "--text", str(corpus), "--lexicon-text", str(sets),
        "--unit", "char", "--max-sentences", "10",
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["lexicon.txt", "phones.txt", "stats.json"]
    words = set(Lexicon.from_kaldi(out / "lexicon.txt").words)
    assert {"dog", "a", "the"} <= words
    assert read_phone_table(out / "phones.txt")[0] == "SIL"  # the den graph's phone table
    assert stats["silence"]["mode"] == "random" and stats["text"]["sentences"] == 10
    assert stats["text"]["lexicon_text"] == [str(sets)]


def _cli(*argv: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "speechkd.bin.make_den_graph", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_missing_or_empty_text_is_one_clear_line(tmp_path: Path, lang) -> None:
    lexicon, _ = lang
    missing = tmp_path / "librispeech-lm-norm.txt"
    proc = _cli("--text", str(missing), "--lexicon", str(lexicon), "--out-dir", str(tmp_path / "x"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"make_den_graph.py: error: {missing}: file not found"
    ]
    empty = write(tmp_path / "empty.txt", "\n \n")
    proc = _cli("--text", str(empty), "--lexicon", str(lexicon), "--out-dir", str(tmp_path / "y"))
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{empty}: no text (empty or blank lines only)" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
