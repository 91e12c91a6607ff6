"""The DistilWhisper report: what the run shows, the paper's Table 1, the gap closed, the
parameters and the gate activation (Fig. 2).

Inputs: the ``scores-<set>.json`` of every system's decode dir (per-language counts give the
error rate per language, "avg" is their mean, as in the paper), ``params.json`` of a system
(optional: total, trainable, inference) and the ``gate-usage-<set>.json`` of CLSR systems
(:mod:`speechkd.eval.distilwhisper_data`). The gap closed by system ``x`` is ``(E_small − E_x) /
(E_small − E_large)`` in percent, per language and on the domain average; a gap that is not
positive makes the cell "n/a". When no domain has a gap, or the teacher is at chance
(:mod:`speechkd.eval.report_kit`), the table gives way to one no-verdict line. Output: the
Markdown section, the gate plot and RESULTS.json beside the Markdown (:func:`result_rows`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechkd.errors import ConfigError
from speechkd.eval import report_kit as kit
from speechkd.eval.distilwhisper_data import (
    GapCell,
    GapTable,
    KDCost,
    Usage,
    compute_gap_table,
    domain_average,
    domain_cells,
    error_rate_rows,
    gap_reason,
    gate_bars,
    load_gate_usage,
    load_system_scores,
    metric_label,
    plot_gate_usage,
    result_rows,
)
from speechkd.eval.report_inputs import PARAM_KEYS
from speechkd.eval.report_kit import (
    DASH,
    IN_DOMAIN,
    NA,
    Claim,
    Domain,
    Notes,
    SetScores,
    fmt_rate,
    make_domains,
    mean,
)
from speechkd.eval.results_json import stable_name

Scores = Mapping[str, Mapping[str, SetScores]]  # {system: {set: SetScores}}
PAPER_GAP_OOD = 35.2  # % of the out-of-domain gap DistilWhisper closed (10k utterances)


# ---------------------------------------------------------------------------------------------
# Cost of the teacher: online versus cached
# ---------------------------------------------------------------------------------------------


def render_kd_cost(cost: KDCost) -> list[str]:
    """The teacher-cache speed-up section."""
    rows = [
        ("teacher run online", f"{cost.online_epoch_s:.1f}", DASH),
        ("teacher top-k cache", f"{cost.cached_epoch_s:.1f}", fmt_rate(cost.cache_build_s, 1)),
    ]
    total = cost.speedup_total
    tail = (
        f"; over {cost.epochs} epochs including the cache construction: {total:.2f}x."
        if total
        else "."
    )
    return [
        *kit.md_table(("KD teacher", "Seconds per epoch", "Cache construction (s)"), rows),
        "",
        f"Speed-up per epoch: {cost.speedup_per_epoch:.2f}x{tail}",
        "",
    ]


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def render_wer_table(scores: Scores, domains: Sequence[Domain]) -> list[str]:
    """Table 1: per-language rates and avg per set (and per domain with several sets)."""
    header, keys = ["System"], []
    for d in domains:
        for s in d.sets:
            langs = sorted({lang for own in scores.values() for lang in own[s].per_language})
            header += [f"{s}:{lang}" for lang in langs] + [f"{s}:avg"]
            keys += [(s, lang) for lang in langs] + [(s, None)]
        if len(d.sets) > 1:
            header.append(f"{d.name} avg")
            keys.append((d, None))
    notes, rows = Notes(), []
    for name, own in scores.items():
        row = [name]
        for where, lang in keys:
            if isinstance(where, Domain):
                row.append(fmt_rate(domain_average(own, where)))
            elif lang is not None:
                row.append(fmt_rate(own[where].per_language.get(lang)))
            else:
                text, mine = fmt_rate(own[where].average), own[where].per_language
                if set(mine) != {lang for o in scores.values() for lang in o[where].per_language}:
                    note = f"{name}: {where} avg over its {len(mine)} languages only"
                    text += " " + notes.mark(f"{note} ({', '.join(mine)}).")
                row.append(text)
        rows.append(row)
    sets_text = "; ".join(f"{d.name}: {', '.join(d.sets)}" for d in domains)
    caption = (
        f"{metric_label(scores)} (%, lower is better) per language; `<set>:avg` is the mean over "
        f"languages (the paper's avg). Sets, {sets_text}."
    )
    return [*kit.table_block(caption, header, rows), *notes.lines()]


def render_gap_table(table: GapTable, small: str, large: str, metric: str = "WER") -> list[str]:
    """Gap closed (%) per system, domain average first, then per language."""
    header = ["System"] + [f"{a} avg" if b == "avg" else f"{a}:{b}" for a, b in table.columns]
    notes, rows = Notes(), []
    for name, cells in table.cells.items():
        row = [name]
        for column in table.columns:
            cell = cells.get(column, GapCell(None))
            text = fmt_rate(cell.value, 1) if cell.value is not None else DASH
            if cell.value is None and cell.reason is not None:
                text = f"{NA} {notes.mark(cell.reason)}"
            row.append(text + (" " + notes.mark(cell.note) if cell.note else ""))
        rows.append(row)
    caption = (
        f"Gap closed (%) = 100 · ({metric}({small}) − {metric}(system)) / ({metric}({small}) − "
        f"{metric}({large})): 0 is {small}, 100 is {large}; the avg columns compare "
        f"language-averaged rates. {DASH}: a score is missing."
    )
    if not rows:
        return [caption, "", f"No system besides {small} and {large}.", ""]
    return [*kit.table_block(caption, header, rows), *notes.lines()]


def render_params_table(
    names: Sequence[str], params: Mapping[str, Mapping[str, int]], small: str | None = None
) -> list[str]:
    """Parameters: total, trainable, activated at inference, and the inference overhead."""
    base = params.get(small) if small is not None else None
    header = ["System", "Total", "Trainable", "Inference"] + (
        [f"Inference vs {small}"] if base else []
    )
    rows = []
    for name in names:
        p = params.get(name)
        row = [name] + [kit.fmt_count(p[k]) if p else DASH for k in PARAM_KEYS]
        if base is not None:
            diff = p["inference"] - base["inference"] if p else None
            sign = "+" if diff is None or diff >= 0 else "−"
            pct = (
                f" ({sign}{abs(100.0 * diff / base['inference']):.1f}%)"
                if p and base["inference"]
                else ""
            )
            row.append(DASH if diff is None else f"{sign}{kit.fmt_count(abs(diff))}{pct}")
        rows.append(row)
    caption = (
        "Parameters of each model: its Whisper weights (Total; language experts, gates and "
        "adapters not counted), those trained, and those activated at inference for one "
        f"language (from params.json; {DASH}: not given)."
    )
    return kit.table_block(caption, header, rows)


def render_gate_table(usage: Usage, domains: Sequence[Domain], part: str = "all") -> list[str]:
    """The numbers of the gate plot: share (%) of tokens routed to the language expert."""
    languages, series = gate_bars(usage, [(d.name, d.sets) for d in domains])
    rows = []
    for _, _, name, values in series:
        present = [v for v in values if not math.isnan(v)]
        rows.append([name, *(fmt_rate(v, 1) for v in values), fmt_rate(mean(present), 1)])
    caption = (
        f"Share (%) of tokens ({part}) routed to the language expert with hard gates; avg is the "
        "mean over languages."
    )
    return kit.table_block(caption, ["System, set", *languages, "avg"], rows)


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------


def _find(names: Sequence[str], prefix: str) -> list[str]:
    return [n for n in names if stable_name(n) == prefix or stable_name(n).startswith(prefix + "_")]


def _teacher_claim(scores: Scores, small: str, large: str, d: Domain) -> Claim:
    """The teacher beats the student on every language of ``d`` (no verdict at chance)."""
    metric = metric_label(scores)
    text = f"The teacher beats the zero-shot student on every target language ({d.name} {metric})"
    reason = kit.degenerate_reason(metric, {}, (large, domain_average(scores[large], d)))
    if reason is not None:
        return kit.no_verdict(text, reason)
    student = domain_cells(scores[small], d)
    pairs = [
        (k[1], t, student[k]) for k, t in domain_cells(scores[large], d).items() if k in student
    ]
    outcomes = [kit.compare(t, s, metric) for _, t, s in pairs]
    evidence = ", ".join(f"{lang} {t:.2f} vs {s:.2f}" for lang, t, s in pairs)
    return Claim(text, kit.verdict_of(outcomes), evidence)


def _gap_claim(scores: Scores, small: str, large: str, d: Domain, dw: str, others: list) -> Claim:
    """DistilWhisper closes part of the gap of ``d`` (and how much the ``others`` close)."""
    text = f"DistilWhisper closes part of the teacher–student gap ({d.name} avg "
    text += f"{metric_label(scores)}; paper: "
    text += f"{PAPER_GAP_OOD} % out of domain)"
    cells = compute_gap_table(scores, small, large, [d]).cells
    shares = {n: cells[n][(d.name, "avg")].value for n in (dw, *others)}
    reason = gap_reason(scores, small, large, d)
    if reason is not None or shares[dw] is None:
        return kit.no_verdict(text, reason or "a score is missing")
    evidence = ", ".join(f"{n} {v:.1f} %" for n, v in shares.items() if v is not None)
    return Claim(text, kit.verdict_of([kit.compare(shares[dw], 0.0, "gap")]), evidence)


def claims(scores: Scores, small: str, large: str, domains: Sequence[Domain]) -> list[Claim]:
    """The paper's claims as this run tests them, from the numbers of the tables: FT against
    zero-shot, teacher against student, DistilWhisper against CLSR-FT, the gap closed, JS
    against the KL variants."""
    metric, names = metric_label(scores), list(scores)

    def pair(text: str, ours: str, ref: str, d: Domain, relative: bool = False) -> Claim:
        a, b = domain_average(scores[ours], d), domain_average(scores[ref], d)
        text = f"{text} ({d.name} avg {metric})"
        return kit.pair_claim(text, (ours, a), (ref, b), metric, relative=relative)

    in_domain = [d for d in domains if d.name == IN_DOMAIN]
    dw = [
        n
        for n in _find(names, "distilwhisper")
        if not stable_name(n).startswith("distilwhisper_kl")
    ]
    clsr = _find(names, "clsr_ft")
    kl = [n for n in names if stable_name(n).startswith("distilwhisper_kl")]

    def by_language(text: str, ours: str, ref: str, d: Domain) -> Claim:
        a, b = domain_cells(scores[ours], d), domain_cells(scores[ref], d)
        label = (lambda k: k[1]) if len(d.sets) == 1 else (lambda k: f"{k[0]}:{k[1]}")
        a, b = {label(k): v for k, v in a.items()}, {label(k): v for k, v in b.items()}
        return kit.per_language_claim(
            f"{text} ({d.name}, per language)", (ours, a), (ref, b), metric
        )

    lowers = "FT lowers the error rate of the zero-shot student"
    out = [pair(lowers, ft, small, d, True) for ft in _find(names, "ft") for d in in_domain]
    out += [_teacher_claim(scores, small, large, d) for d in in_domain]
    out += [
        by_language("DistilWhisper beats CLSR-FT", dw[0], clsr[0], d)
        for d in domains
        if dw and clsr
    ]
    out += [_gap_claim(scores, small, large, d, dw[0], clsr) for d in domains if dw]
    out += [
        by_language(f"JS beats the KL variant {k}", dw[0], k, d) for k in kl if dw for d in domains
    ]
    return out


# ---------------------------------------------------------------------------------------------
# The section and RESULTS.json
# ---------------------------------------------------------------------------------------------


def render_report(
    scores: Scores,
    small: str,
    large: str,
    domains: Sequence[Domain],
    params: Mapping[str, Mapping[str, int]] | None = None,
    gate_usage: Usage | None = None,
    plot_link: str | None = None,
    title: str = "DistilWhisper",
    gate_part: str = "all",
    kd_cost: KDCost | None = None,
    rescored: Sequence[Scores] = (),
) -> str:
    """The Markdown section: claims, Table 1, gap closed (for the decodes' metric and each
    ``rescored`` one), parameters, gate usage, KD cost."""
    every = [scores, *rescored]
    found = [c for own in every for c in claims(own, small, large, domains)]
    lines = [f"## {title}", "", *kit.render_claims(found)]
    for own in every:
        suffix = "" if own is scores else f", {metric_label(own)}"
        lines += [f"### Error rates (Table 1){suffix}", "", *render_wer_table(own, domains)]
        lines += [f"### Gap closed between {small} and {large}{suffix}", ""]
        lines += _gap_lines(own, small, large, domains)
    lines += ["### Parameters", "", *render_params_table(list(scores), params or {}, small)]
    if gate_usage:
        lines += ["### Gate activation (Fig. 2)", ""]
        if plot_link is not None:
            lines += [f"![Share of tokens routed to the language expert]({plot_link})", ""]
        lines += render_gate_table(gate_usage, domains, gate_part)
    if kd_cost is not None:
        lines += ["### Cost of the teacher: online versus cached", "", *render_kd_cost(kd_cost)]
    return kit.join_section(lines)


def _gap_lines(scores: Scores, small: str, large: str, domains: Sequence[Domain]) -> list[str]:
    """The gap-closed table of the domains with a gap, and a no-verdict line for the others."""
    lines: list[str] = []
    reasons = {d.name: r for d in domains if (r := gap_reason(scores, small, large, d))}
    if kept := [d for d in domains if d.name not in reasons]:  # no gap taken from degenerate ones
        table = compute_gap_table(scores, small, large, kept)
        lines += render_gap_table(table, small, large, metric_label(scores))
    if reasons:
        shown = "; ".join(f"{name}: {r}" for name, r in reasons.items())
        lines += [f"**{kit.NO_VERDICT}** ({shown}).", ""]
    return lines


def write_report(
    systems: Mapping[str, str | os.PathLike],
    small: str,
    large: str,
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
    out: str | os.PathLike,
    params: Mapping[str, str | os.PathLike] | None = None,
    gate_systems: Mapping[str, str | os.PathLike] | None = None,
    plot: str | os.PathLike | None = None,
    title: str = "DistilWhisper",
    gate_part: str = "all",
    kd_cost: KDCost | None = None,
    rescore: Sequence[str] = (),
) -> Path:
    """Load every input and write the gate plot (with gate systems), RESULTS.json beside ``out``
    and the Markdown; ``systems`` is name → decode dir in table order, ``params`` name →
    params.json; the plot is linked relative to the directory of ``out``."""
    for ref in (small, large):
        if ref not in systems:
            raise ConfigError(f"reference system {ref!r} is not among the systems {list(systems)}")
    if set(params or {}) - set(systems):
        raise ConfigError(
            f"params given for unknown systems {sorted(set(params or {}) - set(systems))}"
        )
    if gate_systems and plot is None:
        raise ConfigError("gate systems need a plot path")
    domains = make_domains(in_domain, out_of_domain)
    sets = [s for d in domains for s in d.sets]
    scores = load_system_scores(systems, sets)
    rescored = [
        {
            n: {k: kit.rescore_set_scores(v, metric) for k, v in own.items()}
            for n, own in scores.items()
        }
        for metric in dict.fromkeys(rescore)
        if metric not in {v.metric for own in scores.values() for v in own.values()}
    ]
    loaded = {name: kit.load_params(path) for name, path in (params or {}).items()}
    usage = load_gate_usage(gate_systems, sets, gate_part) if gate_systems else None
    link = None
    if usage:
        pairs, ood = [(d.name, d.sets) for d in domains], out_of_domain
        link = kit.link(plot_gate_usage(usage, pairs, plot, gate_part, hatched=ood), out)
    text = render_report(
        scores, small, large, domains, loaded, usage, link, title, gate_part, kd_cost, rescored
    )
    rows = result_rows(scores, small, large, domains, loaded, usage, kd_cost)
    for own in rescored:
        rows += error_rate_rows(
            own, small, large, domains, f"gap_closed_{metric_label(own).lower()}"
        )
    return kit.write_section(out, text, rows)
