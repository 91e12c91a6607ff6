"""Raw text → phone sequences for phone-LM estimation, with random pronunciations and silence.

Conventions (those of Kaldi's ``steps/nnet3/chain/e2e/text_to_phones.py``, used to build the
phone LM of end-to-end LF-MMI from text): optional silence is inserted at the start of a sentence
with probability ``sil_prob_boundary`` (default 0.8), after each word but the last with
``sil_prob`` (0.2) and after the last word with ``sil_prob_boundary`` (0.8). Kaldi's script keeps
one pronunciation per word; here every word occurrence draws one of its pronunciations at random
with the lexicon weights (uniform when the lexicon has none). icefall's
``convert_transcript_words_to_tokens.py`` inserts no silence and keeps the first pronunciation:
``sil_prob=sil_prob_boundary=0`` and a one-pronunciation lexicon reproduce it. The draws come
from one ``random.Random(seed)`` in text order, so the same text, lexicon and seed give the same
phones.

The silence symbol can be any unit, e.g. a word-boundary symbol ``|`` for character units
(``sil_prob=1``, ``sil_prob_boundary=0``). Words are the whitespace-separated tokens of a line,
lowercased (``case="upper"`` for a lexicon of upper-case words, ``"keep"``) and with
leading/trailing punctuation removed by default (tokens that are only punctuation are dropped
and counted). Out-of-vocabulary words (``oov_policy``): ``"error"`` (the default) raises a
``DataError`` naming the word and the line; ``"map"`` pronounces them as the lexicon entry
``oov_word`` (Kaldi's convention); ``"skip"`` leaves out every sentence with such a word (no
random draw is spent on it). Either way they are counted and logged.

A huge corpus can be cut to a seeded uniform sample of its lines (:func:`sample_text_lines`,
reservoir sampling while streaming the files, plain or ``.gz``).
"""

from __future__ import annotations

import logging
import os
import random
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.data.textio import iter_utf8_lines
from speechkd.errors import ConfigError, DataError
from speechkd.mmi.lexicon import Lexicon

logger = logging.getLogger(__name__)

TextSources = str | os.PathLike | Iterable[str | os.PathLike]


CASES = ("lower", "upper", "keep")
OOV_POLICIES = ("error", "map", "skip")


@dataclass
class TextToPhonesOptions:
    """How words become phones (see the module docstring for the conventions)."""

    silence: str | None = "SIL"
    sil_prob: float = 0.2
    sil_prob_boundary: float = 0.8
    oov_word: str | None = None
    case: str = "lower"
    strip_punctuation: bool = True
    oov_policy: str | None = None  # default: "map" with an oov_word, else "error"

    def __post_init__(self) -> None:
        for name in ("sil_prob", "sil_prob_boundary"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value}: must be a probability in [0, 1]")
        if self.silence is None and (self.sil_prob > 0 or self.sil_prob_boundary > 0):
            raise ConfigError("silence=None needs sil_prob=0 and sil_prob_boundary=0")
        if self.case not in CASES:
            raise ConfigError(f"case={self.case!r}: expected one of {CASES}")
        if self.oov_policy is None:
            self.oov_policy = "map" if self.oov_word is not None else "error"
        if self.oov_policy not in OOV_POLICIES:
            raise ConfigError(f"oov_policy={self.oov_policy!r}: expected one of {OOV_POLICIES}")
        if (self.oov_policy == "map") != (self.oov_word is not None):
            raise ConfigError("an oov_word goes with oov_policy='map' (and only with it)")

    @property
    def uses_silence(self) -> bool:
        return self.silence is not None and (self.sil_prob > 0 or self.sil_prob_boundary > 0)

    def silence_dict(self, seed: int) -> dict[str, object]:
        """The silence settings as recorded in a ``stats.json``."""
        return {
            "mode": "random" if self.uses_silence else "none",
            "phone": self.silence if self.uses_silence else None,
            "sil_prob": self.sil_prob if self.uses_silence else 0.0,
            "sil_prob_boundary": self.sil_prob_boundary if self.uses_silence else 0.0,
            "seed": seed,
        }


