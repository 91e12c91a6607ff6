"""Frequency-weighted vocabularies: wordfreq lists or the word lists shipped with the package."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from speechkd.data.synth.languages import LANGUAGES, LanguageSpec, normalise_words
from speechkd.errors import ConfigError, DataError

#: Words of a wordfreq language kept in the vocabulary (most frequent first, after filtering).
WORDFREQ_VOCAB_SIZE = 5000
#: Candidates read from wordfreq before the script filter.
WORDFREQ_CANDIDATES = 40000
#: Sampling weight = frequency ** FREQUENCY_EXPONENT (flattens the head a little); shipped lists
#: are ordered by frequency and get Zipf weights 1 / rank ** FREQUENCY_EXPONENT.
FREQUENCY_EXPONENT = 0.8
PINYIN_SYLLABLE = re.compile(r"^[a-z]+[1-5]$")


@dataclass(frozen=True)
class Vocabulary:
    """Words as written (``written``), as given to espeak-ng (``spoken``) and their weights."""

    lang: str
    written: tuple[str, ...]
    spoken: tuple[str, ...]
    probabilities: np.ndarray

    def __len__(self) -> int:
        return len(self.written)


def _wordlist_lines(name: str) -> list[tuple[int, str]]:
    path = resources.files("speechkd.data.synth") / "wordlists" / name
    if not path.is_file():
        raise DataError(f"word list {path} is missing from the package")
    text = path.read_text(encoding="utf-8")
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.startswith("#")
    ]


def _load_shipped(spec: LanguageSpec) -> tuple[list[str], list[str]]:
    written, spoken = [], []
    for number, line in _wordlist_lines(spec.source):
        where = f"wordlists/{spec.source}:{number}"
        if spec.code == "zh":
            hanzi, _, pinyin = line.partition("\t")
            syllables = pinyin.split()
            if len(syllables) != len(hanzi) or not all(PINYIN_SYLLABLE.match(s) for s in syllables):
                raise DataError(f"{where}: pinyin {pinyin!r} does not match {hanzi!r}")
            word, reading = hanzi, " ".join(syllables)
        else:
            word = reading = line
        if not spec.is_word(word):
            raise DataError(f"{where}: {word!r} is not a {spec.code} word in the expected script")
        if word in written:
            raise DataError(f"{where}: duplicate word {word!r}")
        written.append(word)
        spoken.append(reading)
    return written, spoken


def _load_wordfreq(spec: LanguageSpec) -> tuple[list[str], np.ndarray]:
    import wordfreq

    if spec.code not in wordfreq.available_languages():
        raise DataError(f"wordfreq has no word list for language {spec.code!r}")
    words = [w for w in wordfreq.top_n_list(spec.code, WORDFREQ_CANDIDATES) if spec.is_word(w)][
        :WORDFREQ_VOCAB_SIZE
    ]
    if len(words) < 100:
        raise DataError(f"wordfreq gives only {len(words)} {spec.code} words in its script")
    table = wordfreq.get_frequency_dict(spec.code)  # no tokenizer needed (unlike word_frequency)
    freqs = np.array([table[w] for w in words], dtype=np.float64)
    return words, freqs


@functools.cache
def load_vocabulary(lang: str) -> Vocabulary:
    """The sampling vocabulary of ``lang`` (see :data:`LANGUAGES`)."""
    if lang not in LANGUAGES:
        raise ConfigError(f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
    spec = LANGUAGES[lang]
    if spec.source == "wordfreq":
        written, freqs = _load_wordfreq(spec)
        spoken = written
        weights = np.maximum(freqs, 1e-9) ** FREQUENCY_EXPONENT
    else:
        written, spoken = _load_shipped(spec)
        weights = 1.0 / np.arange(1, len(written) + 1, dtype=np.float64) ** FREQUENCY_EXPONENT
    written = normalise_words(lang, list(written))
    spoken = normalise_words(lang, list(spoken))
    return Vocabulary(lang, tuple(written), tuple(spoken), weights / weights.sum())
