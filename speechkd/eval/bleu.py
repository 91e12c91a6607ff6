"""Corpus BLEU and chrF with sacrebleu, each with its signature (reported beside the score).

Scores are on detokenised, cased text, as sacrebleu expects; the tokeniser defaults to sacrebleu's
choice for the target language ("zh" for Chinese, "char" for Japanese/Thai/Korean since the mecab
tokenisers need extra packages, "13a" otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sacrebleu.metrics import BLEU, CHRF

from speechkd.errors import ConfigError, DataError

TRANSLATION_METRICS = ("bleu", "chrf")
_CHAR_TOKENIZED = frozenset({"ja", "th", "ko", "lo", "my"})


def default_bleu_tokenizer(language: str | None) -> str:
    """sacrebleu tokeniser for a target language (ISO 639-1)."""
    lang = (language or "").lower()
    if lang in ("zh", "yue"):
        return "zh"
    if lang in _CHAR_TOKENIZED:
        return "char"
    return "13a"


@dataclass(frozen=True)
class TranslationScore:
    """A corpus-level score with sacrebleu's signature and details."""

    metric: str
    score: float
    signature: str
    snt: int
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "score": round(self.score, 4),
            "signature": self.signature,
            "snt": self.snt,
            "details": self.details,
        }


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise DataError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not refs:
        raise DataError("no sentences to score")


def compute_bleu(
    hyps: Sequence[str],
    refs: Sequence[str],
    tokenize: str | None = None,
    language: str | None = None,
    lowercase: bool = False,
) -> TranslationScore:
    """Corpus BLEU of ``hyps`` against one reference each (same as ``sacrebleu.corpus_bleu``)."""
    _check(hyps, refs)
    tokenize = tokenize or default_bleu_tokenizer(language)
    try:
        metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    except Exception as err:  # sacrebleu raises bare errors for unknown/unusable tokenisers
        raise ConfigError(f"BLEU tokenize={tokenize!r}: {err}") from err
    result = metric.corpus_score(list(hyps), [list(refs)])
    details = {
        "precisions": [round(p, 4) for p in result.precisions],
        "bp": round(result.bp, 4),
        "ratio": round(result.sys_len / result.ref_len, 4) if result.ref_len else None,
        "hyp_len": result.sys_len,
        "ref_len": result.ref_len,
        "text": str(result),
    }
    return TranslationScore("bleu", result.score, str(metric.get_signature()), len(refs), details)


def compute_chrf(hyps: Sequence[str], refs: Sequence[str], word_order: int = 0) -> TranslationScore:
    """Corpus chrF (chrF++ with ``word_order=2``), same as ``sacrebleu.corpus_chrf``."""
    _check(hyps, refs)
    metric = CHRF(word_order=word_order)
    result = metric.corpus_score(list(hyps), [list(refs)])
    details = {"text": str(result), "word_order": word_order}
    return TranslationScore("chrf", result.score, str(metric.get_signature()), len(refs), details)


def compute_translation_score(
    metric: str, hyps: Sequence[str], refs: Sequence[str], language: str | None = None
) -> TranslationScore:
    """Dispatch on ``metric`` ("bleu" or "chrf")."""
    if metric == "bleu":
        return compute_bleu(hyps, refs, language=language)
    if metric == "chrf":
        return compute_chrf(hyps, refs)
    raise ConfigError(f"translation metric must be one of {TRANSLATION_METRICS}, got {metric!r}")
