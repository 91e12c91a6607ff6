"""Text normalisation before scoring, as Whisper does it (openai-whisper's own normalisers).

* English: ``whisper.normalizers.EnglishTextNormalizer`` (contractions, spelled numbers, British
  spellings, fillers).
* Other languages: ``whisper.normalizers.BasicTextNormalizer`` (lower case, bracketed text removed,
  every symbol, punctuation *and combining mark* (Unicode categories M*, S*, P*) replaced by a
  space). Replacing marks is Whisper's behaviour; it breaks words of abugida scripts (ta, ml, th)
  into pieces, and it is kept so that numbers stay comparable with the papers.
* Languages written without spaces (th, zh, ja, yue, lo, my): the DistilWhisper modification of
  Whisper's ``split_letters``. Every character of those scripts becomes its own token, but runs of
  digits (Arabic or native) and of Latin (or any other) script stay whole words, so
  ``"ราคา 250 บาท iPhone"`` gives ``"ร า ค า 250 บ า ท iphone"``. A "WER" over that output is a
  character error rate over the script and a word error rate over numbers and Latin words, which
  is the paper's convention. For a plain character error rate (``split_script=False``) the
  characters are left joined and every character (spaces included) is a unit.

The output is always stripped, with single spaces between words.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import regex

from speechkd.errors import DataError

NO_SPACE_LANGUAGES = frozenset({"th", "zh", "ja", "yue", "lo", "my"})
"""ISO 639-1 (or Whisper) codes of languages written without spaces between words."""

# Characters of scripts written without spaces, digits excluded (they stay whole numbers).
_SCRIPT_CHAR = regex.compile(
    r"(?V1)[[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Myanmar}]--[\p{Nd}]]"
)
_SPACES = regex.compile(r"\s+")

NORMALIZER_NAMES = {
    "english": "whisper.EnglishTextNormalizer",
    "basic": "whisper.BasicTextNormalizer",
    "split": "whisper.BasicTextNormalizer+script-split(digits,latin kept)",
    "none": "none",
}


def _whisper_normalizers():
    """``whisper.normalizers`` without importing ``whisper`` itself (which imports torch)."""
    if "whisper" in sys.modules:
        import whisper.normalizers

        return whisper.normalizers
    name = "_speechkd_whisper_normalizers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("openai-whisper is not installed (pip install --no-deps openai-whisper)")
    directory = Path(next(iter(spec.submodule_search_locations))) / "normalizers"
    sub_spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    module = importlib.util.module_from_spec(sub_spec)
    sys.modules[name] = module
    sub_spec.loader.exec_module(module)
    return module


@cache
def _english() -> Callable[[str], str]:
    return _whisper_normalizers().EnglishTextNormalizer()


@cache
def _basic() -> Callable[[str], str]:
    return _whisper_normalizers().BasicTextNormalizer()


def normalizer_kind(language: str | None, split_script: bool = True) -> str:
    """Which normaliser ``normalize_text`` applies: "english", "basic" or "split"."""
    lang = (language or "").lower()
    if lang == "en" or lang.startswith("en-") or lang.startswith("en_"):
        return "english"
    if split_script and lang in NO_SPACE_LANGUAGES:
        return "split"
    return "basic"


def normalizer_name(language: str | None, split_script: bool = True) -> str:
    """A readable name of the normaliser used for ``language`` (recorded in score files)."""
    return NORMALIZER_NAMES[normalizer_kind(language, split_script)]


def split_script_characters(text: str) -> str:
    """Put every character of a no-space script between spaces; digits and Latin runs stay."""
    return _SPACES.sub(" ", _SCRIPT_CHAR.sub(lambda m: f" {m.group(0)} ", text)).strip()


def normalize_text(text: str, language: str | None, split_script: bool = True) -> str:
    """Normalise ``text`` of ``language`` (ISO 639-1) for WER/CER scoring.

    ``language`` None means "not English, no script split" (Whisper's basic normaliser).
    ``split_script`` False keeps the characters of no-space languages joined (for CER).
    """
    if not isinstance(text, str):
        raise DataError(f"normalize_text: text must be str, got {type(text).__name__}")
    kind = normalizer_kind(language, split_script)
    if kind == "english":
        out = _english()(text)
    else:
        out = _basic()(text)
        if kind == "split":
            out = split_script_characters(out)
    return _SPACES.sub(" ", out).strip()
