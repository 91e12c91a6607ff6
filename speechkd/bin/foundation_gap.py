"""The teacher–student gap of the Whisper foundation models, before any method runs.

Reads the decodes of the two foundation models (``hyp-<set>.txt`` / ``ref-<set>.txt`` and
``scores-<set>.json`` from :mod:`speechkd.bin.whisper_decode`) on the same cuts, scores WER and CER
per language (Whisper normalisation; scripts without spaces split into characters for WER) and
writes a Markdown section with the gap (student minus teacher) and whether the teacher is better,
plus ``RESULTS.json`` rows (systems ``teacher`` and ``zero_shot``) beside it::

    python -m speechkd.bin.foundation_gap --teacher exp/whisper_foundation/teacher/decode \\
        --student exp/whisper_foundation/student/decode --sets test test_ood \\
        --out exp/whisper_foundation/gap.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechkd.errors import DataError
from speechkd.eval.report_kit import rescore_decode
from speechkd.eval.results_json import ALL, ResultRows, results_json_path, write_results_json
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

METRICS = ("wer", "cer")
Rates = dict[str, dict[str, float]]  # metric -> language (or "all") -> rate %


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--teacher", required=True, help="decode directory of the teacher")
    p.add_argument("--student", required=True, help="decode directory of the zero-shot student")
    p.add_argument("--sets", nargs="+", required=True, help="set names decoded by both")
    p.add_argument("--out", required=True, help="Markdown section to write (RESULTS.json beside)")
    p.add_argument(
        "--title", default="Teacher–student gap of the foundation models", help="section title"
    )
    return p


def decode_rates(decode_dir: Path, set_name: str) -> Rates:
    """WER and CER (%) of one decode, per language and pooled (``all``)."""
    scores = decode_dir / f"scores-{set_name}.json"
    try:
        payload = json.loads(scores.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{scores}: missing (decode the set first)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{scores}: not JSON ({err})") from None
    cuts = payload.get("cuts")
    if not cuts:
        raise DataError(f"{scores}: no 'cuts' field to read the languages from")
    rates: Rates = {}
    for metric in METRICS:
        report = rescore_decode(decode_dir, set_name, metric, cuts)
        rates[metric] = {lang: c.rate for lang, c in report.per_language.items()}
        rates[metric][ALL] = report.totals.rate
    return rates


def gap_section(title: str, teacher: dict[str, Rates], student: dict[str, Rates]) -> list[str]:
    """Markdown: one row per set and language, WER and CER of both models and the gap."""
    lines = [
        f"### {title}",
        "",
        "Gap = zero-shot student minus teacher (points); the methods adapt the student and, for "
        "DistilWhisper, distil from the teacher.",
        "",
        "| Set | Language | Teacher WER | Student WER | WER gap | Teacher CER | Student CER "
        "| CER gap | Teacher better |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for set_name, t_rates in teacher.items():
        s_rates = student[set_name]
        languages = [k for k in t_rates["cer"] if k != ALL] + [ALL]
        for lang in languages:
            tw, sw = t_rates["wer"][lang], s_rates["wer"][lang]
            tc, sc = t_rates["cer"][lang], s_rates["cer"][lang]
            better = "yes" if tc < sc and tw < sw else ("no" if tc >= sc and tw >= sw else "mixed")
            name = "average (pooled)" if lang == ALL else lang
            lines.append(
                f"| {set_name} | {name} | {tw:.1f} | {sw:.1f} | {sw - tw:+.1f} | {tc:.1f} "
                f"| {sc:.1f} | {sc - tc:+.1f} | {better} |"
            )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    teacher = {s: decode_rates(Path(args.teacher), s) for s in args.sets}
    student = {s: decode_rates(Path(args.student), s) for s in args.sets}
    for set_name in args.sets:
        if set(teacher[set_name]["cer"]) != set(student[set_name]["cer"]):
            raise DataError(
                f"set {set_name}: the teacher and student decodes cover different languages"
            )
    rows = ResultRows()
    for system, rates in (("teacher", teacher), ("zero_shot", student)):
        for set_name, by_metric in rates.items():
            for metric, by_lang in by_metric.items():
                for lang, value in by_lang.items():
                    rows.add(system, set_name, lang, metric, round(value, 2))
    out = Path(args.out)
    atomic_write_text(out, "\n".join(gap_section(args.title, teacher, student)))
    write_results_json(rows, results_json_path(out))
    return 0


if __name__ == "__main__":
    run_cli(main)
