"""The S2-LoRA report: what the run shows, the paper's Table 2, the change against zero-shot and
Fig. 3 in numbers.

Inputs (:mod:`speechkd.eval.s2lora_data`): the pooled error rate of every system per test set,
``params.json`` of a trained system ("% trainable" is ``trainable / total``, the Whisper weights,
adapters excluded), the rank JSON of ``speechkd.bin.pruning_plots ranks`` and the table of
``speechkd.bin.peft_param_table`` (its Table-2 part is kept).

A system whose learned update is zero (:mod:`speechkd.eval.learned_update`: rank 0 in every
adapted matrix, or its merged model equal to the baseline's) is collapsed: the section says so
first, its error rates read "collapsed" and RESULTS.json has ``collapsed = 1`` instead of them.
RESULTS.json beside the Markdown holds every number of the tables.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval import report_kit as kit
from speechkd.eval.learned_update import collapse_reason
from speechkd.eval.pruning_plots import RankTable as Ranks
from speechkd.eval.pruning_plots import load_ranks, render_rank_table
from speechkd.eval.report_kit import DASH, Claim, fmt_rate
from speechkd.eval.s2lora_data import (
    COLLAPSED,
    SystemResult,
    check_metrics,
    load_set_rate,
    mark_collapses,
    result_name,
    result_rows,
    table2_part,
)

PAPER_PCT = {"s2lora": 0.02, "adalora": 0.46}  # % trainable on whisper-medium (Table 2)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def format_percent(pct: float | None) -> str:
    """Two decimals as in the paper (0.02%); a share that rounds to zero is "<0.01%"."""
    if pct is None:
        return DASH
    return "<0.01%" if 0 < pct < 0.005 else f"{pct:.2f}%"


def render_main_table(
    results: Sequence[SystemResult], in_domain: Sequence[str], out_of_domain: Sequence[str]
) -> list[str]:
    """Table 2: trainable parameters, % trainable and the error rate per set (best in bold)."""
    sets = [*in_domain, *out_of_domain]
    metrics = check_metrics(results, sets)
    header = ["Method", "#Trainable params", "% trainable"]
    header += [f"{s} {metrics[s].upper()}" for s in sets]
    best = {}
    for s in sets:  # the lowest finite rate, when the rates differ
        values = [r.rates[s].rate for r in results if not r.collapse]
        finite = [v for v in values if math.isfinite(v)]
        best[s] = min(finite) if finite and len(set(values)) > 1 else None
    rows = []
    for r in results:
        row = [f"{r.name} ({COLLAPSED})" if r.collapse else r.name]
        row += [kit.fmt_count(r.params["trainable"] if r.params else None, million_from=1e6)]
        row += [format_percent(r.trainable_percent)]
        for s in sets:
            text = COLLAPSED if r.collapse else fmt_rate(r.rates[s].rate)
            row.append(f"**{text}**" if not r.collapse and r.rates[s].rate == best[s] else text)
        rows.append(row)
    sizes = ", ".join(f"{s}: {results[0].rates[s].utterances}" for s in sets) if results else ""
    caption = (
        f"Error rates (%) per test set; in-domain: {', '.join(in_domain) or DASH}; "
        f"out-of-domain: {', '.join(out_of_domain) or DASH}. The lowest of each column (if they "
        "differ) is in bold. % trainable: trainable parameters over the Whisper parameters "
        "(adapters excluded); every adapter is merged into the weights after training, so "
        f"inference costs the Whisper parameters alone. Utterances per set: {sizes}."
    )
    return kit.table_block(caption, header, rows)


def render_change_table(
    results: Sequence[SystemResult],
    baseline: str,
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
) -> list[str]:
    """Error rate minus the baseline's, per set (negative: better), and who helped where."""
    base = next(r for r in results if r.name == baseline)
    sets, others = [*in_domain, *out_of_domain], [r for r in results if r.name != baseline]
    rows = []
    for r in others:
        diffs = [r.rates[s].rate - base.rates[s].rate for s in sets]
        cells = (
            [COLLAPSED] * len(sets)
            if r.collapse
            else [f"{d:+.2f}" if math.isfinite(d) else DASH for d in diffs]
        )
        rows.append([f"{r.name} ({COLLAPSED})" if r.collapse else r.name, *cells])
    caption = f"Error rate minus that of {baseline}, in points (negative: the method helped)."
    lines = kit.table_block(caption, ["Method", *(f"Δ {s}" for s in sets)], rows)
    compared = [r for r in others if not r.collapse]
    for s in sets:
        domain = kit.IN_DOMAIN if s in in_domain else kit.OUT_OF_DOMAIN
        side = {
            r.name: (r.rates[s].rate > base.rates[s].rate) - (r.rates[s].rate < base.rates[s].rate)
            for r in compared
        }
        parts = [
            f"better than {baseline}: {', '.join(n for n, v in side.items() if v < 0) or 'none'}"
        ]
        parts.append(f"worse: {', '.join(n for n, v in side.items() if v > 0) or 'none'}")
        if same := [n for n, v in side.items() if v == 0]:
            parts.append(f"unchanged: {', '.join(same)}")
        lines.append(f"- {s} ({domain}, {base.rates[s].metric.upper()}): " + "; ".join(parts))
    if collapsed := [r.name for r in others if r.collapse]:
        lines.append(f"- {COLLAPSED} (no update learned, not compared): {', '.join(collapsed)}")
    return [*lines, ""]


