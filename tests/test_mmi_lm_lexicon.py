"""Lexicons (Kaldi, CMUdict, espeak-ng, characters, BPE) and text → phones."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.lexicon import (
    Lexicon,
    bpe_lexicon,
    char_lexicon,
    espeak_lexicon,
    make_phone_table,
    parse_espeak_line,
    read_phone_table,
    resolve_espeak_voices,
    write_phone_table,
)
from speechkd.mmi.text_to_phones import TextToPhones, TextToPhonesOptions, split_words

CMUDICT_EXCERPT = """\
;;; # CMUdict  --  Major Version: 0.07
;;; a comment line
READ  R EH1 D
READ(2)  R IY1 D
RECORD  R AH0 K AO1 R D
RECORD(2)  R EH1 K ER0 D
THE  DH AH0
THE(2)  DH IY0
CAT  K AE1 T
tomato T AH0 M EY1 T OW2 # with a trailing comment
"""


def test_cmudict_variants_stress_and_comments():
    lex = Lexicon.from_cmudict(CMUDICT_EXCERPT.splitlines())
    assert lex["read"] == [("R", "EH", "D"), ("R", "IY", "D")]
    assert lex["record"] == [("R", "AH", "K", "AO", "R", "D"), ("R", "EH", "K", "ER", "D")]
    assert lex["tomato"] == [("T", "AH", "M", "EY", "T", "OW")]
    assert len(lex) == 5 and lex.num_prons == 8
    stressed = Lexicon.from_cmudict(CMUDICT_EXCERPT.splitlines(), strip_stress=False)
    assert stressed["cat"] == [("K", "AE1", "T")]
    upper = Lexicon.from_cmudict(CMUDICT_EXCERPT.splitlines(), lowercase=False)
    assert "CAT" in upper and "cat" not in upper
    with pytest.raises(DataError, match="<cmudict lines>:1"):
        Lexicon.from_cmudict(["LONELYWORD"])


def test_kaldi_lexicon_round_trip(tmp_path: Path):
    path = tmp_path / "lexicon.txt"
    path.write_text("hello h ə l oʊ\nhello h ɛ l oʊ\n\nworld w ɜː l d\n", encoding="utf-8")
    lex = Lexicon.from_kaldi(path)
    assert lex["hello"] == [("h", "ə", "l", "oʊ"), ("h", "ɛ", "l", "oʊ")]
    assert lex.phones == sorted({"h", "ə", "l", "oʊ", "ɛ", "w", "ɜː", "d"})
    out = tmp_path / "out" / "lexicon.txt"
    lex.write_kaldi(out)
    assert Lexicon.from_kaldi(out).entries == lex.entries

    probs = tmp_path / "lexiconp.txt"
    probs.write_text("a 1.0 AH\na 0.5 EY\nb 1.0 B IY\n", encoding="utf-8")
    lexp = Lexicon.from_kaldi(probs)
    assert lexp["a"] == [("AH",), ("EY",)]
    assert lexp.probabilities("a") == pytest.approx([2 / 3, 1 / 3])
    lexp.write_kaldi(tmp_path / "lexiconp2.txt", with_probs=True)
    again = Lexicon.from_kaldi(tmp_path / "lexiconp2.txt", with_probs=True)
    assert again.weights == lexp.weights

    bad = tmp_path / "bad_lexiconp.txt"
    bad.write_text("a AH EY\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad_lexiconp.txt:1: probability 'AH'"):
        Lexicon.from_kaldi(bad, with_probs=True)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt: empty lexicon"):
        Lexicon.from_kaldi(empty)


def test_phone_table_silence_first_and_round_trip(tmp_path: Path):
    table = make_phone_table(["b", "a", "SIL", "c"], silence="SIL")
    assert table == ["SIL", "a", "b", "c"]
    assert make_phone_table(["b", "a"], silence=None) == ["a", "b"]
    write_phone_table(tmp_path / "phones.txt", table)
    assert (tmp_path / "phones.txt").read_text().splitlines()[:2] == ["<eps> 0", "SIL 1"]
    assert read_phone_table(tmp_path / "phones.txt") == table


def test_char_and_bpe_lexicons(tmp_path: Path):
    lex = char_lexicon(["cat", "até"])
    assert lex["até"] == [("a", "t", "é")]
    spm = pytest.importorskip("sentencepiece")
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp_path / "bpe"), vocab_size=25, model_type="bpe",
        minloglevel=2, num_threads=1,
    )  # fmt: skip
    bpe = bpe_lexicon(["cat", "the", "mat"], tmp_path / "bpe.model")
    for word in ("cat", "the", "mat"):
        (pron,) = bpe[word]
        assert "".join(pron).replace("▁", "") == word
    with pytest.raises(DataError, match="missing.model"):
        bpe_lexicon(["cat"], tmp_path / "missing.model")


def test_parse_espeak_line():
    assert parse_espeak_line("h ə l ˈəʊ") == ("h", "ə", "l", "əʊ")
    assert parse_espeak_line("h ə l ˈəʊ", keep_stress=True) == ("h", "ə", "l", "ˈəʊ")
    assert parse_espeak_line(" (en) b ˈɒ n (de) ʃ ˈɛ") == ("b", "ɒ", "n", "ʃ", "ɛ")
    assert resolve_espeak_voices("en") == ("en-us",)
    assert resolve_espeak_voices("en-us,en-gb") == ("en-us", "en-gb")
    with pytest.raises(ConfigError):
        resolve_espeak_voices(" , ")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_lexicon_english_german_and_variants(tmp_path: Path):
    cache = tmp_path / "espeak.json"
    en = espeak_lexicon(["cat", "dog", "the"], "en", cache_file=cache)
    assert en["cat"] == [("k", "æ", "t")]
    assert en["dog"][0][0] == "d" and len(en["dog"][0]) >= 3
    assert cache.is_file() and "cat" in cache.read_text(encoding="utf-8")
    de = espeak_lexicon(["haus", "straße"], "de")
    assert de["haus"] == [("h", "aʊ", "s")]
    assert de["straße"][0][:2] == ("ʃ", "t")
    # two voices: American and New York English differ on "and"
    both = espeak_lexicon(["and", "cat"], "en-us,en-us-nyc")
    assert len(both["and"]) == 2 and both["and"][0] != both["and"][1]
    assert len(both["cat"]) >= 1


def _tiny_lexicon() -> Lexicon:
    lex = Lexicon()
    lex.add("the", ("DH", "AH"))
    lex.add("the", ("DH", "IY"))
    lex.add("cat", ("K", "AE", "T"))
    lex.add("sat", ("S", "AE", "T"))
    lex.add("<unk>", ("SPN",))
    return lex


def test_split_words():
    assert split_words("The cat, sat. — (Don't)!") == ["the", "cat", "sat", "", "don't"]
    assert split_words("The Cat", lowercase=False) == ["The", "Cat"]


def test_text_to_phones_is_seeded_and_follows_probabilities():
    lines = ["the cat sat the cat"] * 2000
    opts = TextToPhonesOptions(sil_prob=0.2, sil_prob_boundary=0.8)
    a = TextToPhones(_tiny_lexicon(), opts, seed=7).convert(lines)
    b = TextToPhones(_tiny_lexicon(), opts, seed=7).convert(lines)
    c = TextToPhones(_tiny_lexicon(), opts, seed=8).convert(lines)
    assert a == b and a != c
    starts = sum(s[0] == "SIL" for s in a) / len(a)
    ends = sum(s[-1] == "SIL" for s in a) / len(a)
    assert 0.77 < starts < 0.83 and 0.77 < ends < 0.83
    between = sum(s.count("SIL") for s in a) - sum(s[0] == "SIL" for s in a)
    between -= sum(s[-1] == "SIL" for s in a)
    assert 0.18 < between / (4 * len(a)) < 0.22
    vowels = Counter(p for s in a for p in s if p in ("AH", "IY"))
    assert 0.45 < vowels["AH"] / (vowels["AH"] + vowels["IY"]) < 0.55
    none = TextToPhones(_tiny_lexicon(), TextToPhonesOptions(sil_prob=0, sil_prob_boundary=0))
    assert "SIL" not in {p for s in none.convert(lines[:50]) for p in s}


def test_text_to_phones_weights_from_lexiconp():
    lex = Lexicon()
    lex.add("a", ("AH",), 1.0)
    lex.add("a", ("EY",), 0.25)
    opts = TextToPhonesOptions(sil_prob=0, sil_prob_boundary=0)
    phones = [s[0] for s in TextToPhones(lex, opts, seed=0).convert(["a"] * 5000)]
    assert 0.77 < phones.count("AH") / len(phones) < 0.83


def test_oov_is_named_or_mapped_with_a_count(tmp_path: Path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat\nthe dog sat\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"text.txt:2: word 'dog' is not in the lexicon"):
        TextToPhones(_tiny_lexicon()).convert(text)
    conv = TextToPhones(_tiny_lexicon(), TextToPhonesOptions(oov_word="<unk>"))
    out = conv.convert(text)
    assert conv.stats.oov == Counter({"dog": 1})
    assert "SPN" in out[1]
    with pytest.raises(ConfigError, match="oov_word"):
        TextToPhones(_tiny_lexicon(), TextToPhonesOptions(oov_word="<nope>"))


def test_empty_text_file_is_named(tmp_path: Path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt: no text"):
        TextToPhones(_tiny_lexicon()).convert(empty)
    with pytest.raises(DataError, match="missing.txt: file not found"):
        TextToPhones(_tiny_lexicon()).convert(tmp_path / "missing.txt")


def test_bad_options():
    with pytest.raises(ConfigError, match="sil_prob"):
        TextToPhonesOptions(sil_prob=1.5)
    with pytest.raises(ConfigError, match="silence=None"):
        TextToPhonesOptions(silence=None)


def test_load_lexicon_specs(tmp_path: Path):
    from speechkd.mmi.denominator import load_lexicon

    cmu = tmp_path / "cmudict.dict"
    cmu.write_text(CMUDICT_EXCERPT, encoding="utf-8")
    assert load_lexicon(f"cmudict:{cmu}", ["cat"])["read"][1] == ("R", "IY", "D")
    assert load_lexicon(f"cmudict:{cmu}", keep_stress=True)["cat"] == [("K", "AE1", "T")]
    kaldi = tmp_path / "lexicon.txt"
    kaldi.write_text("cat k a t\n", encoding="utf-8")
    assert load_lexicon(kaldi)["cat"] == [("k", "a", "t")]
    assert load_lexicon("ignored", ["ab", "c"], unit="char").entries == {
        "ab": [("a", "b")],
        "c": [("c",)],
    }
    with pytest.raises(ConfigError, match="unit="):
        load_lexicon("x", ["a"], unit="word")
    with pytest.raises(ConfigError, match="bpe_model"):
        load_lexicon("x", ["a"], unit="bpe")


def test_char_units_with_a_word_boundary_symbol():
    from speechkd.mmi.denominator import build_phone_lm
    from speechkd.mmi.phone_lm import is_stochastic

    lines = ["the cat sat", "a cat", "the mat"]
    lex = char_lexicon({w for line in lines for w in line.split()})
    opts = TextToPhonesOptions(silence="|", sil_prob=1.0, sil_prob_boundary=0.0)
    assert TextToPhones(lex, opts).convert(lines)[1] == ["a", "|", "c", "a", "t"]
    result = build_phone_lm(lines, lex, order=3, silence="|", sil_prob=1.0, sil_prob_boundary=0.0)
    assert result.phones == ["|", "a", "c", "e", "h", "m", "s", "t"]
    assert is_stochastic(result.lm) and result.lm.max_label == 8