@dataclass
class TextToPhonesStats:
    sentences: int = 0
    words: int = 0
    phones: int = 0
    silences: int = 0
    blank_lines: int = 0
    punctuation_tokens: int = 0
    oov: Counter = field(default_factory=Counter)
    oov_sentences: int = 0  # left out (oov_policy="skip")

    def as_dict(self) -> dict[str, object]:
        return {
            "sentences": self.sentences,
            "words": self.words,
            "phones": self.phones,
            "silences": self.silences,
            "blank_lines": self.blank_lines,
            "punctuation_tokens": self.punctuation_tokens,
            "oov_tokens": sum(self.oov.values()),
            "oov_types": len(self.oov),
            "oov_sentences_skipped": self.oov_sentences,
        }


def _strip_punct(token: str) -> str:
    start, end = 0, len(token)
    while start < end and unicodedata.category(token[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(token[end - 1]).startswith("P"):
        end -= 1
    return token[start:end]


def split_words(
    line: str, lowercase: bool = True, strip_punctuation: bool = True, *, case: str | None = None
) -> list[str]:
    """The words of ``line``: whitespace tokens, optionally lowercased and punctuation-stripped.

    ``case`` (``lower``/``upper``/``keep``), when given, replaces ``lowercase``. Tokens that are
    only punctuation give empty strings here so that callers can count them.
    """
    tokens = line.split()
    if strip_punctuation:
        tokens = [_strip_punct(t) for t in tokens]
    case = case or ("lower" if lowercase else "keep")
    if case == "lower":
        tokens = [t.lower() for t in tokens]
    elif case == "upper":
        tokens = [t.upper() for t in tokens]
    return tokens


def iter_text_lines(sources: TextSources) -> Iterator[tuple[str, str]]:
    """Yield ``(where, line)``: a single path is a file; in an iterable, ``os.PathLike`` items are
    files (streamed; ``.gz`` decompressed), ``str`` items lines of text and ``(where, line)``
    pairs located lines (:func:`sample_text_lines`). A file without any non-blank line is a
    ``DataError``."""
    if isinstance(sources, str | os.PathLike):
        sources = [Path(sources)]
    given = 0
    for item in sources:
        if isinstance(item, os.PathLike):
            words = False
            for number, line in enumerate(iter_utf8_lines(item), start=1):
                words = words or bool(line.strip())
                yield f"{item}:{number}", line
            if not words:
                raise DataError(f"{item}: no text (empty or blank lines only)")
        elif isinstance(item, str):
            given += 1
            yield f"<line {given}>", item
        elif isinstance(item, tuple) and len(item) == 2:
            yield item
        else:
            raise DataError(f"text source {item!r}: expected a path or a line of text")


@dataclass
class TextSample:
    """The non-blank lines kept from text sources, located, in text order."""

    lines: list[tuple[str, str]]
    lines_read: int  # non-blank lines of the sources
    max_sentences: int | None

    @property
    def sampled(self) -> bool:
        return len(self.lines) < self.lines_read


def sample_text_lines(
    sources: TextSources, max_sentences: int | None = None, seed: int = 0
) -> TextSample:
    """At most ``max_sentences`` non-blank lines of ``sources`` (all when ``None`` or 0): a
    uniform sample drawn while streaming (reservoir sampling with ``random.Random(seed)``), kept
    in text order. The same sources, cap and seed give the same sample."""
    if max_sentences is not None and max_sentences < 0:
        raise ConfigError(f"max_sentences={max_sentences}: must be >= 0 (0: every line)")
    cap = max_sentences or None
    rng = random.Random(seed)
    kept: list[tuple[int, tuple[str, str]]] = []
    read = 0
    for where, line in iter_text_lines(sources):
        if not line.strip():
            continue
        if cap is None or read < cap:
            kept.append((read, (where, line)))
        else:
            slot = rng.randrange(read + 1)
            if slot < cap:
                kept[slot] = (read, (where, line))
        read += 1
    kept.sort(key=lambda item: item[0])
    if cap is not None and read > cap:
        logger.info("text: %d of %d lines sampled (seed %d)", cap, read, seed)
    return TextSample([item for _, item in kept], read, cap)


def text_vocabulary(sources: TextSources, options: TextToPhonesOptions | None = None) -> Counter:
    """Word counts of the text as :class:`TextToPhones` will split it."""
    options = options or TextToPhonesOptions()
    counts: Counter = Counter()
    for _, line in iter_text_lines(sources):
        tokens = split_words(line, strip_punctuation=options.strip_punctuation, case=options.case)
        counts.update(w for w in tokens if w)
    return counts


class TextToPhones:
    """Turns sentences into phone sequences (see the module docstring)."""

    def __init__(
        self, lexicon: Lexicon, options: TextToPhonesOptions | None = None, seed: int = 0
    ) -> None:
        self.lexicon = lexicon
        self.options = options or TextToPhonesOptions()
        if self.options.oov_word is not None and self.options.oov_word not in lexicon:
            raise ConfigError(f"oov_word {self.options.oov_word!r} is not in the lexicon")
        self.rng = random.Random(seed)
        self.stats = TextToPhonesStats()
        self._probs = {w: lexicon.probabilities(w) for w in lexicon.words}

    def _pronounce(self, word: str, where: str) -> tuple[str, ...]:
        prons = self.lexicon.entries.get(word)
        if prons is None:
            if self.options.oov_policy != "map":
                raise DataError(
                    f"{where}: word {word!r} is not in the lexicon (give an oov_word to map "
                    "unknown words to it, or skip their sentences)"
                )
            self.stats.oov[word] += 1
            word = self.options.oov_word
            prons = self.lexicon.entries[word]
        if len(prons) == 1:
            return prons[0]
        return self.rng.choices(prons, weights=self._probs[word])[0]

    def _silence(self, prob: float, out: list[str]) -> None:
        if prob > 0.0 and self.rng.random() < prob:
            assert self.options.silence is not None
            out.append(self.options.silence)
            self.stats.silences += 1

    def words_to_phones(self, words: list[str], where: str = "<text>") -> list[str]:
        """Phones of one sentence given as words."""
        opts = self.options
        out: list[str] = []
        self._silence(opts.sil_prob_boundary, out)
        for i, word in enumerate(words):
            out.extend(self._pronounce(word, where))
            self._silence(opts.sil_prob if i < len(words) - 1 else opts.sil_prob_boundary, out)
        self.stats.sentences += 1
        self.stats.words += len(words)
        self.stats.phones += len(out)
        return out

    def _skip_oov_sentence(self, words: list[str]) -> bool:
        """With ``oov_policy="skip"``: count and skip a sentence with out-of-lexicon words."""
        if self.options.oov_policy != "skip":
            return False
        oov = [w for w in words if w not in self.lexicon]
        if oov:
            self.stats.oov.update(oov)
            self.stats.oov_sentences += 1
        return bool(oov)

    def line_to_phones(self, line: str, where: str = "<text>") -> list[str] | None:
        """Phones of one line of raw text, ``None`` for a line without words (or one skipped
        for an out-of-lexicon word)."""
        tokens = split_words(
            line, strip_punctuation=self.options.strip_punctuation, case=self.options.case
        )
        words = [t for t in tokens if t]
        self.stats.punctuation_tokens += len(tokens) - len(words)
        if not words:
            self.stats.blank_lines += 1
            return None
        if self._skip_oov_sentence(words):
            return None
        return self.words_to_phones(words, where)

    def convert(self, sources: TextSources) -> list[list[str]]:
        """Phone sequences of every non-blank line of ``sources``."""
        out = []
        for where, line in iter_text_lines(sources):
            phones = self.line_to_phones(line, where)
            if phones is not None:
                out.append(phones)
        if not out:
            if self.stats.oov_sentences:
                raise DataError(
                    f"text to phones: every one of the {self.stats.oov_sentences} sentences has "
                    "a word outside the lexicon (oov_policy 'skip')"
                )
            raise DataError("text to phones: the text sources hold no words")
        self.log_stats()
        return out

    def log_stats(self) -> None:
        s = self.stats
        logger.info(
            "text to phones: %d sentences, %d words, %d phones (%d silences); %d blank lines "
            "and %d punctuation-only tokens skipped",
            s.sentences, s.words, s.phones, s.silences, s.blank_lines, s.punctuation_tokens,
        )  # fmt: skip
        if s.oov:
            if self.options.oov_policy == "map":
                action = f"mapped to {self.options.oov_word!r}"
            else:
                action = f"{s.oov_sentences} sentence(s) with them left out"
            logger.warning(
                "%d out-of-vocabulary tokens (%d types) %s, most frequent: %s",
                sum(s.oov.values()), len(s.oov), action, s.oov.most_common(5),
            )  # fmt: skip