def render_collapse_note(results: Sequence[SystemResult]) -> list[str]:
    """A plain statement of every collapsed system, or nothing."""
    collapsed = [r for r in results if r.collapse]
    if not collapsed:
        return []
    lines = [
        f"**{COLLAPSED.capitalize()}: {', '.join(r.name for r in collapsed)}.** These trainings "
        "learned no update: their decodes are those of the starting model, not results of the "
        "methods, and their error rates are left out below.",
        "",
    ]
    return [*lines, *(f"- {r.name}: {r.collapse}" for r in collapsed), ""]


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------


def _rate_pair(r: SystemResult, s: str) -> tuple[str, float]:
    return r.name, r.rates[s].rate


def _adapts(results, baseline: SystemResult, s: str) -> Claim:
    """Every PEFT method (not Full-FT) lowers the error rate of ``s`` below zero-shot."""
    metric = baseline.rates[s].metric.upper()
    peft = [
        r for r in results if r is not baseline and not r.collapse and result_name(r.name) != "full"
    ]
    text = f"Every PEFT method lowers the {s} {metric} below {baseline.name}"
    reason = kit.degenerate_reason(metric, dict(_rate_pair(r, s) for r in [baseline, *peft]))
    if reason is not None or not peft:
        return (
            kit.no_verdict(text, reason)
            if reason
            else Claim(text, kit.NOT_TESTED, "no PEFT method")
        )
    fails = [r for r in peft if not kit.beats(r.rates[s].rate, baseline.rates[s].rate, metric)]
    listed = ", ".join(f"{r.name} {r.rates[s].rate:.2f}" for r in fails or peft)
    evidence = f"{baseline.name} {baseline.rates[s].rate:.2f}; " + (
        f"not below: {listed}" if fails else listed
    )
    return Claim(text, kit.YES if not fails else kit.NO, evidence)


def _forgets(results, baseline: SystemResult, s: str) -> Claim:
    """No method raises the error rate of the out-of-domain set ``s`` above zero-shot."""
    metric = baseline.rates[s].metric.upper()
    others = [r for r in results if r is not baseline and not r.collapse]
    text = f"No method forgets {s} ({metric} not above {baseline.name})"
    reason = kit.degenerate_reason(metric, dict(_rate_pair(r, s) for r in [baseline, *others]))
    if reason is not None:
        return kit.no_verdict(text, reason)
    worse = [r for r in others if kit.beats(baseline.rates[s].rate, r.rates[s].rate, metric)]
    shown = ", ".join(f"{r.name} {r.rates[s].rate - baseline.rates[s].rate:+.2f}" for r in worse)
    return Claim(
        text, kit.NO if worse else kit.YES, f"worse: {shown}" if worse else f"{len(others)} methods"
    )


def claims(
    results: Sequence[SystemResult],
    baseline: str | None,
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
) -> list[Claim]:
    """PEFT against zero-shot in domain, S2-LoRA against LoRA and AdaLoRA (error rate and
    trainable share), forgetting out of domain, and the collapsed methods."""
    by_name = {result_name(r.name): r for r in results}
    base = next((r for r in results if r.name == baseline), None)
    out = [_adapts(results, base, s) for s in in_domain if base is not None]
    s2 = by_name.get("s2lora")
    for other in (by_name.get("lora"), by_name.get("adalora")):
        if s2 is None or other is None or s2.collapse or other.collapse:
            continue
        for s in [*in_domain, *out_of_domain]:
            metric = s2.rates[s].metric.upper()
            claim = kit.pair_claim(
                f"S2-LoRA beats {other.name} on {s} ({metric})",
                _rate_pair(s2, s),
                _rate_pair(other, s),
                metric,
            )
            pcts = (format_percent(x.trainable_percent) for x in (s2, other))
            shares = "trainable {} vs {}".format(*pcts)
            if (paper := PAPER_PCT.get(result_name(other.name))) is not None:
                shares += f" (paper: {PAPER_PCT['s2lora']:.2f}% vs {paper:.2f}%)"
            out.append(dataclasses.replace(claim, evidence=f"{claim.evidence}; {shares}"))
    out += [_forgets(results, base, s) for s in out_of_domain if base is not None]
    collapsed = [r.name for r in results if r.collapse]
    methods = sum(r.name != baseline for r in results)
    evidence = f"collapsed: {', '.join(collapsed)}" if collapsed else f"{methods} methods"
    out.append(Claim("Every method learned an update", kit.NO if collapsed else kit.YES, evidence))
    return out


