"""Word/character error rates from kaldialign alignments, with sclite-style counts.

Texts given here are already normalised (``speechkd.eval.normalize``). Words are the
whitespace-separated tokens; characters are those of the text with runs of whitespace made one
space (spaces count as characters, as in jiwer's ``cer``). Totals are pooled over utterances
(errors / reference tokens), which equals jiwer's corpus ``wer``/``cer`` on the same texts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import kaldialign

from speechkd.errors import ConfigError, DataError

METRICS = ("wer", "cer")
EPS = "\x00<eps>"
"""Internal blank symbol of the alignment: no normalised text can contain it."""
DISPLAY_EPS = "*"


def tokenize(text: str, metric: str) -> list[str]:
    """Scoring units of a normalised text: words for "wer", characters for "cer"."""
    if metric == "wer":
        return text.split()
    if metric == "cer":
        return list(" ".join(text.split()))
    raise ConfigError(f"metric must be one of {METRICS}, got {metric!r}")


@dataclass(frozen=True)
class ErrorCounts:
    """sclite-style counts: sentences, reference tokens, correct, sub, del, ins, sentence errors."""

    snt: int = 0
    wrd: int = 0
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    s_err: int = 0

    @property
    def err(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        """Error rate in percent (errors / reference tokens); insertions only → inf."""
        if self.wrd == 0:
            return 0.0 if self.err == 0 else float("inf")
        return 100.0 * self.err / self.wrd

    def percent(self, count: int, of_sentences: bool = False) -> float:
        total = self.snt if of_sentences else self.wrd
        return 100.0 * count / total if total else 0.0

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(
            snt=self.snt + other.snt,
            wrd=self.wrd + other.wrd,
            corr=self.corr + other.corr,
            sub=self.sub + other.sub,
            dele=self.dele + other.dele,
            ins=self.ins + other.ins,
            s_err=self.s_err + other.s_err,
        )

    def to_dict(self) -> dict[str, float | int]:
        """Counts, percentages (``*_pct``) and the error rate, for JSON files."""
        out: dict[str, float | int] = {
            "snt": self.snt,
            "wrd": self.wrd,
            "corr": self.corr,
            "sub": self.sub,
            "del": self.dele,
            "ins": self.ins,
            "err": self.err,
            "s_err": self.s_err,
        }
        for key, count in (("corr", self.corr), ("sub", self.sub), ("del", self.dele)):
            out[f"{key}_pct"] = round(self.percent(count), 4)
        out["ins_pct"] = round(self.percent(self.ins), 4)
        out["err_pct"] = round(self.percent(self.err), 4)
        out["s_err_pct"] = round(self.percent(self.s_err, of_sentences=True), 4)
        out["rate"] = round(self.rate, 4) if self.rate != float("inf") else None
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ErrorCounts:
        return cls(d["snt"], d["wrd"], d["corr"], d["sub"], d["del"], d["ins"], d["s_err"])


@dataclass(frozen=True)
class UtteranceAlignment:
    """One utterance: its tokens, the alignment (ref, hyp) pairs with EPS blanks, its counts."""

    utt_id: str
    language: str | None
    ref: tuple[str, ...]
    hyp: tuple[str, ...]
    alignment: tuple[tuple[str, str], ...]
    counts: ErrorCounts

    def ops(self) -> list[str]:
        """Per aligned pair: "C" correct, "S" substitution, "D" deletion, "I" insertion."""
        return [_op(r, h) for r, h in self.alignment]


def _op(r: str, h: str) -> str:
    if r == EPS:
        return "I"
    if h == EPS:
        return "D"
    return "C" if r == h else "S"


def align_utterance(
    utt_id: str,
    ref: Sequence[str],
    hyp: Sequence[str],
    language: str | None = None,
    allow_empty_ref: bool = False,
) -> UtteranceAlignment:
    """Align token sequences with kaldialign and count the operations."""
    if not ref and not allow_empty_ref:
        raise DataError(
            f"utterance {utt_id!r}: empty reference after normalisation "
            "(pass allow_empty_ref / --allow-empty-ref to score it as insertions only)"
        )
    alignment = tuple(kaldialign.align(list(ref), list(hyp), EPS))
    ops = Counter(_op(r, h) for r, h in alignment)
    counts = ErrorCounts(
        snt=1,
        wrd=len(ref),
        corr=ops["C"],
        sub=ops["S"],
        dele=ops["D"],
        ins=ops["I"],
        s_err=int(ops["S"] + ops["D"] + ops["I"] > 0),
    )
    return UtteranceAlignment(utt_id, language, tuple(ref), tuple(hyp), alignment, counts)


@dataclass(frozen=True)
class Utterance:
    """A scored pair of normalised texts."""

    utt_id: str
    ref: str
    hyp: str
    language: str | None = None


@dataclass
class ErrorRateReport:
    """Alignments of a set, pooled totals and the per-language breakdown."""

    metric: str
    utterances: list[UtteranceAlignment] = field(default_factory=list)

    @property
    def totals(self) -> ErrorCounts:
        return sum((u.counts for u in self.utterances), ErrorCounts())

    @property
    def per_language(self) -> dict[str, ErrorCounts]:
        """Counts per language, sorted by language code (utterances without one: "unk")."""
        out: dict[str, ErrorCounts] = {}
        for u in self.utterances:
            key = u.language or "unk"
            out[key] = out.get(key, ErrorCounts()) + u.counts
        return dict(sorted(out.items()))

    @property
    def macro_average(self) -> float:
        """Mean of the per-language error rates (the papers' "Avg" column)."""
        rates = [c.rate for c in self.per_language.values()]
        return sum(rates) / len(rates) if rates else 0.0

    def frequent_errors(self) -> tuple[Counter, Counter, Counter]:
        """Counters of substitutions ``(ref, hyp)``, deletions ``ref`` and insertions ``hyp``."""
        subs: Counter = Counter()
        dels: Counter = Counter()
        ins: Counter = Counter()
        for u in self.utterances:
            for r, h in u.alignment:
                op = _op(r, h)
                if op == "S":
                    subs[(r, h)] += 1
                elif op == "D":
                    dels[r] += 1
                elif op == "I":
                    ins[h] += 1
        return subs, dels, ins


def score_utterances(
    utterances: Iterable[Utterance], metric: str = "wer", allow_empty_ref: bool = False
) -> ErrorRateReport:
    """Align every utterance (normalised texts) and collect a report; ids must be unique."""
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {METRICS}, got {metric!r}")
    report = ErrorRateReport(metric=metric)
    seen: set[str] = set()
    for u in utterances:
        if u.utt_id in seen:
            raise DataError(f"utterance {u.utt_id!r} is given twice")
        seen.add(u.utt_id)
        report.utterances.append(
            align_utterance(
                u.utt_id,
                tokenize(u.ref, metric),
                tokenize(u.hyp, metric),
                u.language,
                allow_empty_ref=allow_empty_ref,
            )
        )
    return report
