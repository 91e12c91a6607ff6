"""icefall-style decode outputs in a decode dir, all written atomically.

* ``recogs-<set>.txt``: ``utt:\\tref=[...]`` / ``utt:\\thyp=[...]`` per utterance;
* ``errs-<set>.txt``: Kaldi summary line ``%WER 12.34 [ 5 / 40, 1 ins, 2 del, 2 sub ]``, then
  per-utterance alignments, the most frequent substitutions, deletions, insertions and the
  per-language sclite table;
* ``wer-summary-<set>.txt`` (``cer-``/``bleu-``/``chrf-`` for the other metrics);
* ``scores-<set>.json``: everything machine-readable (read by ``speechkd.eval.results``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from speechkd.eval.bleu import TranslationScore
from speechkd.eval.wer import DISPLAY_EPS, EPS, ErrorCounts, ErrorRateReport, UtteranceAlignment
from speechkd.utils.atomic import atomic_write_text

SCORES_SCHEMA_VERSION = 1


def _fmt_rate(rate: float) -> str:
    return "inf" if rate == float("inf") else f"{rate:.2f}"


def _show(symbol: str) -> str:
    """Printable form of an aligned symbol: the blank as ``*``, a space (CER) as ``<sp>``."""
    if symbol == EPS:
        return DISPLAY_EPS
    return "<sp>" if symbol == " " else symbol


def _text(tokens: tuple[str, ...], metric: str) -> str:
    return "".join(tokens) if metric == "cer" else " ".join(tokens)


def format_alignment(utt: UtteranceAlignment) -> str:
    """``a b (c->d) (*->e)``: correct tokens plain, errors as ``(ref->hyp)``."""
    return " ".join(_show(r) if r == h else f"({_show(r)}->{_show(h)})" for r, h in utt.alignment)


def summary_line(counts: ErrorCounts, metric: str) -> str:
    """Kaldi ``compute-wer`` line: ``%WER 12.34 [ 5 / 40, 1 ins, 2 del, 2 sub ]``."""
    return (
        f"%{metric.upper()} {_fmt_rate(counts.rate)} [ {counts.err} / {counts.wrd}, "
        f"{counts.ins} ins, {counts.dele} del, {counts.sub} sub ]"
    )


def sclite_header(first: str = "Set") -> str:
    return f"| {first} | Snt | Wrd | Corr | Sub | Del | Ins | Err | S.Err |"


def sclite_row(name: str, c: ErrorCounts) -> str:
    """A Markdown sclite row: counts with percentages, as ``sclite -o sum`` reports them."""

    def cell(n: int, of_snt: bool = False) -> str:
        return f"{n} ({c.percent(n, of_snt):.1f}%)"

    return (
        f"| {name} | {c.snt} | {c.wrd} | {cell(c.corr)} | {cell(c.sub)} | {cell(c.dele)} | "
        f"{cell(c.ins)} | {cell(c.err)} | {cell(c.s_err, True)} |"
    )


def _sorted_counter(counter: Counter) -> list[tuple[object, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))


def render_recogs(report: ErrorRateReport) -> str:
    lines = []
    for u in sorted(report.utterances, key=lambda u: u.utt_id):
        lines.append(f"{u.utt_id}:\tref={_text(u.ref, report.metric).split()!r}")
        lines.append(f"{u.utt_id}:\thyp={_text(u.hyp, report.metric).split()!r}")
    return "\n".join(lines) + "\n"


def render_errs(report: ErrorRateReport, missing_hyps: int = 0) -> str:
    metric = report.metric
    unit = "characters" if metric == "cer" else "words"
    t = report.totals
    lines = [
        summary_line(t, metric),
        f"%SER {t.percent(t.s_err, True):.2f} [ {t.s_err} / {t.snt} ]",
        f"Scored {t.snt} sentences, {missing_hyps} not present in hyp.",
        f"Errors: {t.ins} insertions, {t.dele} deletions, {t.sub} substitutions, "
        f"over {t.wrd} reference {unit} ({t.corr} correct)",
        "Search below for sections starting with PER-UTT DETAILS:, SUBSTITUTIONS:, "
        "DELETIONS:, INSERTIONS:, PER-LANGUAGE:",
        "",
        "PER-UTT DETAILS: corr or (ref->hyp)",
    ]
    for u in sorted(report.utterances, key=lambda u: u.utt_id):
        lines.append(f"{u.utt_id}:\t{format_alignment(u)}")
    subs, dels, ins = report.frequent_errors()
    lines += ["", "SUBSTITUTIONS: count ref -> hyp"]
    lines += [f"{n}   {_show(r)} -> {_show(h)}" for (r, h), n in _sorted_counter(subs)]
    lines += ["", "DELETIONS: count ref"]
    lines += [f"{n}   {_show(r)}" for r, n in _sorted_counter(dels)]
    lines += ["", "INSERTIONS: count hyp"]
    lines += [f"{n}   {_show(h)}" for h, n in _sorted_counter(ins)]
    lines += [
        "",
        f"PER-LANGUAGE: language {metric.upper()} (sclite counts)",
        sclite_header("Language"),
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for lang, c in report.per_language.items():
        lines.append(sclite_row(lang, c))
    lines.append(sclite_row("all", t))
    return "\n".join(lines) + "\n"


def render_summary(report: ErrorRateReport) -> str:
    lines = [f"language\t{report.metric.upper()}", f"all\t{_fmt_rate(report.totals.rate)}"]
    per_language = report.per_language
    for lang, c in per_language.items():
        lines.append(f"{lang}\t{_fmt_rate(c.rate)}")
    if len(per_language) > 1:
        lines.append(f"avg({len(per_language)} languages)\t{_fmt_rate(report.macro_average)}")
    return "\n".join(lines) + "\n"


def _round(x: float) -> float | None:
    return None if x == float("inf") else round(x, 4)


def error_rate_payload(
    report: ErrorRateReport, set_name: str, normalizers: dict[str, str], **extra
) -> dict:
    """The ``scores-<set>.json`` content of a WER/CER run."""
    per_language = report.per_language
    names = sorted(set(normalizers.values()))
    return {
        "schema": SCORES_SCHEMA_VERSION,
        "set": set_name,
        "metric": report.metric,
        "score": _round(report.totals.rate),
        "normalizer": " / ".join(names) if names else "none",
        "normalizers": dict(sorted(normalizers.items())),
        "totals": report.totals.to_dict(),
        "languages": list(per_language),
        "per_language": {lang: c.to_dict() for lang, c in per_language.items()},
        "macro_average": _round(report.macro_average),
        **extra,
    }


def translation_payload(
    score: TranslationScore,
    set_name: str,
    per_language: dict[str, TranslationScore] | None = None,
    **extra,
) -> dict:
    """The ``scores-<set>.json`` content of a BLEU/chrF run."""
    per_language = dict(sorted((per_language or {}).items()))
    avg = (
        round(sum(s.score for s in per_language.values()) / len(per_language), 4)
        if per_language
        else None
    )
    return {
        "schema": SCORES_SCHEMA_VERSION,
        "set": set_name,
        "metric": score.metric,
        "score": round(score.score, 4),
        "signature": score.signature,
        "snt": score.snt,
        "details": score.details,
        "normalizer": "none",
        "languages": list(per_language),
        "per_language": {lang: s.to_dict() for lang, s in per_language.items()},
        "macro_average": avg,
        **extra,
    }


def write_scores_json(out_dir: str | os.PathLike, set_name: str, payload: dict) -> Path:
    path = Path(out_dir) / f"scores-{set_name}.json"
    atomic_write_text(
        path, json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    )
    return path


def write_error_rate_files(
    out_dir: str | os.PathLike,
    set_name: str,
    report: ErrorRateReport,
    normalizers: dict[str, str],
    missing_hyps: int = 0,
    **extra,
) -> dict[str, Path]:
    """Write recogs, errs, summary and scores files of a WER/CER run; return their paths."""
    out_dir = Path(out_dir)
    paths = {
        "recogs": out_dir / f"recogs-{set_name}.txt",
        "errs": out_dir / f"errs-{set_name}.txt",
        "summary": out_dir / f"{report.metric}-summary-{set_name}.txt",
    }
    atomic_write_text(paths["recogs"], render_recogs(report))
    atomic_write_text(paths["errs"], render_errs(report, missing_hyps))
    atomic_write_text(paths["summary"], render_summary(report))
    payload = error_rate_payload(
        report, set_name, normalizers, missing_hypotheses=missing_hyps, **extra
    )
    paths["scores"] = write_scores_json(out_dir, set_name, payload)
    return paths


def write_translation_files(
    out_dir: str | os.PathLike,
    set_name: str,
    ids: list[str],
    refs: list[str],
    hyps: list[str],
    score: TranslationScore,
    per_language: dict[str, TranslationScore] | None = None,
    **extra,
) -> dict[str, Path]:
    """Write recogs, summary and scores files of a BLEU/chrF run; return their paths."""
    out_dir = Path(out_dir)
    lines = []
    for utt_id, ref, hyp in sorted(zip(ids, refs, hyps, strict=True)):
        lines += [f"{utt_id}:\tref={ref}", f"{utt_id}:\thyp={hyp}"]
    paths = {
        "recogs": out_dir / f"recogs-{set_name}.txt",
        "summary": out_dir / f"{score.metric}-summary-{set_name}.txt",
    }
    atomic_write_text(paths["recogs"], "\n".join(lines) + "\n")
    summary = [f"language\t{score.metric.upper()}\tsignature"]
    summary.append(f"all\t{score.score:.2f}\t{score.signature}")
    for lang, s in sorted((per_language or {}).items()):
        summary.append(f"{lang}\t{s.score:.2f}\t{s.signature}")
    atomic_write_text(paths["summary"], "\n".join(summary) + "\n")
    payload = translation_payload(score, set_name, per_language, **extra)
    paths["scores"] = write_scores_json(out_dir, set_name, payload)
    return paths
