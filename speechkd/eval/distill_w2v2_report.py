"""The DistillW2V2 report: what the run shows, model sizes and speed (the paper's Table 1), the
two-step distillation against a single step (Table 2) and the training-objective ablation M1-M4
(Table 3), from the inputs of :mod:`speechkd.eval.distill_w2v2_data`.

A cell of a decode made chunk by chunk is marked ``*``; a missing result shows as "–" and is
listed below its table. Full-context systems have no look-ahead bound ("–"). Output: the Markdown
section and RESULTS.json beside it (:func:`speechkd.eval.distill_w2v2_data.result_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechkd.eval import report_kit as kit
from speechkd.eval.distill_w2v2_data import (
    BEST_PATH,
    LM,
    PAPER_SETS,
    PAPER_TABLE2,
    PAPER_TABLE3,
    ROLE_TITLES,
    Column,
    Comparison,
    PairResult,
    ReportData,
    SystemInfo,
    ablation_rows,
    cell_result,
    collect,
    compare,
    compare_lfmmi,
    compare_two_step,
    decode_rtf,
    decoder_title,
    load_decode,
    mse_reference,
    result_rows,
    table2_rows,
    table_columns,
)
from speechkd.eval.markdown import md_table
from speechkd.eval.report_kit import DASH, Claim, fmt_rate
from speechkd.eval.rtf import PAPER_TABLE1


def _count(n: float | None) -> str:
    if n is None:
        return DASH
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(int(n))


def _opt(x: float | None, fmt: str) -> str:
    return DASH if x is None else format(x, fmt)


def _ratio(x: float | None) -> str:
    """``12.0x``; two decimals below 1 (``0.04x``)."""
    return DASH if x is None else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


def _weight(x: float | None) -> str:
    return DASH if x is None else f"{x:g}"


def _latency(s: SystemInfo) -> str:
    return DASH if s.latency_ms is None else f"{s.latency_ms:g} ms"


class _Notes:
    """Missing results shown as "–" and stand-in streaming results, listed below a table."""

    def __init__(self, data: ReportData) -> None:
        self.data = data
        self.missing: list[str] = []
        self.stand_in: list[str] = []
        self.split = False

    def cell(self, label: str, column: Column) -> str:
        key = (label, column.set_name, column.decoder)
        result = cell_result(self.data, label, column)
        if result is not None:
            if result.streaming:
                self.stand_in.append(f"{label} on {column.set_name}")
                return fmt_rate(result.rate) + "*"
            return fmt_rate(result.rate)
        if key in self.data.missing:
            looked = " or ".join(
                f"{p}/scores-{column.set_name}.json" for p in self.data.missing[key]
            )
            entry = f"{label}, {column.set_name}, {_DECODER_NAMES[column.decoder]}: {looked}"
            if entry not in self.missing:
                self.missing.append(entry)
        elif key in self.data.results:
            self.split = True
        return DASH

    def lines(self) -> list[str]:
        out = []
        if self.stand_in:
            out.append(
                "\\* decoded chunk by chunk (streaming; decode_<set>_streaming where decode_<set> "
                f"is missing): {', '.join(sorted(set(self.stand_in)))}."
            )
        if self.split:
            out.append(
                "A set whose systems scored different units has one column per unit; a system's "
                f"rate is in the column of its units ({DASH} in the other)."
            )
        if self.missing:
            out.append(f"{DASH}: missing result(s) (not found):")
            out += [f"- {m}" for m in self.missing]
        return [*out, ""] if out else []


_DECODER_NAMES = {BEST_PATH: "best path", LM: "lexicon + LM"}


def render_table1(data: ReportData) -> list[str]:
    """Architectures from the RTF JSON (Table 1) and the systems' own sizes and decode speed."""
    lines: list[str] = []
    teacher = next((s for s in data.systems if s.role == "teacher"), None)
    if data.rtf is not None:
        rows = data.rtf["rows"]
        by_model = {r["model"]: r for r in rows}
        ref_model = teacher.arch if teacher and teacher.arch in by_model else None
        if ref_model is None and "T1" in by_model:
            ref_model = "T1"
        ref = by_model.get(ref_model) if ref_model else None
        streaming = bool(data.rtf["settings"].get("streaming"))
        header = [
            "Model", "CNN-Enc.1-2 dim", "Encoder dim", "FFN dim", "Blocks", "Params (ours)",
            "Params (paper)", "diff %", "RTF", "RTF (paper)",
            f"smaller than {ref_model or 'teacher'}", f"faster than {ref_model or 'teacher'}",
        ]  # fmt: skip
        if streaming:
            header += ["RTF streaming", "ms / chunk"]
        table = []
        for r in rows:
            paper = r.get("params_paper")
            diff = 100.0 * (r["params"] - paper) / paper if paper else None
            smaller = ref["params"] / r["params"] if ref and r["params"] else None
            faster = ref["rtf"] / r["rtf"] if ref and ref.get("rtf") and r.get("rtf") else None
            row = [
                r["model"], r["cnn_channels"], r["encoder_dim"], r["ffn_dim"], r["blocks"],
                _count(r["params"]), _count(paper), _opt(diff, "+.1f"), _opt(r.get("rtf"), ".3f"),
                _opt(r.get("rtf_paper"), ".3f"), _ratio(smaller), _ratio(faster),
            ]  # fmt: skip
            if streaming:
                row += [_opt(r.get("rtf_streaming"), ".3f"), _opt(r.get("chunk_ms_short"), ".1f")]
            table.append(row)
        env, s = data.rtf["environment"], data.rtf["settings"]
        lines += [
            f"Architectures (`speechkd.bin.rtf --json`): {env.get('cpu', '?')}, "
            f"{env.get('threads', '?')} thread(s), torch {env.get('torch', '?')}; RTF = "
            f"processing time ({s.get('clock', 'wall')} clock) / audio duration on "
            f"{s.get('audio_seconds', '?')} s of random audio (paper: one thread of an Intel "
            f"8255C). Params (ours): encoder + prediction layer, no quantiser; {_units(s)}",
            "",
            *md_table(header, table),
            "",
        ]
    else:
        lines += ["No RTF table given (`python -m speechkd.bin.rtf --json`).", ""]
    header = [
        "System", "Role", "Arch", "Variant", "(hist, chunk)", "Latency", "Learned from", "Params",
        "Params (paper, arch)", "smaller than teacher", "Decode RTF (device)",
    ]  # fmt: skip
    table = []
    for sys_ in data.systems:
        paper = PAPER_TABLE1.get(sys_.arch)
        smaller = teacher.params / sys_.params if teacher and sys_.params else None
        table.append(
            [
                sys_.label, sys_.role, sys_.arch, sys_.variant, sys_.context, _latency(sys_),
                sys_.teacher or DASH, _count(sys_.params), _count(paper[0] if paper else None),
                _ratio(smaller), _decode_rtf(data, sys_.label),
            ]
        )  # fmt: skip
    lines += [
        "Systems (params from system.json; decode RTF = decode time / audio over the best-path "
        "decodes of all sets, audio loading and search included):",
        "",
        *md_table(header, table),
        "",
    ]
    return lines


