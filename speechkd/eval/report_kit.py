"""What the method reports share: the missing-value mark, number formats, score and parameter
loading, comparisons with ties, the degeneracy rule, the claims section, Markdown notes,
matplotlib set-up and the writing of a section with its RESULTS.json.

The degeneracy rule (:func:`at_chance`, :func:`degenerate_reason`) is the only place that decides
when a comparison says nothing: a score is *at chance* when the system does not do the task at
all, BLEU below :data:`BLEU_FLOOR` or an error rate of :data:`ERROR_RATE_CEILING` % or more (or no
finite score). A claim has no verdict when its teacher (the system the others are measured
against) is at chance, or when every system it compares is; and no relative change is computed
from a reference at chance (:func:`relative_change`).

A report section opens with :data:`CLAIMS_HEADING` (one line per claim of the paper that the
recipe tests, :func:`render_claims`); ``speechkd.bin.write_results`` lifts those blocks to the top
of RESULTS.md (:func:`split_claims`) and writes paths relative to the recipe directory
(:func:`relative_paths`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechkd.errors import ConfigError, DataError
from speechkd.eval.markdown import md_table
from speechkd.eval.report_inputs import PARAM_KEYS, load_json_object
from speechkd.eval.results_json import ResultRows, results_json_path, write_results_json
from speechkd.eval.wer import ErrorCounts
from speechkd.utils.atomic import atomic_path, atomic_write_text

__all__ = [
    "BLEU_FLOOR",
    "CLAIMS_HEADING",
    "DASH",
    "ERROR_RATE_CEILING",
    "ERROR_RATE_METRICS",
    "NA",
    "TIE",
    "Claim",
    "Domain",
    "SetScores",
    "Notes",
    "at_chance",
    "beats",
    "compare",
    "degenerate_reason",
    "fmt_count",
    "fmt_rate",
    "load_json_object",
    "load_params",
    "load_scores",
    "load_set_scores",
    "make_domains",
    "md_table",
    "pooled_counts",
    "pyplot",
    "relative_change",
    "relative_paths",
    "render_claims",
    "save_png",
    "split_claims",
    "write_section",
]

DASH = "–"
NA = "n/a"
ERROR_RATE_METRICS = ("wer", "cer")
#: Two scores closer than this count as equal (half the last digit the tables show).
TIE = 0.005
#: Below this BLEU a system does not translate.
BLEU_FLOOR = 1.0
#: At or above this error rate (%) a system does not recognise speech.
ERROR_RATE_CEILING = 95.0
HIGHER_IS_BETTER = ("bleu", "chrf", "gap")
CLAIMS_HEADING = "### What this run shows"
IN_DOMAIN, OUT_OF_DOMAIN = "in-domain", "out-of-domain"
YES, NO, MIXED, EVEN = "yes", "no", "mixed", "tie"
NOT_TESTED = "not tested"
NO_VERDICT = "no verdict: the reference systems are degenerate"


# ---------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------


def fmt_rate(x: float | None, digits: int = 2) -> str:
    """``12.34``; "–" for None or NaN, "inf" for an infinite value."""
    if x is None or math.isnan(x):
        return DASH
    return f"{x:.{digits}f}" if math.isfinite(x) else "inf"


def fmt_count(n: float | None, million_from: float = 100_000) -> str:
    """1.54B, 2.62M (from ``million_from`` on), 9,216; "–" for None."""
    if n is None:
        return DASH
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.2f}M" if n >= million_from else f"{int(n):,}"


def mean(values: Iterable[float]) -> float:
    """The mean, NaN for no value."""
    values = list(values)
    return sum(values) / len(values) if values else math.nan


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def load_scores(path: str | os.PathLike, set_name: str, metrics: Sequence[str]) -> dict:
    """The ``scores-<set>.json`` at ``path``, checked: its metric one of ``metrics`` and its set
    ``set_name``; DataError naming the file otherwise."""
    path = Path(path)
    payload = load_json_object(path, "scores file")
    metric = payload.get("metric")
    if metric not in metrics:
        raise DataError(f"{path}: metric must be one of {tuple(metrics)}, got {metric!r}")
    if payload.get("set") != set_name:
        raise DataError(f"{path}: field 'set' is {payload.get('set')!r}, expected {set_name!r}")
    return payload


def pooled_counts(
    payload: Mapping[str, Any], path: str | os.PathLike, key: str = ""
) -> ErrorCounts:
    """The error counts of a scores file: ``totals``, or ``per_language[key]`` with ``key``."""
    where = f"per_language[{key!r}]" if key else "'totals'"
    entry = (payload.get("per_language") or {}).get(key) if key else payload.get("totals")
    if not isinstance(entry, dict):
        raise DataError(f"{path}: field {where} missing")
    try:
        return ErrorCounts.from_dict(entry)
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: {where} lacks the count {err}") from None


def load_params(path: str | os.PathLike, nonzero_total: bool = False) -> dict[str, int]:
    """``{"total", "trainable", "inference"}`` of a ``params.json``, each a non-negative int
    (with ``nonzero_total``, a zero total is an error: a share is taken of it)."""
    path = Path(path)
    data = load_json_object(path, "params file")
    out: dict[str, int] = {}
    for key in PARAM_KEYS:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{path}: field {key!r} must be a non-negative integer, got {value!r}")
        out[key] = value
    if nonzero_total and out["total"] == 0:
        raise DataError(f"{path}: field 'total' is 0")
    return out


# ---------------------------------------------------------------------------------------------
# Per-language error rates and in-/out-of-domain sets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetScores:
    """Error rates (%) of one system on one set: per language and their mean (the paper's avg)."""

    set_name: str
    metric: str
    per_language: dict[str, float]
    path: Path

    @property
    def average(self) -> float:
        return mean(self.per_language.values())


def load_set_scores(decode_dir: str | os.PathLike, set_name: str) -> SetScores:
    """Per-language WER/CER (%) of ``<decode_dir>/scores-<set_name>.json``, from its counts."""
    path = Path(decode_dir) / f"scores-{set_name}.json"
    payload = load_scores(path, set_name, ERROR_RATE_METRICS)
    if not isinstance(payload.get("per_language"), dict) or not payload["per_language"]:
        raise DataError(f"{path}: field 'per_language' missing or empty")
    rates = {k: pooled_counts(payload, path, k).rate for k in sorted(payload["per_language"])}
    return SetScores(set_name, str(payload["metric"]), rates, path)


def rescore_decode(
    decode_dir: str | os.PathLike,
    set_name: str,
    metric: str,
    cuts: str | os.PathLike | None = None,
    language: str | None = None,
):
    """The ``hyp-<set>.txt`` of a decode dir scored against its ``ref-<set>.txt`` under
    ``metric`` (an :class:`~speechkd.eval.wer.ErrorRateReport`); languages from ``cuts`` or
    ``language``."""
    from speechkd.eval.scoring import error_rate_report, load_scoring_input

    decode_dir = Path(decode_dir)
    data = load_scoring_input(
        decode_dir / f"ref-{set_name}.txt",
        decode_dir / f"hyp-{set_name}.txt",
        metric,
        language=language,
        ref_cuts=cuts,
        allow_missing=True,
    )
    return error_rate_report(data, metric, allow_empty_ref=True)


def rescore_set_scores(scores: SetScores, metric: str) -> SetScores:
    """The same decode under another error-rate ``metric``: its ``hyp-<set>.txt`` scored against
    ``ref-<set>.txt`` beside ``scores-<set>.json``, languages from that file's ``cuts``."""
    if metric == scores.metric:
        return scores
    set_name = scores.set_name
    payload = load_scores(scores.path, set_name, ERROR_RATE_METRICS)
    if not payload.get("cuts"):
        raise DataError(f"{scores.path}: no 'cuts' field to read the languages from")
    report = rescore_decode(scores.path.parent, set_name, metric, payload["cuts"])
    rates = {lang: report.per_language[lang].rate for lang in sorted(report.per_language)}
    return SetScores(set_name, metric, rates, scores.path)


@dataclass(frozen=True)
class Domain:
    """A named group of sets (in-domain, out-of-domain)."""

    name: str
    sets: tuple[str, ...]


def make_domains(in_domain: Sequence[str], out_of_domain: Sequence[str]) -> list[Domain]:
    """In- and out-of-domain groups; each set in at most one, at least one set in all."""
    if not in_domain and not out_of_domain:
        raise ConfigError("give at least one in-domain or out-of-domain set")
    if set(in_domain) & set(out_of_domain):
        raise ConfigError(
            "sets given twice, both in- and out-of-domain: "
            f"{sorted(set(in_domain) & set(out_of_domain))}"
        )
    for group in (in_domain, out_of_domain):
        if len(set(group)) != len(group):
            raise ConfigError(f"a set is given twice: {list(group)}")
    pairs = ((IN_DOMAIN, in_domain), (OUT_OF_DOMAIN, out_of_domain))
    return [Domain(name, tuple(sets)) for name, sets in pairs if sets]


# ---------------------------------------------------------------------------------------------
# Comparisons and the degeneracy rule
# ---------------------------------------------------------------------------------------------


def higher_is_better(metric: str) -> bool:
    """BLEU, chrF and gap closed grow with quality; error rates shrink."""
    return metric.lower().startswith(HIGHER_IS_BETTER)


def compare(a: float, b: float, metric: str, tie: float = TIE) -> int:
    """1 when ``a`` is better than ``b`` under ``metric``, -1 when worse, 0 within ``tie``."""
    if abs(a - b) < tie:
        return 0
    return 1 if (a > b) == higher_is_better(metric) else -1


def beats(a: float, b: float, metric: str, tie: float = TIE) -> bool:
    """``a`` is better than ``b`` by more than ``tie``."""
    return compare(a, b, metric, tie) > 0


def at_chance(value: float | None, metric: str) -> bool:
    """The degeneracy rule: no finite score, BLEU (or chrF) below :data:`BLEU_FLOOR`, or an
    error rate of :data:`ERROR_RATE_CEILING` % or more."""
    if value is None or not math.isfinite(value):
        return True
    if higher_is_better(metric):
        return value < BLEU_FLOOR
    return value >= ERROR_RATE_CEILING


def _chance_text(label: str, value: float | None, metric: str) -> str:
    if value is None or not math.isfinite(value):
        return f"{label} has no finite {metric}"
    bound = f"< {BLEU_FLOOR:g}" if higher_is_better(metric) else f"≥ {ERROR_RATE_CEILING:g}"
    return f"{label} {value:.2f} {metric} {bound}"


def degenerate_reason(
    metric: str,
    compared: Mapping[str, float | None],
    teacher: tuple[str, float | None] | None = None,
    student: tuple[str, float | None] | None = None,
) -> str | None:
    """Why a claim has no verdict, or None: its ``teacher`` (label, score) is at chance, or does
    not beat the ``student`` it is to be compared with (no gap to close), or every one of the
    ``compared`` systems is at chance (their differences are noise)."""
    if teacher is not None and at_chance(teacher[1], metric):
        return _chance_text(teacher[0], teacher[1], metric)
    if teacher is not None and teacher[1] is not None and student is not None:
        (t_label, t), (s_label, s) = teacher, student
        if s is None or not math.isfinite(s):
            return f"{s_label} has no finite {metric}"
        if not beats(t, s, metric):
            return (
                f"{s_label} {s:.2f} is not worse than {t_label} {t:.2f} {metric}: no gap to close"
            )
    if compared and all(at_chance(v, metric) for v in compared.values()):
        return ", ".join(_chance_text(k, v, metric) for k, v in compared.items())
    return None


def relative_change(value: float, ref: float, metric: str) -> float | None:
    """``100 (value - ref) / ref``; None when ``ref`` is at chance or zero."""
    if at_chance(ref, metric) or ref == 0:
        return None
    return 100.0 * (value - ref) / ref


def verdict_of(outcomes: Sequence[int]) -> str:
    """ "yes" (every outcome better), "no" (none better), "mixed", or "tie" (all within ties);
    "not tested" without outcomes."""
    if not outcomes:
        return NOT_TESTED
    if all(o > 0 for o in outcomes):
        return YES
    if all(o == 0 for o in outcomes):
        return EVEN
    return NO if not any(o > 0 for o in outcomes) else MIXED


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """One claim of the paper as this run tests it, its verdict and the numbers behind it."""

    text: str
    verdict: str
    evidence: str = ""

    def line(self) -> str:
        evidence = f" ({self.evidence})" if self.evidence else ""
        return f"- {self.text}: **{self.verdict}**{evidence}."


def no_verdict(text: str, reason: str) -> Claim:
    """A claim whose reference systems are degenerate (:func:`degenerate_reason`)."""
    return Claim(text, NO_VERDICT, reason)


def pair_claim(
    text: str,
    ours: tuple[str, float | None],
    ref: tuple[str, float | None],
    metric: str,
    teacher: tuple[str, float | None] | None = None,
    *,
    relative: bool = False,
) -> Claim:
    """ "``ours`` beats ``ref``" under ``metric``: yes / no / tie with both numbers (and, with
    ``relative``, the change relative to ``ref`` when it is not at chance)."""
    (a_label, a), (b_label, b) = ours, ref
    reason = degenerate_reason(metric, {a_label: a, b_label: b}, teacher)
    if reason is not None:
        return no_verdict(text, reason)
    assert a is not None and b is not None
    evidence = f"{a_label} {a:.2f} vs {b_label} {b:.2f} {metric}"
    if relative:
        change = relative_change(a, b, metric)
        evidence += (
            f", {change:+.1f} % relative"
            if change is not None
            else f"; {b_label} is at chance: no relative change"
        )
    return Claim(text, verdict_of([compare(a, b, metric)]), evidence)


def per_language_claim(
    text: str,
    ours: tuple[str, Mapping[str, float]],
    ref: tuple[str, Mapping[str, float]],
    metric: str,
) -> Claim:
    """ "``ours`` beats ``ref``" language by language (``{language: score}`` each): languages
    where both are at chance are left out of the verdict and named; no verdict when all are."""
    (a_label, a), (b_label, b) = ours, ref
    languages = [lang for lang in a if lang in b]
    usable = [
        lang
        for lang in languages
        if not (at_chance(a[lang], metric) and at_chance(b[lang], metric))
    ]
    chance = [lang for lang in languages if lang not in usable]
    if not usable:
        return no_verdict(text, f"{a_label} and {b_label} at chance on every language")
    evidence = ", ".join(f"{lang} {a[lang]:.2f} vs {b[lang]:.2f}" for lang in usable)
    evidence = f"{a_label} vs {b_label} {metric}: {evidence}"
    if chance:
        evidence += f"; left out, both at chance: {', '.join(chance)}"
    return Claim(text, verdict_of([compare(a[lang], b[lang], metric) for lang in usable]), evidence)


def render_claims(claims: Sequence[Claim], note: str = "") -> list[str]:
    """The claims block of a section: :data:`CLAIMS_HEADING` and one line per claim."""
    if not claims:
        return []
    lines = [CLAIMS_HEADING, ""]
    if note:
        lines += [note, ""]
    return [*lines, *(c.line() for c in claims), ""]


def rule_note() -> str:
    """The degeneracy rule in words, for the claims block."""
    return (
        f"Verdicts are computed from the tables below; scores closer than {TIE} count as a tie. "
        f"A system is at chance with BLEU < {BLEU_FLOOR:g} or an error rate ≥ "
        f"{ERROR_RATE_CEILING:g} %: a comparison against a teacher at chance (or one that does "
        "not beat its student), or among systems that are all at chance, has no verdict, and no "
        "relative change is taken from a reference at chance."
    )


def split_claims(text: str) -> tuple[list[str], str]:
    """The lines of the claims block of a section (without its heading) and the section without
    the block; ``([], text)`` when it has none."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == CLAIMS_HEADING), None)
    if start is None:
        return [], text
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    block = [line for line in lines[start + 1 : end]]
    while block and not block[0].strip():
        block.pop(0)
    while block and not block[-1].strip():
        block.pop()
    rest = lines[:start] + lines[end:]
    return block, "\n".join(rest) + ("\n" if text.endswith("\n") else "")


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


class Notes:
    """Numbered notes below a table, one per distinct text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"({self.texts.index(text) + 1})"

    def lines(self) -> list[str]:
        return [f"({i}) {t}  " for i, t in enumerate(self.texts, 1)] + ([""] if self.texts else [])


def table_block(
    caption: str, header: Sequence[object], rows: Iterable[Sequence[object]]
) -> list[str]:
    """A caption, a blank line, the table and a blank line."""
    return [caption, "", *md_table(header, rows), ""]


def join_section(lines: Sequence[str]) -> str:
    """The lines as one text ending in exactly one newline."""
    return "\n".join(lines).rstrip("\n") + "\n"


_ABS_PATH = re.compile(r"(?<![\w.~:/\\-])/(?:[\w.@+-]+/)+[\w.@+-]*")


def repo_root(start: str | os.PathLike) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.git``, None if there is none."""
    start = Path(os.path.abspath(start))
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _rewrite_path(raw: str, base: Path, root: Path | None) -> str:
    path = Path(os.path.normpath(raw))
    if root is not None:
        if path == root or root in path.parents:
            return Path(os.path.relpath(path, base)).as_posix()
        parts = path.parts[1:]
        for i in range(len(parts) - 1):  # a path of another checkout: its tail in this one
            tail = Path(*parts[i:])
            if len(tail.parts) >= 2 and (root / tail).exists():
                return Path(os.path.relpath(root / tail, base)).as_posix()
    return "…/" + path.name if path.name else "…"


def relative_paths(
    text: str, base: str | os.PathLike, root: str | os.PathLike | None = None
) -> str:
    """``text`` with every absolute path written relative to ``base`` (the recipe directory):
    paths inside the checkout ``root`` (default: the git checkout holding ``base``) directly, a
    path of another checkout by its part that exists in this one, any other as ``…/<name>``."""
    base = Path(os.path.abspath(base))
    top = Path(os.path.abspath(root)) if root is not None else repo_root(base)

    def rewrite(match: re.Match) -> str:
        raw = match.group(0)
        stem = raw.rstrip(".")  # a path that ends a sentence
        return _rewrite_path(stem, base, top) + raw[len(stem) :]

    return _ABS_PATH.sub(rewrite, text)


# ---------------------------------------------------------------------------------------------
# Figures and output
# ---------------------------------------------------------------------------------------------


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, out: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG atomically (no software stamp, so reruns give the same bytes) and
    close it."""
    plt = pyplot()
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(
                tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None}
            )
    finally:
        plt.close(fig)
    return out


def write_section(out: str | os.PathLike, text: str, rows: ResultRows) -> Path:
    """Write RESULTS.json (``rows``) beside ``out``, then the Markdown ``text`` to ``out``, both
    atomically; nothing when a row is bad."""
    out = Path(out)
    write_results_json(rows, results_json_path(out))
    atomic_write_text(out, text)
    return out


def link(target: str | os.PathLike, out: str | os.PathLike) -> str:
    """``target`` relative to the directory of the Markdown file ``out``."""
    return Path(os.path.relpath(Path(target).resolve(), Path(out).resolve().parent)).as_posix()
