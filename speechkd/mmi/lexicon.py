"""Pronunciation lexicons and phone symbol tables for phone language models.

A :class:`Lexicon` maps a word to one or more pronunciations (tuples of unit symbols: phones,
characters or BPE pieces), each with a weight (a pronunciation probability; 1.0 when the source
has none). Sources:

* Kaldi ``lexicon.txt`` (``word p1 p2 ...``) and ``lexiconp.txt`` (``word prob p1 p2 ...``),
  read and written by :meth:`Lexicon.from_kaldi` and :meth:`Lexicon.write_kaldi`;
* CMUdict data (``WORD  P1 P2``, variants ``WORD(2)  P1 P2``, ``;;;`` comment lines, optional
  trailing ``# comment``; stress digits stripped by default): :meth:`Lexicon.from_cmudict`;
* espeak-ng for any language it speaks (:class:`EspeakPhonemizer`, :func:`espeak_lexicon`):
  IPA phones, one pronunciation per voice (several voices of a language give variants);
* deterministic "pronunciations" for character units (:func:`char_lexicon`) and sentencepiece
  pieces (:func:`bpe_lexicon`).

Phone symbol table (``phones.txt``, Kaldi/OpenFst convention): ``<eps> 0``, then the phones with
ids ``1 .. N``. These ids are the labels of the phone LM acceptor and the phones of the topology
(:mod:`speechkd.mmi.topology`: phone ``p`` of the LM is phone ``p`` of ``ctc_topo(N)`` /
``chain_topo(N)``); the LM is written as OpenFst text with ``Fsa.to_openfst(label_offset=0)``.
In Python a table is the list of symbols without ``<eps>``: ``phones[i]`` has id ``i + 1``.
:func:`make_phone_table` puts the optional-silence phone first (id 1) and the other units after
it in sorted order.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.data.textio import read_utf8_lines
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

Pronunciation = tuple[str, ...]

EPSILON = "<eps>"
_CMU_VARIANT = re.compile(r"^(.+)\((\d+)\)$")
_STRESS_DIGITS = re.compile(r"(?<=[A-Za-z])[012]$")


@dataclass
class Lexicon:
    """Word → pronunciations (tuples of unit symbols) with weights, in insertion order."""

    entries: dict[str, list[Pronunciation]] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)

    def add(self, word: str, pron: Sequence[str], weight: float = 1.0) -> None:
        """Add a pronunciation of ``word``; a repeated one keeps the larger weight."""
        pron = tuple(pron)
        if not pron:
            raise DataError(f"lexicon word {word!r}: empty pronunciation")
        if not word or any(ch.isspace() for ch in word):
            raise DataError(f"lexicon word {word!r}: words must be non-empty without whitespace")
        if any(not p or any(ch.isspace() for ch in p) for p in pron):
            raise DataError(f"lexicon word {word!r}: bad unit in pronunciation {pron!r}")
        if not (weight > 0.0 and math.isfinite(weight)):
            raise DataError(f"lexicon word {word!r}: pronunciation weight {weight} is not > 0")
        prons = self.entries.setdefault(word, [])
        weights = self.weights.setdefault(word, [])
        if pron in prons:
            i = prons.index(pron)
            weights[i] = max(weights[i], weight)
        else:
            prons.append(pron)
            weights.append(weight)

    def __contains__(self, word: object) -> bool:
        return word in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, word: str) -> list[Pronunciation]:
        return self.entries[word]

    @property
    def words(self) -> list[str]:
        return list(self.entries)

    @property
    def num_prons(self) -> int:
        return sum(len(p) for p in self.entries.values())

    @property
    def phones(self) -> list[str]:
        """The sorted set of units used by the pronunciations."""
        return sorted({p for prons in self.entries.values() for pron in prons for p in pron})

    def probabilities(self, word: str) -> list[float]:
        """The pronunciation weights of ``word`` normalised to sum to 1."""
        w = self.weights[word]
        total = sum(w)
        return [x / total for x in w]

    def merge(self, other: Lexicon) -> Lexicon:
        """A new lexicon with the pronunciations of both (``self`` first)."""
        out = Lexicon()
        for lex in (self, other):
            for word, prons in lex.entries.items():
                for pron, weight in zip(prons, lex.weights[word], strict=True):
                    out.add(word, pron, weight)
        return out

    # ---------------------------------------------------------------- Kaldi lexicon files
    @classmethod
    def from_kaldi(cls, path: str | os.PathLike, with_probs: bool | None = None) -> Lexicon:
        """Read ``lexicon.txt`` or (``with_probs``) ``lexiconp.txt``.

        ``with_probs=None`` decides by the file name (``lexiconp*`` has probabilities).
        """
        path = Path(path)
        if with_probs is None:
            with_probs = path.name.startswith("lexiconp")
        lex = cls()
        for number, line in enumerate(read_utf8_lines(path), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{number}"
            if with_probs:
                if len(fields) < 3:
                    raise DataError(f"{where}: expected 'word prob phone ...', got {line!r}")
                try:
                    weight = float(fields[1])
                except ValueError:
                    raise DataError(f"{where}: probability {fields[1]!r} is not a number") from None
                pron = fields[2:]
            else:
                if len(fields) < 2:
                    raise DataError(f"{where}: expected 'word phone ...', got {line!r}")
                weight, pron = 1.0, fields[1:]
            try:
                lex.add(fields[0], pron, weight)
            except DataError as err:
                raise DataError(f"{where}: {err}") from None
        if not lex.entries:
            raise DataError(f"{path}: empty lexicon")
        return lex

    def to_kaldi_text(self, with_probs: bool = False) -> str:
        """``lexicon.txt`` (or ``lexiconp.txt`` with weights normalised to a maximum of 1)."""
        lines = []
        for word, prons in self.entries.items():
            top = max(self.weights[word])
            for pron, weight in zip(prons, self.weights[word], strict=True):
                if with_probs:
                    lines.append(f"{word} {weight / top:.6g} {' '.join(pron)}")
                else:
                    lines.append(f"{word} {' '.join(pron)}")
        return "".join(line + "\n" for line in lines)

    def write_kaldi(self, path: str | os.PathLike, with_probs: bool = False) -> None:
        """Write ``lexicon.txt`` / ``lexiconp.txt`` atomically."""
        atomic_write_text(path, self.to_kaldi_text(with_probs))

    # ---------------------------------------------------------------- CMUdict
    @classmethod
    def from_cmudict(
        cls,
        source: str | os.PathLike | Iterable[str],
        strip_stress: bool = True,
        lowercase: bool = True,
    ) -> Lexicon:
        """Parse CMUdict data from a file path or an iterable of lines.

        ``WORD(2)`` lines add a variant of ``WORD``; stress digits (``AH0``) are removed with
        ``strip_stress``; words are lowercased with ``lowercase``.
        """
        if isinstance(source, str | os.PathLike):
            name, lines = str(source), read_utf8_lines(source)
        else:
            name, lines = "<cmudict lines>", list(source)
        lex = cls()
        for number, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if not text or line.startswith(";;;"):
                continue
            fields = text.split()
            if len(fields) < 2:
                raise DataError(f"{name}:{number}: expected 'WORD  P1 P2 ...', got {line!r}")
            word = fields[0]
            match = _CMU_VARIANT.match(word)
            if match:
                word = match.group(1)
            if lowercase:
                word = word.lower()
            phones = fields[1:]
            if strip_stress:
                phones = [_STRESS_DIGITS.sub("", p) for p in phones]
            try:
                lex.add(word, phones)
            except DataError as err:
                raise DataError(f"{name}:{number}: {err}") from None
        if not lex.entries:
            raise DataError(f"{name}: no CMUdict entries")
        return lex


# -------------------------------------------------------------------- deterministic units
def char_lexicon(words: Iterable[str]) -> Lexicon:
    """Each word's "pronunciation" is its sequence of characters."""
    lex = Lexicon()
    for word in words:
        lex.add(word, tuple(word))
    return lex


