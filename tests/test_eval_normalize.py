"""Whisper text normalisation per language, with the DistilWhisper script split (th, zh, ja)."""

from __future__ import annotations

import pytest

from speechkd.errors import DataError
from speechkd.eval.normalize import normalize_text, normalizer_name, split_script_characters

# (language, raw text, normalised for WER)
CASES = [
    ("ca", "L'home va dir: «Bon dia!» a les 8.", "l home va dir bon dia a les 8"),
    ("cs", "Příliš žluťoučký kůň úpěl ďábelské ódy.", "příliš žluťoučký kůň úpěl ďábelské ódy"),
    ("hu", "Árvíztűrő tükörfúrógép, igen?", "árvíztűrő tükörfúrógép igen"),
    ("pl", "Zażółć gęślą jaźń (cicho) [szum].", "zażółć gęślą jaźń"),
    # Whisper's basic normaliser turns combining marks (virama, vowel signs) into spaces.
    ("ta", "வணக்கம், உலகம்!", "வணக கம உலகம"),
    ("ml", "നമസ്കാരം, ലോകം!", "നമസ ക ര ല ക"),
    ("uk", "Привіт, світе! Як справи?", "привіт світе як справи"),
    (
        "en",
        "Mr. Smith can't pay $20 — it's twenty-five colours, um, OK?",
        "mister smith can not pay $20 it is 25 colors ok",
    ),
    ("de", "Größe: 3,5 Meter; Straße!", "größe 3 5 meter straße"),
    ("ko", "안녕하세요, 세계! 2024년", "안녕하세요 세계 2024년"),
    ("sw", "Habari ya asubuhi, rafiki?", "habari ya asubuhi rafiki"),
    ("gl", "Ola, mundo! Como estás?", "ola mundo como estás"),
    # No-space languages: script characters split, numbers and Latin words kept whole.
    ("th", "ราคา 250 บาท iPhone", "ร า ค า 250 บ า ท iphone"),
    ("th", "มี 12 คนใช้Facebook", "ม 12 ค น ใ ช facebook"),
    ("th", "ดีมาก๑๒", "ด ม า ก ๑๒"),
    ("ja", "コーヒーを2杯ください、iPhoneで。", "コ ー ヒ ー を 2 杯 く だ さ い iphone で"),
    ("zh", "我有3个苹果，iPhone也有。", "我 有 3 个 苹 果 iphone 也 有"),
    ("zh", "２０２３年", "2023 年"),
]


@pytest.mark.parametrize(("language", "raw", "expected"), CASES)
def test_normalize_per_language(language: str, raw: str, expected: str) -> None:
    assert normalize_text(raw, language) == expected


@pytest.mark.parametrize(
    ("language", "raw", "expected"),
    [
        ("th", "ราคา 250 บาท iPhone", "ราคา 250 บาท iphone"),
        ("zh", "我有3个苹果，iPhone也有。", "我有3个苹果 iphone也有"),
        ("ja", "コーヒーを2杯ください", "コーヒーを2杯ください"),
    ],
)
def test_cer_normalisation_keeps_characters_joined(language: str, raw: str, expected: str) -> None:
    assert normalize_text(raw, language, split_script=False) == expected


def test_thai_digits_and_latin_are_never_split() -> None:
    out = normalize_text("รุ่น GPT4 ปี 2566 ABC123", "th").split()
    assert "gpt4" in out and "2566" in out and "abc123" in out
    # Latin and digit runs attached to Thai characters become their own tokens.
    assert split_script_characters("abcกขdef12") == "abc ก ข def12"


def test_split_only_for_no_space_languages() -> None:
    # Korean uses spaces: Hangul is not split.
    assert normalize_text("한국어 문장", "ko") == "한국어 문장"
    # Thai text tagged with a spaced language is left to the basic normaliser.
    assert normalize_text("ราคา", "de") == "ราคา"


def test_output_is_stripped_single_spaced_and_brackets_removed() -> None:
    assert normalize_text("  Hola   <noise>  mundo [laugh] (aside)  ", "gl") == "hola mundo"
    assert normalize_text("", "en") == ""
    assert normalize_text("...", "ca") == ""


def test_english_variants_and_none_language() -> None:
    assert normalize_text("Colour", "en-GB") == "color"
    assert normalize_text("Colour, OK", None) == "colour ok"


def test_normalizer_names() -> None:
    assert normalizer_name("en") == "whisper.EnglishTextNormalizer"
    assert normalizer_name("ca") == "whisper.BasicTextNormalizer"
    assert normalizer_name("th").startswith("whisper.BasicTextNormalizer+script-split")
    assert normalizer_name("th", split_script=False) == "whisper.BasicTextNormalizer"


def test_non_string_text_is_an_error() -> None:
    with pytest.raises(DataError, match="must be str"):
        normalize_text(None, "en")  # type: ignore[arg-type]
