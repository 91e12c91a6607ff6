"""Tests of sentencepiece unit training and the prepare_lang CLI (sentencepiece types)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from speechkd.bin.prepare_lang import main as prepare_lang_main
from speechkd.data.units import (
    load_sentencepiece,
    read_tokens_txt,
    train_sentencepiece,
)
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_directory


def make_text(path: Path, num_lines: int = 300, seed: int = 0) -> Path:
    """Seeded pseudo-sentences from a small syllable inventory."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "tu", "ra", "si", "po", "de", "gu", "ban", "tor", "él"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(200)]
    lines = [" ".join(rng.choices(words, k=rng.randint(3, 12))) for _ in range(num_lines)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    return make_text(tmp_path / "text.txt")


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_training_is_deterministic(tmp_path: Path, text_file: Path, model_type: str) -> None:
    a = train_sentencepiece(text_file, tmp_path / "a", 100, model_type=model_type, seed=3)
    b = train_sentencepiece([text_file], tmp_path / "b", 100, model_type=model_type, seed=3)
    assert a.name == f"{model_type}.model"
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a" / "tokens.txt").read_bytes() == (
        tmp_path / "b" / "tokens.txt"
    ).read_bytes()


def test_tokens_txt_matches_model_and_symbols_come_first(tmp_path: Path, text_file: Path) -> None:
    model = train_sentencepiece(
        text_file, tmp_path / "lang", 120, user_defined_symbols=["<blk>", "<sos/eos>"]
    )
    tokens = read_tokens_txt(tmp_path / "lang" / "tokens.txt")
    sp = load_sentencepiece(tmp_path / "lang")
    assert len(tokens) == sp.get_piece_size() == 120
    assert tokens["<blk>"] == 0 and tokens["<sos/eos>"] == 1 and tokens["<unk>"] == 2
    assert all(sp.id_to_piece(i) == t for t, i in tokens.items())
    sentence = text_file.read_text(encoding="utf-8").splitlines()[0]
    ids = sp.encode(sentence)
    assert 2 not in ids  # character coverage 1.0: nothing is unknown
    assert sp.decode(ids) == sentence
    assert load_sentencepiece(model).get_piece_size() == 120


def test_lines_and_files_together(tmp_path: Path, text_file: Path) -> None:
    train_sentencepiece([text_file, "zyx wvq", "xyz"], tmp_path / "lang", 100)
    sp = load_sentencepiece(tmp_path / "lang" / "bpe.model")
    assert 0 not in sp.encode("zyx")  # the extra lines' characters are in the vocabulary


def test_char_model(tmp_path: Path, text_file: Path) -> None:
    train_sentencepiece(text_file, tmp_path / "lang", 500, model_type="char")
    tokens = read_tokens_txt(tmp_path / "lang" / "tokens.txt")
    chars = set(text_file.read_text(encoding="utf-8").replace("\n", "").replace(" ", ""))
    assert chars <= set(tokens)
    assert len(tokens) == len(chars) + 2  # + <unk> and the word boundary "▁"
    with pytest.raises(ConfigError, match="vocab_size=5: too small"):
        train_sentencepiece(text_file, tmp_path / "small", 5, model_type="char")


@pytest.mark.parametrize("vocab_size", [0, -3])
def test_non_positive_vocab_size(tmp_path: Path, text_file: Path, vocab_size: int) -> None:
    with pytest.raises(ConfigError, match=f"vocab_size={vocab_size}"):
        train_sentencepiece(text_file, tmp_path / "lang", vocab_size)


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_vocab_size_too_large(tmp_path: Path, text_file: Path, model_type: str) -> None:
    with pytest.raises(ConfigError, match=r"vocab_size=100000: .*Vocabulary size too high"):
        train_sentencepiece(text_file, tmp_path / "lang", 100_000, model_type=model_type)
    assert not (tmp_path / "lang" / f"{model_type}.model").exists()


def test_empty_text_names_the_file(tmp_path: Path, text_file: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt"):
        train_sentencepiece([text_file, empty], tmp_path / "lang", 100)
    with pytest.raises(DataError, match="missing.txt: file not found"):
        train_sentencepiece(tmp_path / "missing.txt", tmp_path / "lang", 100)
    with pytest.raises(ConfigError, match="model_type"):
        train_sentencepiece(text_file, tmp_path / "lang", 100, model_type="wordpiece")


def test_read_tokens_txt_rejects_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text("a 0\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match="tokens.txt:2"):
        read_tokens_txt(path)


def test_atomic_directory_keeps_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "lang"
    with atomic_directory(target) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "x").write_text("2")
            raise RuntimeError("boom")
    assert (target / "x").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lang"]


def test_cli_bpe(tmp_path: Path) -> None:
    texts = [make_text(tmp_path / f"t{i}.txt", seed=i) for i in range(2)]
    out = tmp_path / "data" / "lang_bpe_100"
    argv = ["--type", "bpe", "--vocab-size", "100", "--out-dir", str(out)]
    for text in texts:
        argv += ["--text", str(text)]
    prepare_lang_main(argv)
    first = (out / "bpe.model").read_bytes()
    tokens = read_tokens_txt(out / "tokens.txt")
    assert tokens["<blk>"] == 0 and tokens["<sos/eos>"] == 1 and len(tokens) == 100
    prepare_lang_main(argv)  # rerun replaces the directory with the same content
    assert (out / "bpe.model").read_bytes() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["lang_bpe_100"]
    assert sorted(p.name for p in out.iterdir()) == ["bpe.model", "tokens.txt"]
    with pytest.raises(ConfigError, match="--text"):
        prepare_lang_main(["--type", "bpe", "--vocab-size", "100", "--out-dir", str(out)])
