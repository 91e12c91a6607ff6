"""Seeded sentence sampling: frequency-weighted words, short and long utterances, child speech."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speechkd.data.synth.languages import LANGUAGES
from speechkd.data.synth.vocabulary import Vocabulary, load_vocabulary
from speechkd.errors import ConfigError

#: Characters of spoken text per second at espeak-ng's default rate (175 words per minute),
#: measured on random 25-word sentences; used only to keep every utterance well below 30 s.
CHARS_PER_SECOND_AT_175 = {
    "en": 17.0, "de": 18.0, "ca": 16.0, "cs": 15.5, "pl": 15.0, "hu": 15.0, "uk": 20.0,
    "ta": 13.0, "th": 9.0, "ko": 6.5, "ml": 12.0, "sw": 13.0, "ja": 8.0, "zh": 14.0,
}  # fmt: skip
#: Slowest effective speaking rate used anywhere (words per minute, rate x tempo).
SLOWEST_RATE = 100.0
#: Planned upper bound of an utterance's duration (the hard limit is 30 s).
PLANNED_MAX_SECONDS = 22.0
FILLERS = ("um", "uh", "oh", "well")


@dataclass(frozen=True)
class LengthProfile:
    """Utterance lengths: ``short`` and ``long`` word-count ranges (inclusive) and the share of
    long utterances."""

    short: tuple[int, int] = (2, 5)
    long: tuple[int, int] = (8, 25)
    long_fraction: float = 0.5

    def sample(self, rng: np.random.Generator) -> int:
        lo, hi = self.long if rng.random() < self.long_fraction else self.short
        return int(rng.integers(lo, hi + 1))


IN_DOMAIN_LENGTHS = LengthProfile()
OOD_LENGTHS = LengthProfile(short=(4, 8), long=(12, 30), long_fraction=0.8)
CHILD_READ_LENGTHS = LengthProfile(short=(3, 6), long=(6, 12), long_fraction=0.5)
CHILD_CONVERSATIONAL_LENGTHS = LengthProfile(short=(2, 4), long=(4, 6), long_fraction=0.3)


@dataclass(frozen=True)
class Sentence:
    """One utterance's transcript (``text``), the text espeak-ng reads and its word count."""

    text: str
    spoken: str
    num_words: int


def max_spoken_chars(lang: str) -> int:
    """Longest spoken text of ``lang`` that stays below :data:`PLANNED_MAX_SECONDS`."""
    return int(PLANNED_MAX_SECONDS * CHARS_PER_SECOND_AT_175[lang] * SLOWEST_RATE / 175.0)


class SentenceSampler:
    """Samples sentences of one language from its frequency-weighted vocabulary."""

    def __init__(self, lang: str, vocabulary: Vocabulary | None = None):
        if lang not in LANGUAGES:
            raise ConfigError(f"language {lang!r} is not one of {', '.join(LANGUAGES)}")
        self.lang = lang
        self.spec = LANGUAGES[lang]
        self.vocabulary = vocabulary if vocabulary is not None else load_vocabulary(lang)
        self.max_chars = max_spoken_chars(lang)
        self._cdf = np.cumsum(self.vocabulary.probabilities)

    def _draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        idx = np.searchsorted(self._cdf, rng.random(n), side="right")
        return np.minimum(idx, len(self._cdf) - 1)

    def _indices(self, rng: np.random.Generator, num_words: int) -> list[int]:
        """Frequency-weighted word indices, redrawn where a word would repeat its neighbour."""
        idx = self._draw(rng, num_words)
        for _ in range(100):
            repeats = np.flatnonzero(idx[1:] == idx[:-1]) + 1
            if repeats.size == 0:
                break
            idx[repeats] = self._draw(rng, repeats.size)
        return [int(i) for i in idx]

    def _make(self, indices: list[int]) -> Sentence:
        vocab = self.vocabulary
        # Drop words from the end until the spoken text fits the duration budget.
        while len(indices) > 2 and len(" ".join(vocab.spoken[i] for i in indices)) > self.max_chars:
            indices = indices[:-1]
        written = [vocab.written[i] for i in indices]
        spoken = " ".join(vocab.spoken[i] for i in indices) + "."
        return Sentence(self.spec.write_sentence(written), spoken, len(indices))

    def sample(self, rng: np.random.Generator, lengths: LengthProfile) -> Sentence:
        """A sentence with a word count drawn from ``lengths``."""
        return self._make(self._indices(rng, lengths.sample(rng)))

    def sample_conversational(self, rng: np.random.Generator, lengths: LengthProfile) -> Sentence:
        """A short spontaneous-style sentence with fillers, repetitions and restarts (English)."""
        if self.lang != "en":
            raise ConfigError(f"conversational child speech is English only, not {self.lang!r}")
        vocab = self.vocabulary
        words = [vocab.written[i] for i in self._indices(rng, lengths.sample(rng))]
        if rng.random() < 0.4:  # restart: a false start of one or two words, then the sentence
            k = int(rng.integers(1, min(2, len(words)) + 1))
            words = words[:k] + words
        if rng.random() < 0.4:  # repetition of one word
            j = int(rng.integers(0, len(words)))
            words = words[: j + 1] + words[j:]
        for _ in range(1 + int(rng.random() < 0.5)):  # one or two fillers
            filler = FILLERS[int(rng.integers(0, len(FILLERS)))]
            j = int(rng.integers(0, len(words) + 1))
            words = words[:j] + [filler] + words[j:]
        return Sentence(self.spec.write_sentence(words), " ".join(words) + ".", len(words))
