"""Languages of the synthetic mini corpus: espeak-ng voice, script, orthography and word source."""

from __future__ import annotations

from dataclasses import dataclass

LATIN_BASE = "abcdefghijklmnopqrstuvwxyz"
UKRAINIAN_ALPHABET = "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя"


@dataclass(frozen=True)
class LanguageSpec:
    """How to write and speak one language.

    ``letters`` is the set of allowed characters of a word (an alphabet) or ``None`` when
    ``ranges`` (inclusive code point ranges) define the script. ``source`` is ``"wordfreq"`` or
    the name of a word list shipped in ``speechkd/data/synth/wordlists``.
    """

    code: str
    voice: str
    source: str
    letters: frozenset[str] | None = None
    ranges: tuple[tuple[int, int], ...] = ()
    cased: bool = False
    final_mark: str = "."
    word_joiner: str = " "
    min_word_chars: int = 2

    def is_word(self, word: str) -> bool:
        """True when every character of ``word`` belongs to the language's script."""
        if len(word) < self.min_word_chars:
            return False
        if self.letters is not None:
            return all(ch in self.letters for ch in word)
        return all(any(lo <= ord(ch) <= hi for lo, hi in self.ranges) for ch in word)

    def write_sentence(self, words: list[str]) -> str:
        """Natural orthography: words joined, first letter capitalised, final mark added."""
        text = self.word_joiner.join(words)
        if self.cased:
            text = text[0].upper() + text[1:]
        return text + self.final_mark


def _latin(extra: str) -> frozenset[str]:
    return frozenset(LATIN_BASE + extra)


def _english_words(words: list[str]) -> list[str]:
    return ["I" if w == "i" else w for w in words]


LANGUAGES: dict[str, LanguageSpec] = {
    spec.code: spec
    for spec in [
        LanguageSpec("en", "en-us", "wordfreq", letters=_latin(""), cased=True),
        LanguageSpec("de", "de", "wordfreq", letters=_latin("äöüß"), cased=True),
        LanguageSpec("ca", "ca", "wordfreq", letters=_latin("àèéíïòóúüç"), cased=True),
        LanguageSpec("cs", "cs", "wordfreq", letters=_latin("áčďéěíňóřšťúůýž"), cased=True),
        LanguageSpec("pl", "pl", "wordfreq", letters=_latin("ąćęłńóśźż"), cased=True),
        LanguageSpec("hu", "hu", "wordfreq", letters=_latin("áéíóöőúüű"), cased=True),
        LanguageSpec("uk", "uk", "wordfreq", letters=frozenset(UKRAINIAN_ALPHABET), cased=True),
        # Tamil letters and signs, without Tamil digits and number signs (U+0BE6-U+0BFA).
        LanguageSpec("ta", "ta", "wordfreq", ranges=((0x0B82, 0x0BD7),)),
        # Thai consonants, vowels and tone marks, without digits and the abbreviation sign.
        LanguageSpec(
            "th", "th", "th.txt", ranges=((0x0E01, 0x0E2E), (0x0E30, 0x0E4E)), final_mark=""
        ),
        # Hangul syllables.
        LanguageSpec("ko", "ko", "wordfreq", ranges=((0xAC00, 0xD7A3),)),
        # Malayalam letters, signs and chillus, without digits and number signs.
        LanguageSpec("ml", "ml", "ml.txt", ranges=((0x0D00, 0x0D65), (0x0D7A, 0x0D7F))),
        LanguageSpec("sw", "sw", "sw.txt", letters=_latin(""), cased=True),
        # Hiragana and katakana (with the long vowel mark), no middle dot.
        LanguageSpec(
            "ja",
            "ja",
            "ja.txt",
            ranges=((0x3041, 0x3096), (0x30A1, 0x30FA), (0x30FC, 0x30FC)),
            final_mark="。",
            word_joiner="",
        ),
        # CJK unified ideographs; the spoken text is the pinyin reading shipped with each word.
        LanguageSpec(
            "zh",
            "cmn-latn-pinyin",
            "zh.txt",
            ranges=((0x4E00, 0x9FFF),),
            final_mark="。",
            word_joiner="",
            min_word_chars=1,
        ),
    ]
}

#: Languages of the mini ASR corpus, in generation order.
ASR_LANGUAGES: tuple[str, ...] = tuple(LANGUAGES)


def normalise_words(lang: str, words: list[str]) -> list[str]:
    """Language-specific spelling fixes of lower-cased vocabulary (English "i" -> "I")."""
    return _english_words(words) if lang == "en" else words