def render_report(
    results: Sequence[SystemResult],
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
    baseline: str | None = None,
    ranks: Ranks | None = None,
    ranks_link: str | None = None,
    param_table: str | None = None,
    title: str = "S2-LoRA",
) -> str:
    """The Markdown section."""
    lines = [f"## {title}", "", *render_collapse_note(results)]
    lines += kit.render_claims(claims(results, baseline, in_domain, out_of_domain))
    lines += ["### Error rates and trainable parameters (Table 2)", ""]
    lines += render_main_table(results, in_domain, out_of_domain)
    if baseline is not None:
        lines += [f"### Change against {baseline}", ""]
        lines += render_change_table(results, baseline, in_domain, out_of_domain)
    if ranks_link is not None or ranks:
        lines += ["### Rank distribution (Fig. 3)", ""]
        if ranks_link is not None:
            lines += [f"![Rank of every adapted matrix per layer]({ranks_link})", ""]
        if ranks:
            lines += [
                "Rank of a matrix: S2-LoRA coefficients |s_k| ≥ 1e-4, AdaLoRA non-zero singular "
                "values, at the last training checkpoint; mean over the layers.",
                "",
                *render_rank_table(ranks),
            ]
            notes = [
                f"{method}: {COLLAPSED}, {reason}: it learned no update."
                for method, per_matrix in ranks.items()
                if (reason := collapse_reason(None, per_matrix))
            ]
            lines += [*notes, ""] if notes else []
    if param_table:
        lines += [table2_part(param_table), ""]
        lines += [
            "Built from the model configuration (no weights) by "
            "`python -m speechkd.bin.peft_param_table`.",
            "",
        ]
    return kit.join_section(lines)


def write_report(
    systems: Mapping[str, str | os.PathLike],
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
    out: str | os.PathLike,
    params: Mapping[str, str | os.PathLike] | None = None,
    baseline: str | None = None,
    ranks_plot: str | os.PathLike | None = None,
    ranks_json: str | os.PathLike | None = None,
    param_table: str | os.PathLike | None = None,
    title: str = "S2-LoRA",
) -> Path:
    """Load every input and write the Markdown section atomically to ``out`` and RESULTS.json
    beside it; ``systems`` is name → decode dir in table order, ``params`` name → params.json;
    the rank plot is linked by its path relative to the directory of ``out``."""
    if not systems:
        raise ConfigError("no system to report")
    if set(params or {}) - set(systems):
        raise ConfigError(
            f"params given for unknown systems {sorted(set(params or {}) - set(systems))}"
        )
    if baseline is not None and baseline not in systems:
        raise ConfigError(f"baseline {baseline!r} is not among the systems {list(systems)}")
    sets = [s for d in kit.make_domains(in_domain, out_of_domain) for s in d.sets]
    results = [
        SystemResult(
            name,
            {s: load_set_rate(decode_dir, s) for s in sets},
            kit.load_params(params[name], nonzero_total=True) if name in (params or {}) else None,
        )
        for name, decode_dir in systems.items()
    ]
    ranks = load_ranks(ranks_json) if ranks_json is not None else None
    mark_collapses(results, systems, sets, baseline, ranks)
    if ranks_plot is not None and not Path(ranks_plot).is_file():
        raise DataError(f"{ranks_plot}: rank heatmap not found")
    link = kit.link(ranks_plot, out) if ranks_plot is not None else None
    if param_table is not None and not Path(param_table).is_file():
        raise DataError(f"{param_table}: parameter table not found")
    table = Path(param_table).read_text(encoding="utf-8") if param_table is not None else None
    text = render_report(results, in_domain, out_of_domain, baseline, ranks, link, table, title)
    return kit.write_section(out, text, result_rows(results, baseline, ranks, table))