def bpe_lexicon(words: Iterable[str], model: str | os.PathLike) -> Lexicon:
    """Each word's "pronunciation" is its sentencepiece pieces (encoded alone, so with ``▁``)."""
    import sentencepiece as spm

    path = Path(model)
    if not path.is_file():
        raise DataError(f"{path}: sentencepiece model not found")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    words = list(words)
    lex = Lexicon()
    for word, pieces in zip(words, sp.encode(words, out_type=str), strict=True):
        if not pieces:
            raise DataError(f"{path}: word {word!r} encodes to no pieces")
        lex.add(word, pieces)
    return lex


# -------------------------------------------------------------------- phone symbol tables
def make_phone_table(units: Iterable[str], silence: str | None = "SIL") -> list[str]:
    """Phone symbols by id: ``silence`` first (if given), then the other units sorted."""
    rest = sorted(set(units) - {silence})
    if EPSILON in rest:
        raise DataError(f"unit {EPSILON!r} is reserved for epsilon in phones.txt")
    return ([silence] if silence is not None else []) + rest


def phone_table_text(phones: Sequence[str]) -> str:
    """``phones.txt``: ``<eps> 0`` then ``symbol i+1`` for ``phones[i]``."""
    lines = [f"{EPSILON} 0"] + [f"{p} {i + 1}" for i, p in enumerate(phones)]
    return "".join(line + "\n" for line in lines)


