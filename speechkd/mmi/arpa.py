"""ARPA back-off LMs over phones → epsilon-free stochastic acceptors (an alternative to
:mod:`speechkd.mmi.phone_lm`).

The back-off arcs are unrolled exactly: every history of the ARPA model (an n-gram of order
< N not ending in ``</s>``) becomes a state, and each state gets one arc per symbol with the full
back-off probability ``P(w | h) = P*(w | h)`` if the n-gram ``h w`` is listed, else
``bow(h) · P(w | h[1:])`` (recursively), and the final weight ``P(</s> | h)``. The arc for ``w``
goes to the state of the longest suffix of ``h w`` that is a history of the model, which is exact
for a well-formed ARPA file (every listed n-gram's prefixes and suffixes are listed), since a
missing context has back-off weight 1 and no listed extension. There is no approximation; the
price is ``|states| × |symbols|`` arcs. The start state is ``<s>``; ``<s>`` is never a label.
Probabilities of ``10^-99`` (ARPA's "zero") give no arc.

ARPA files store rounded probabilities, so states sum to 1 only to about 1e-6; with
``renormalize=True`` (default) every state's arcs and final weight are renormalised to sum to 1
(the largest deviation before that is logged). Symbols listed in ``drop_symbols`` (default
``<unk>``) are removed before renormalising and counted in the log; any other symbol missing
from a given phone table is an error.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.lexicon import make_phone_table, phone_index

logger = logging.getLogger(__name__)

BOS, EOS = "<s>", "</s>"
LOG10 = math.log(10.0)
_ZERO_LOG10 = -99.0


class ArpaModel:
    """The n-grams of an ARPA file: ``logprob[ngram]`` and ``backoff[ngram]`` in natural log."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.logprob: dict[tuple[str, ...], float] = {}
        self.backoff: dict[tuple[str, ...], float] = {}
        self.order = 0
        self._read()

    def _read(self) -> None:
        declared: dict[int, int] = {}
        section: int | None = None
        seen: dict[int, int] = {}
        ended = False
        for number, line in enumerate(read_utf8_lines(self.path), start=1):
            where = f"{self.path}:{number}"
            text = line.strip()
            if not text or ended:
                continue
            if text == "\\data\\":
                section = 0
                continue
            if text == "\\end\\":
                ended = True
                continue
            if text.startswith("\\") and text.endswith("-grams:"):
                try:
                    section = int(text[1:-7])
                except ValueError:
                    raise DataError(f"{where}: bad section header {text!r}") from None
                if section not in declared:
                    raise DataError(f"{where}: {section}-grams not declared in \\data\\")
                seen[section] = 0
                continue
            if section is None:
                continue  # text before \data\ is ignored, as by SRILM
            if section == 0:
                if not text.startswith("ngram ") or "=" not in text:
                    raise DataError(f"{where}: expected 'ngram N=count', got {text!r}")
                n, count = text[6:].split("=", 1)
                declared[int(n)] = int(count)
                continue
            fields = text.split()
            if len(fields) not in (section + 1, section + 2):
                raise DataError(
                    f"{where}: a {section}-gram line needs {section + 1} or {section + 2} fields"
                )
            try:
                logp = float(fields[0])
                bow = float(fields[section + 1]) if len(fields) == section + 2 else None
            except ValueError:
                raise DataError(f"{where}: bad number in {text!r}") from None
            ngram = tuple(fields[1 : section + 1])
            self.logprob[ngram] = -math.inf if logp <= _ZERO_LOG10 else logp * LOG10
            if bow is not None:
                self.backoff[ngram] = bow * LOG10
            seen[section] += 1
        if not declared or not self.logprob:
            raise DataError(f"{self.path}: not an ARPA file (no \\data\\ section or no n-grams)")
        for n, count in declared.items():
            if seen.get(n, 0) != count:
                raise DataError(
                    f"{self.path}: \\data\\ declares {count} {n}-grams, found {seen.get(n, 0)}"
                )
        self.order = max(declared)
        if (BOS,) not in self.logprob:
            raise DataError(f"{self.path}: no {BOS} unigram")
        if (EOS,) not in self.logprob:
            raise DataError(f"{self.path}: no {EOS} unigram")

    @property
    def symbols(self) -> list[str]:
        """Unigram symbols other than ``<s>`` and ``</s>``, in file order."""
        return [g[0] for g in self.logprob if len(g) == 1 and g[0] not in (BOS, EOS)]