def _decode_rtf(data: ReportData, label: str) -> str:
    rtf, devices = decode_rtf(data, label)
    return _opt(rtf, ".4f") + (f" ({', '.join(devices)})" if devices else "")


def render_table2(data: ReportData) -> list[str]:
    """Table 2: teacher, first and second step, single step; the paper's numbers below."""
    labels = table2_rows(data)
    columns = table_columns(data, labels)
    titles = {c: decoder_title(data, c, labels) for c in columns}
    notes = _Notes(data)
    header = ["Steps", "System", "(hist, chunk)", "latency"]
    header += [f"{c.set_name} {c.label} ({titles[c]})" for c in columns]
    rows = []
    for label in labels:
        s = data.system(label)
        cells = [notes.cell(label, c) for c in columns]
        rows.append([ROLE_TITLES[s.role], label, s.context, _latency(s), *cells])
    paper = ", ".join(f"{ROLE_TITLES[r]} {a:.2f} / {b:.2f}" for r, (a, b) in PAPER_TABLE2.items())
    return [
        "(hist, chunk): attention history and chunk in frames of 20 ms (∞: full context); "
        "latency: average look-ahead = chunk / 2 × 20 ms. Lower is better.",
        "",
        *md_table(header, rows),
        "",
        *notes.lines(),
        f"Paper (WER, {' / '.join(PAPER_SETS)}; (600, 48), 480 ms): {paper}: two-step 15% "
        "relative better than single step.",
        "",
    ]