def write_phone_table(path: str | os.PathLike, phones: Sequence[str]) -> None:
    atomic_write_text(path, phone_table_text(phones))


def read_phone_table(path: str | os.PathLike) -> list[str]:
    """Read ``phones.txt``; return the symbols of ids ``1 .. N`` (``phones[id - 1]``)."""
    path = Path(path)
    by_label: dict[int, str] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{number}: expected 'symbol id', got {line!r}")
        symbol, label = fields[0], int(fields[1])
        if label in by_label:
            raise DataError(f"{path}:{number}: id {label} repeated")
        by_label[label] = symbol
    if by_label.get(0) != EPSILON:
        raise DataError(f"{path}: id 0 must be {EPSILON}")
    n = len(by_label)
    if sorted(by_label) != list(range(n)):
        raise DataError(f"{path}: ids are not contiguous 0..{n - 1}")
    return [by_label[i] for i in range(1, n)]


def phone_index(phones: Sequence[str]) -> dict[str, int]:
    """Symbol → phone id (``phones.txt`` id, from 1), checking that symbols are unique."""
    index = {p: i + 1 for i, p in enumerate(phones)}
    if len(index) != len(phones):
        raise ConfigError("phone table has repeated symbols")
    return index


# -------------------------------------------------------------------- espeak-ng phonemiser
#: Voices used for ``espeak:<language>`` when the language code alone is not the best voice.
DEFAULT_ESPEAK_VOICES: dict[str, tuple[str, ...]] = {"en": ("en-us",), "zh": ("cmn",)}
STRESS_MARKS = "ˈˌ"
_LANGUAGE_SWITCH = re.compile(r"\([A-Za-z][A-Za-z0-9-]*\)")


def resolve_espeak_voices(spec: str) -> tuple[str, ...]:
    """``"en"`` → the default voice(s) of English; ``"en-us,en-gb"`` → those voices."""
    voices = tuple(v.strip() for v in spec.split(",") if v.strip())
    if not voices:
        raise ConfigError(f"espeak voices {spec!r}: no voice given")
    if len(voices) == 1:
        return DEFAULT_ESPEAK_VOICES.get(voices[0], voices)
    return voices


def parse_espeak_line(line: str, keep_stress: bool = False) -> Pronunciation:
    """Phones of one ``espeak-ng --ipa --sep=' '`` output line (language switches removed)."""
    line = _LANGUAGE_SWITCH.sub(" ", line)
    if not keep_stress:
        line = line.translate({ord(c): " " for c in STRESS_MARKS})
    return tuple(line.split())