def arpa_to_fsa(
    path: str | os.PathLike,
    phones: Sequence[str] | None = None,
    renormalize: bool = True,
    drop_symbols: Sequence[str] = ("<unk>",),
) -> tuple[Fsa, list[str]]:
    """Read an ARPA LM over phones; return ``(lm, phones)`` (see the module docstring).

    ``phones`` is the phone table (``phones[i]`` has label ``i + 1``, as in ``phones.txt``);
    without it the table is made from the ARPA unigrams with
    :func:`~speechkd.mmi.lexicon.make_phone_table` (``SIL`` first if present).
    """
    model = ArpaModel(path)
    symbols = [s for s in model.symbols if s not in drop_symbols]
    dropped = [s for s in model.symbols if s in drop_symbols]
    if phones is None:
        phones = make_phone_table(symbols, silence="SIL" if "SIL" in symbols else None)
    index = phone_index(phones)
    missing = [s for s in symbols if s not in index]
    if missing:
        raise DataError(f"{model.path}: symbol(s) {missing[:10]} are not in the phone table")
    if dropped:
        logger.info("%s: dropped symbol(s) %s from the LM (renormalised)", model.path, dropped)
    targets = [*symbols, EOS]

    memo: dict[tuple[str, ...], dict[str, float]] = {}

    def distribution(hist: tuple[str, ...]) -> dict[str, float]:
        """log P(w | hist) for every target symbol, following back-off."""
        got = memo.get(hist)
        if got is not None:
            return got
        if not hist:
            dist = {w: model.logprob.get((w,), -math.inf) for w in targets}
        else:
            bow = model.backoff.get(hist, 0.0)
            lower = distribution(hist[1:])
            dist = {w: lp + bow for w, lp in lower.items()}
            for w in targets:
                lp = model.logprob.get(hist + (w,))
                if lp is not None:
                    dist[w] = lp
        memo[hist] = dist
        return dist

    histories = [
        g for g in model.logprob if len(g) < model.order and g[-1] != EOS and BOS not in g[1:]
    ]
    histories.remove((BOS,))
    histories.insert(0, (BOS,))  # start state 0
    state_of = {h: i for i, h in enumerate(histories)}

    def dest_state(hist: tuple[str, ...]) -> int:
        hist = hist[-(model.order - 1) :]
        while hist not in state_of:
            hist = hist[1:]
            if not hist:
                raise DataError(f"{model.path}: no history state for a suffix (missing unigram)")
        return state_of[hist]

    src: list[int] = []
    dst: list[int] = []
    labels: list[int] = []
    scores: list[float] = []
    final = [-math.inf] * len(histories)
    worst = 0.0
    for s, hist in enumerate(histories):
        dist = distribution(hist)
        finite = [lp for lp in dist.values() if lp > -math.inf]
        if not finite:
            raise DataError(f"{model.path}: history {' '.join(hist)!r} has no continuation")
        peak = max(finite)
        norm = peak + math.log(sum(math.exp(lp - peak) for lp in finite))
        worst = max(worst, abs(norm))
        shift = norm if renormalize else 0.0
        for w in symbols:
            lp = dist[w]
            if lp > -math.inf:
                src.append(s)
                dst.append(dest_state(hist + (w,)))
                labels.append(index[w])
                scores.append(lp - shift)
        if dist[EOS] > -math.inf:
            final[s] = dist[EOS] - shift
    logger.info(
        "%s: order %d, %d history states, %d arcs; largest |log sum| per state before "
        "renormalising %.2e",
        model.path, model.order, len(histories), len(src), worst,
    )  # fmt: skip
    if worst > 1e-3:
        logger.warning(
            "%s: a state's probabilities sum to exp(%.3g) before renormalising; the ARPA file "
            "may not be a normalised back-off model", model.path, worst,
        )  # fmt: skip
    arcs = torch.tensor([src, dst, labels], dtype=torch.long).T.reshape(-1, 3)
    lm = Fsa(
        arcs, torch.tensor(scores, dtype=torch.float64), torch.tensor(final, dtype=torch.float64)
    )
    return lm.connect(), list(phones)