def _objective(s: SystemInfo) -> tuple[str, str]:
    """(hidden, pred) of Eq. (1)-(3): hidden MSE when α < 1, pred MSE / LF-MMI by β."""
    hidden = "MSE" if s.alpha is not None and s.alpha < 1 else DASH
    if s.alpha == 0 or s.beta is None:
        pred = DASH
    else:
        pred = "MSE" if s.beta == 0 else "LF-MMI" if s.beta == 1 else "MSE/LF-MMI"
    return hidden, pred


def render_table3(data: ReportData) -> list[str]:
    """Table 3: first-step training objectives M1-M4; the paper's numbers below."""
    labels = ablation_rows(data)
    if not any(data.system(x).role == "step1" for x in labels):
        return ["No first-step system with a setting (M1-M4) was given.", ""]
    columns = table_columns(data, labels)
    titles = {c: decoder_title(data, c, labels) for c in columns}
    notes = _Notes(data)
    header = ["Objective", "System", "α", "β", "hidden", "pred"]
    header += [f"{c.set_name} {c.label} ({titles[c]})" for c in columns]
    rows = []
    for label in labels:
        s = data.system(label)
        objective = "Teacher" if s.role == "teacher" else str(s.setting)
        hidden, pred = _objective(s) if s.role == "step1" else (DASH, DASH)
        cells = [notes.cell(label, c) for c in columns]
        rows.append([objective, label, _weight(s.alpha), _weight(s.beta), hidden, pred, *cells])
    paper = ", ".join(
        f"{m} (α = {a:g}, β = {b:g}) {g:.2f} / {h:.2f}" for m, (a, b, g, h) in PAPER_TABLE3.items()
    )
    return [
        "L = (1 − α) L_hidn + α L_pred, L_pred = β MMI_distill + (1 − β) MSE. Lower is better.",
        "",
        *md_table(header, rows),
        "",
        *notes.lines(),
        f"Paper (WER, {' / '.join(PAPER_SETS)}): {paper}.",
        "",
    ]


def streaming_rows(data: ReportData) -> list[list[str]]:
    """Per streaming decode: system, set, decoder, rate, chunk-masked, streaming, equal, RTF."""
    rows = []
    for (label, set_name, decoder), stream in data.streaming.items():
        masked = load_decode(data.system(label).directory, set_name, decoder, False)
        if masked is not None and masked.streaming:
            masked = None  # decode_<set> was streamed as well: no chunk-masked result
        same = DASH
        if masked is not None and masked.label == stream.label:
            same = "yes" if fmt_rate(masked.rate) == fmt_rate(stream.rate) else "no"
        rows.append(
            [
                label, set_name, _DECODER_NAMES[decoder], stream.label,
                fmt_rate(masked.rate) if masked else DASH, fmt_rate(stream.rate), same,
                _opt(stream.rtf, ".4f"),
            ]
        )  # fmt: skip
    return rows


def render_streaming(data: ReportData) -> list[str]:
    """Chunk-by-chunk streaming decoding against the chunk-masked full-utterance decoding."""
    rows = streaming_rows(data)
    if not rows:
        return []
    header = ["System", "Set", "Decoder", "Rate", "chunk-masked", "streaming", "equal"]
    header.append("streaming RTF")
    return [
        "Streaming students decoded chunk by chunk (decode_<set>_streaming) against one forward "
        "pass with the chunk attention mask (decode_<set>); both see the same context.",
        "",
        *md_table(header, rows),
        "",
    ]


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------