class EspeakPhonemizer:
    """IPA pronunciations from espeak-ng, one per voice (variants when voices differ).

    Words are sent in batches (one word per line, ``espeak-ng -q -v <voice> --ipa --sep=' '``),
    batches run in ``num_jobs`` parallel processes; a batch whose output does not have one line per
    word is redone word by word. Results are cached in memory and, with ``cache_file``, in a JSON
    file (raw espeak-ng output per voice and word, so ``keep_stress`` can change). Stress marks
    are removed unless ``keep_stress`` (then ``ˈa`` and ``a`` are different phones).
    """

    def __init__(
        self,
        voices: Sequence[str] | str,
        keep_stress: bool = False,
        espeak: str = "espeak-ng",
        batch_size: int = 1000,
        num_jobs: int | None = None,
        cache_file: str | os.PathLike | None = None,
    ) -> None:
        import shutil

        self.voices = resolve_espeak_voices(voices) if isinstance(voices, str) else tuple(voices)
        self.keep_stress = keep_stress
        self.espeak = shutil.which(espeak)
        if self.espeak is None:
            raise ConfigError(
                f"{espeak} not found on PATH (Debian/Ubuntu: apt-get install espeak-ng)"
            )
        self.batch_size = batch_size
        self.num_jobs = num_jobs or min(4, os.cpu_count() or 1)
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self._cache: dict[str, dict[str, str]] = {v: {} for v in self.voices}
        if self.cache_file is not None and self.cache_file.is_file():
            self._load_cache()

    def _load_cache(self) -> None:
        import json

        assert self.cache_file is not None
        try:
            stored = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise DataError(f"{self.cache_file}: unreadable espeak-ng cache ({err})") from None
        for voice in self.voices:
            self._cache[voice].update(stored.get(voice, {}))

    def _save_cache(self) -> None:
        import json

        if self.cache_file is None:
            return
        stored: dict[str, dict[str, str]] = {}
        if self.cache_file.is_file():
            stored = json.loads(self.cache_file.read_text(encoding="utf-8"))
        for voice, entries in self._cache.items():
            stored.setdefault(voice, {}).update(entries)
        atomic_write_text(self.cache_file, json.dumps(stored, ensure_ascii=False, sort_keys=True))

    def _run(self, voice: str, words: Sequence[str]) -> list[str]:
        import subprocess

        cmd = [self.espeak, "-q", "-v", voice, "--ipa", "--sep= "]
        text = "".join(w + "\n" for w in words)
        proc = subprocess.run(cmd, input=text, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DataError(f"espeak-ng -v {voice} failed: {proc.stderr.strip()[:500]}")
        lines = proc.stdout.splitlines()
        if len(lines) == len(words):
            return lines
        if len(words) == 1:  # one word spread over several clauses: join them
            return [" ".join(lines)]
        logger.debug("espeak-ng -v %s: %d lines for %d words; redoing one by one", voice,
                     len(lines), len(words))  # fmt: skip
        return [self._run(voice, [w])[0] for w in words]

    def phonemize(self, words: Iterable[str]) -> dict[str, list[Pronunciation]]:
        """Word → its distinct pronunciations over the voices (words espeak-ng cannot say: [])."""
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        words = list(dict.fromkeys(words))
        for word in words:
            if not word or any(ch.isspace() for ch in word):
                raise DataError(f"espeak-ng: word {word!r} is empty or contains whitespace")
        jobs = []
        for voice in self.voices:
            todo = [w for w in words if w not in self._cache[voice]]
            for i in range(0, len(todo), self.batch_size):
                jobs.append((voice, todo[i : i + self.batch_size]))
        if jobs:
            with ThreadPoolExecutor(self.num_jobs) as pool:
                results = pool.map(lambda job: self._run(*job), jobs)
                for (voice, batch), lines in tqdm(
                    zip(jobs, results, strict=True), total=len(jobs), desc="espeak-ng", leave=False
                ):
                    self._cache[voice].update(zip(batch, lines, strict=True))
            self._save_cache()
        out: dict[str, list[Pronunciation]] = {}
        for word in words:
            prons = [parse_espeak_line(self._cache[v][word], self.keep_stress) for v in self.voices]
            out[word] = [p for p in dict.fromkeys(prons) if p]
        return out


def espeak_lexicon(
    words: Iterable[str],
    voices: Sequence[str] | str,
    keep_stress: bool = False,
    cache_file: str | os.PathLike | None = None,
    num_jobs: int | None = None,
) -> Lexicon:
    """A lexicon of ``words`` phonemised by espeak-ng with ``voices`` (:class:`EspeakPhonemizer`).

    Words without any phone (espeak-ng says nothing) are left out and logged with a count; text
    that uses them then fails as out-of-vocabulary unless an OOV word is configured.
    """
    phonemizer = EspeakPhonemizer(voices, keep_stress, cache_file=cache_file, num_jobs=num_jobs)
    lex = Lexicon()
    missing = []
    for word, prons in phonemizer.phonemize(words).items():
        if not prons:
            missing.append(word)
        for pron in prons:
            lex.add(word, pron)
    if missing:
        logger.warning("espeak-ng (%s) gave no phones for %d word(s), e.g. %s",
                       ",".join(phonemizer.voices), len(missing), missing[:5])  # fmt: skip
    return lex
