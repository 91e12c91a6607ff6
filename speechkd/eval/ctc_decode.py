"""Best-path (greedy) CTC decoding and unit → text post-processing for fairseq CTC models.

* :func:`ctc_greedy`: per-frame argmax, repeats collapsed, blanks dropped (fairseq's
  ``W2lViterbiDecoder`` for a CTC criterion), frames under the padding mask ignored.
* :func:`units_to_text`: unit symbols → text, as fairseq's ``post_process``:
  ``"letter"`` (``|`` is the word boundary: ``H E | S A W`` → ``he saw`` up to case),
  ``"bpe"`` (sentencepiece pieces, ``▁`` starts a word) and ``"phone"`` (the phone sequence,
  space-separated, for phone error rates).
* :class:`UnitTable`: the symbols of a fairseq dictionary (``dict.ltr.txt`` etc.: ``<s> <pad>
  </s> <unk>`` at ids 0-3, then the file's symbols), the CTC blank (``<s>``, id 0, as fairseq's
  ``ctc`` criterion) and the special ids that never reach the text.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from speechkd.data.textio import read_utf8_lines
from speechkd.errors import ConfigError, DataError

UNITS = ("letter", "phone", "bpe")
WORD_BOUNDARY = "|"
SP_SPACE = "\u2581"
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


@dataclass(frozen=True)
class UnitTable:
    """Unit symbols by id, the CTC blank id and ids left out of decoded text."""

    symbols: tuple[str, ...]
    blank: int = 0
    ignore: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.blank < len(self.symbols):
            raise ConfigError(f"blank id {self.blank} is outside the {len(self.symbols)} units")

    def __len__(self) -> int:
        return len(self.symbols)

    def index(self, symbol: str) -> int | None:
        """The id of ``symbol`` (the first one), or None."""
        try:
            return self.symbols.index(symbol)
        except ValueError:
            return None

    def to_symbols(self, ids: Iterable[int]) -> list[str]:
        """Symbols of ``ids`` with the blank and ignored ids left out."""
        return [self.symbols[i] for i in ids if i != self.blank and i not in self.ignore]

    @classmethod
    def from_fairseq_dict(cls, path: str | os.PathLike) -> UnitTable:
        """Read a fairseq ``dict.<labels>.txt`` (``symbol count`` lines) with the default specials.

        Ids follow ``fairseq.data.Dictionary``: ``<s>`` 0 (the CTC blank), ``<pad>`` 1, ``</s>`` 2,
        ``<unk>`` 3, then the file's symbols in order; ``#fairseq:overwrite`` lines may repeat a
        symbol. ``<pad>``, ``</s>`` and ``<unk>`` are left out of decoded text.
        """
        path = Path(path)
        symbols = list(FAIRSEQ_SPECIALS)
        for number, line in enumerate(read_utf8_lines(path), start=1):
            text = line.rstrip()
            if not text.strip():
                continue
            overwrite = text.endswith(" #fairseq:overwrite")
            if overwrite:
                text = text[: -len(" #fairseq:overwrite")]
            fields = text.rsplit(" ", 1)
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise DataError(f"{path}:{number}: expected '<symbol> <count>', got {line!r}")
            if fields[0] in symbols and not overwrite:
                raise DataError(f"{path}:{number}: duplicate symbol {fields[0]!r}")
            symbols.append(fields[0])
        if len(symbols) == len(FAIRSEQ_SPECIALS):
            raise DataError(f"{path}: no symbols")
        return cls(tuple(symbols), blank=0, ignore=frozenset({1, 2, 3}))

    @classmethod
    def from_fairseq_dictionary(cls, dictionary) -> UnitTable:
        """The table of a loaded ``fairseq.data.Dictionary`` (blank = its ``bos``, as fairseq)."""
        blank = dictionary.bos()
        if "<ctc_blank>" in dictionary.indices:
            blank = dictionary.index("<ctc_blank>")
        ignore = {dictionary.pad(), dictionary.eos(), dictionary.unk(), dictionary.bos()}
        ignore.discard(blank)
        return cls(tuple(dictionary.symbols), blank=blank, ignore=frozenset(ignore))


def _lengths(logits: torch.Tensor, padding_mask: torch.Tensor | None) -> list[int]:
    if logits.dim() != 3:
        raise DataError(f"ctc_greedy: logits must be [B, T, V], got shape {tuple(logits.shape)}")
    batch, frames = logits.shape[:2]
    if padding_mask is None:
        return [frames] * batch
    if padding_mask.shape != (batch, frames):
        raise DataError(
            f"ctc_greedy: padding_mask shape {tuple(padding_mask.shape)} does not match logits "
            f"[B, T] = {(batch, frames)}"
        )
    return (~padding_mask.bool()).sum(-1).tolist()


def collapse_ctc(ids: Iterable[int], blank: int = 0) -> list[int]:
    """A frame-level CTC path → units: merge repeats, then drop blanks."""
    out: list[int] = []
    prev = None
    for i in ids:
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def ctc_greedy(
    logits: torch.Tensor, padding_mask: torch.Tensor | None = None, blank: int = 0
) -> list[list[int]]:
    """Best-path decoding of ``logits`` [B, T, V] (or log-probs); ``padding_mask`` [B, T] is True
    at padded frames (those frames are ignored). Returns the unit ids of each utterance."""
    lengths = _lengths(logits, padding_mask)
    best = logits.argmax(-1).cpu()
    return [collapse_ctc(row[:n].tolist(), blank) for row, n in zip(best, lengths, strict=True)]


def letters_to_words(symbols: Sequence[str], boundary: str = WORD_BOUNDARY) -> str:
    """Letters with ``boundary`` between words → words (fairseq ``post_process(.., "letter")``)."""
    return " ".join("".join(symbols).replace(boundary, " ").split())


def pieces_to_words(pieces: Sequence[str]) -> str:
    """Sentencepiece pieces → words (fairseq ``post_process(.., "sentencepiece")``)."""
    return " ".join("".join(pieces).replace(SP_SPACE, " ").split())


def units_to_text(symbols: Sequence[str], unit: str) -> str:
    """Decoded unit symbols → the text to score: words for letters/BPE, phones for phones."""
    if unit == "letter":
        return letters_to_words(symbols)
    if unit == "bpe":
        return pieces_to_words(symbols)
    if unit == "phone":
        return " ".join(s for s in symbols if s != WORD_BOUNDARY)
    raise ConfigError(f"unit must be one of {UNITS}, got {unit!r}")


def greedy_texts(
    logits: torch.Tensor, padding_mask: torch.Tensor | None, table: UnitTable, unit: str
) -> list[str]:
    """:func:`ctc_greedy` then :func:`units_to_text` for every utterance of the batch."""
    return [
        units_to_text(table.to_symbols(ids), unit)
        for ids in ctc_greedy(logits, padding_mask, table.blank)
    ]