# the paper's relative WER increase of a student over the teacher (Gigaspeech, Table 2)
PAPER_MARGIN = {
    role: 100.0 * (PAPER_TABLE2[role][0] - PAPER_TABLE2["teacher"][0]) / PAPER_TABLE2["teacher"][0]
    for role in ("step1", "step2")
}


def _units(settings: Mapping[str, Any]) -> str:
    """Why the counts differ from the paper's: the prediction layer's output units."""
    n = settings.get("num_outputs")
    if n is None:
        return "diff % is relative to the paper."
    return (
        f"the prediction layer has {n} outputs (the recipe's units) where the paper's predicts "
        "its own vocabulary, so diff % (relative to the paper) includes that layer's size."
    )


def _columns_text(comps: Sequence[Comparison], titles: Mapping[Column, str]) -> str:
    parts = []
    for c in comps:
        name = f"{c.column.label} {titles[c.column]}"
        if c.reason is not None:
            parts.append(f"{name}: no verdict ({c.reason})")
            continue
        rel = f", {c.relative:+.1f} % relative reduction" if c.relative is not None else ""
        parts.append(f"{name} {c.ours_rate:.2f} vs {c.ref_rate:.2f}{rel}")
    return "; ".join(parts)


def _pair_claim(text: str, pair: PairResult, set_name: str, titles: Mapping) -> Claim:
    comps = [c for c in pair.comparisons if c.column.set_name == set_name]
    verdict = pair.verdicts[set_name]
    if verdict is None:
        return _untested(text, "a result is missing")
    if verdict == kit.NO_VERDICT:
        return kit.no_verdict(text, "; ".join(dict.fromkeys(str(c.reason) for c in comps)))
    return Claim(text, verdict, _columns_text(comps, titles))


OUTCOMES = {"yes": [1], "no": [-1], "mixed": [1, -1]}


def _lfmmi_claim(data: ReportData, set_name: str) -> list[Claim]:
    """Every LF-MMI setting (β > 0) against the MSE-only one, each verdict over its columns."""
    ref, pairs = mse_reference(data), compare_lfmmi(data)
    if ref is None or not pairs:
        return []
    text = f"LF-MMI distillation (β > 0) beats the MSE-only {ref.setting} on {set_name}"
    text += " (paper: M4 12.37 vs M1 14.29)"
    verdicts = {data.system(p.ours).setting: p.verdicts[set_name] for p in pairs}
    outcomes = [o for v in verdicts.values() for o in OUTCOMES.get(str(v), [])]
    if not outcomes:
        reasons = dict.fromkeys(str(c.reason) for p in pairs for c in p.comparisons if c.reason)
        return [kit.no_verdict(text, "; ".join(reasons)) if reasons else _untested(text)]
    shown = ", ".join(f"{m} {v if v in OUTCOMES else 'no verdict'}" for m, v in verdicts.items())
    return [Claim(text, kit.verdict_of(outcomes), f"{shown}; Table 3")]


def _margin_claim(data: ReportData, s: SystemInfo, set_name: str, titles: Mapping) -> Claim:
    """A student stays within the paper's relative distance of the teacher in every column."""
    teacher = next(t for t in data.systems if t.role == "teacher")
    margin = PAPER_MARGIN[s.role]
    who = "first-step student" if s.role == "step1" else "streaming student"
    text = f"The {who} {s.label} stays within the paper's {margin:+.1f} % of the teacher's error"
    text += f" rate on {set_name}"
    columns = [c for c in table_columns(data, [s.label, teacher.label]) if c.set_name == set_name]
    outcomes, parts, reasons = [], [], []
    for c in compare(data, s.label, teacher.label, columns):
        name = f"{c.column.label} {titles.get(c.column, '')}"
        reason = kit.degenerate_reason(c.column.label, {}, (teacher.label, c.ref_rate))
        change = kit.relative_change(c.ours_rate, c.ref_rate, c.column.label)
        if reason is not None or change is None:
            reasons.append(reason or f"{teacher.label} has no error")
            parts.append(f"{name}: no verdict ({reasons[-1]})")
            continue
        outcomes.append(1 if change <= margin else -1)
        parts.append(f"{name} {c.ours_rate:.2f} vs {c.ref_rate:.2f}, {change:+.1f} %")
    if not outcomes:
        return kit.no_verdict(text, "; ".join(reasons)) if reasons else _untested(text)
    return Claim(text, kit.verdict_of(outcomes), "; ".join(parts))


def _untested(text: str, why: str = "no result in a common column") -> Claim:
    return Claim(text, kit.NOT_TESTED, why)


def _streaming_claim(rows: Sequence[Sequence[str]]) -> list[Claim]:
    """Chunk-by-chunk decoding against the chunk-masked decoding of the same students."""
    equal = [r for r in rows if r[6] != DASH]
    if not equal:
        return []
    same = ", ".join(f"{r[0]} {r[1]} {r[3]} {r[4]} vs {r[5]}" for r in equal)
    verdict = kit.YES if all(r[6] == "yes" for r in equal) else kit.NO
    return [Claim("Chunk-by-chunk decoding gives the chunk-masked result", verdict, same)]


def claims(data: ReportData) -> list[Claim]:
    """Two-step against single-step distillation, LF-MMI against MSE only, the students against
    the teacher and streaming decoding against the chunk mask."""
    labels, ablation = table2_rows(data), ablation_rows(data)
    titles = {c: decoder_title(data, c, ablation) for c in table_columns(data, ablation)}
    titles |= {c: decoder_title(data, c, labels) for c in table_columns(data, labels)}
    out: list[Claim] = []
    if not compare_two_step(data) and any(x.role == "step2" for x in data.systems):
        step2 = [x.label for x in data.systems if x.role == "step2"]
        single = [x.label for x in data.systems if x.role == "single_step"]
        why = "no second-step and single-step systems with the same arch and (hist, chunk); "
        why += f"second step: {', '.join(step2)}, single step: {', '.join(single) or DASH}"
        out.append(_untested("Two-step distillation beats single-step", why))
    for pair in compare_two_step(data):
        for s in data.sets:
            text = f"Two-step distillation ({pair.ours}) beats single-step ({pair.ref}) on {s}"
            out.append(_pair_claim(f"{text} (paper: 15 % relative)", pair, s, titles))
    out += [c for s in data.sets for c in _lfmmi_claim(data, s)]
    if any(x.role == "teacher" for x in data.systems):
        students = [data.system(x) for x in labels if data.system(x).role in PAPER_MARGIN]
        out += [_margin_claim(data, st, s, titles) for st in students for s in data.sets]
    return out + _streaming_claim(streaming_rows(data))


def render_report(data: ReportData, title: str = "DistillW2V2") -> str:
    """The Markdown section."""
    lines = [f"## {title}", "", *kit.render_claims(claims(data))]
    lines += ["### Model configuration, parameters and RTF (Table 1)", "", *render_table1(data)]
    lines += ["### Two-step distillation (Table 2)", "", *render_table2(data)]
    lines += ["### First-step training objective (Table 3)", "", *render_table3(data)]
    streaming = render_streaming(data)
    if streaming:
        lines += ["### Streaming decoding", "", *streaming]
    return kit.join_section(lines)


def write_report(
    systems: Mapping[str, str | os.PathLike],
    sets: Sequence[str],
    out: str | os.PathLike,
    rtf: str | os.PathLike | None = None,
    title: str = "DistillW2V2",
) -> Path:
    """Load the inputs (systems: label → system dir, in table order) and write the Markdown and
    RESULTS.json beside it."""
    data = collect(systems, sets, rtf)
    return kit.write_section(out, render_report(data, title), result_rows(data))
