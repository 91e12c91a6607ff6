"""The S2-LoRA report: what the run shows, the paper's Table 2, the change against zero-shot and
Fig. 3 in numbers.

Inputs: the ``scores-<set>.json`` of every system (the pooled error rate of a set, CER or WER as
it was scored), ``params.json`` of a trained system ("% trainable" is ``trainable / total``, the
Whisper weights, adapters excluded), the rank JSON of ``speechkd.bin.pruning_plots ranks`` and
the table of ``speechkd.bin.peft_param_table`` (its Table-2 part is kept).

A system whose learned update is zero (:mod:`speechkd.eval.learned_update`: rank 0 in every
adapted matrix, or its merged model equal to the baseline's) is collapsed: the section says so
first, its error rates read "collapsed" and RESULTS.json has ``collapsed = 1`` instead of them.
RESULTS.json beside the Markdown holds every number of the tables (:func:`result_rows`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval import report_kit as kit
from speechkd.eval.learned_update import collapse_reason, decoded_model_dir, relative_update
from speechkd.eval.markdown import md_parse_table
from speechkd.eval.pruning_plots import load_ranks, render_rank_table
from speechkd.eval.report_kit import DASH, Claim, fmt_rate
from speechkd.eval.results_json import ALL, ResultRows, stable_name, unique_names

COLLAPSED = "collapsed"
TABLE2_HEADING = "### Trainable parameters"
PAPER_PCT = {"s2lora": 0.02, "adalora": 0.46}  # % trainable on whisper-medium (Table 2)
Ranks = Mapping[str, Mapping[str, Sequence[int]]]  # {method: {matrix: [rank per layer]}}


@dataclass(frozen=True)
class SetRate:
    """The pooled error rate (%) of one system on one test set."""

    set_name: str
    metric: str
    rate: float
    utterances: int
    languages: tuple[str, ...] = ()

    @property
    def language(self) -> str:
        """The set's language code, ``all`` when it holds several (or none is recorded)."""
        return self.languages[0] if len(self.languages) == 1 else ALL


def load_set_rate(decode_dir: str | os.PathLike, set_name: str) -> SetRate:
    """The pooled WER/CER of ``<decode_dir>/scores-<set_name>.json`` from its total counts."""
    path = Path(decode_dir) / f"scores-{set_name}.json"
    payload = kit.load_scores(path, set_name, kit.ERROR_RATE_METRICS)
    counts = kit.pooled_counts(payload, path)
    languages = payload.get("languages") or list(payload.get("per_language") or {})
    return SetRate(set_name, payload["metric"], counts.rate, counts.snt, tuple(map(str, languages)))


@dataclass
class SystemResult:
    """One row of the table: a system's rates per set and its parameter counts (if trained)."""

    name: str
    rates: dict[str, SetRate]
    params: dict[str, int] | None = None
    collapse: str | None = None  # why its learned update is zero (None: it learned one)

    @property
    def trainable_percent(self) -> float | None:
        return (
            None if self.params is None else 100.0 * self.params["trainable"] / self.params["total"]
        )


def check_metrics(results: Sequence[SystemResult], sets: Sequence[str]) -> dict[str, str]:
    """The metric of every set; all systems must have scored a set with the same one."""
    metrics: dict[str, str] = {}
    for set_name in sets:
        found = {r.name: r.rates[set_name].metric for r in results}
        if len(set(found.values())) > 1:
            raise DataError(f"set {set_name!r} is scored with different metrics: {found}")
        metrics[set_name] = next(iter(found.values()))
    return metrics


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


def table2_part(text: str) -> str:
    """The Table-2 block of a ``peft_param_table`` output (the whole text if it has none)."""
    lines = text.strip("\n").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TABLE2_HEADING)), None)
    if start is None:
        return "\n".join(lines)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end]).strip("\n")


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
            out.append(dataclasses.replace(claim, evidence=f"{claim.evidence}; {shares}"))
    out += [_forgets(results, base, s) for s in out_of_domain if base is not None]
    collapsed = [r.name for r in results if r.collapse]
    evidence = f"collapsed: {', '.join(collapsed)}" if collapsed else f"{len(results) - 1} methods"
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


# ---------------------------------------------------------------------------------------------
# RESULTS.json
# ---------------------------------------------------------------------------------------------

# the recipe's labels (the paper's names) → stable names
RESULT_NAMES = {
    "Zero-shot": "zero_shot",
    "zeroshot": "zero_shot",
    "Full-FT": "full",
    "LoRA": "lora",
    "AdaLoRA": "adalora",
    "AdaLoRA (r 8→4)": "adalora_fig3",
    "α-LoRA": "alpha_lora",
    "BitFit": "bitfit",
    "IA3": "ia3",
    "GLoRA": "glora",
    "S2-LoRA": "s2lora",
}


def result_name(label: str) -> str:
    """The stable name of a system label (``α-LoRA`` → ``alpha_lora``)."""
    return RESULT_NAMES.get(label, stable_name(label))


def _number(cell: str) -> float | int | None:
    text = cell.replace(",", "").replace("%", "").strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return None


def param_table_rows(text: str) -> ResultRows:
    """The numbers of the ``peft_param_table`` Table-2 block: per method, ``params_trainable``,
    ``params_trainable_pct``, its ``paper_params_trainable_pct`` and ``params`` (the Whisper
    total), each suffixed with the model (``_whisper_medium``)."""
    block = table2_part(text)
    size = re.search(r"whisper-([\w.-]+)", block.splitlines()[0] if block else "")
    suffix = f"_whisper_{stable_name(size.group(1))}" if size else "_param_table"
    metrics = ("params_trainable", "params_trainable_pct", "paper_params_trainable_pct", "params")
    rows = ResultRows()
    for cells in md_parse_table(block)[1]:
        for metric, cell in zip(metrics, cells[1:], strict=False):
            rows.add(result_name(cells[0]), ALL, ALL, metric + suffix, _number(cell))
    return rows


def result_rows(
    results: Sequence[SystemResult],
    baseline: str | None = None,
    ranks: Ranks | None = None,
    param_table: str | None = None,
) -> ResultRows:
    """The numbers of every table: error rate per set (``wer`` / ``cer``; the set's language or
    ``all``), parameter counts, the change against the baseline (``<metric>_change``), the mean
    rank and rank-0 layers per matrix (set ``all``) and the ``peft_param_table`` numbers. A
    collapsed system has ``collapsed`` = 1 (set ``all``) instead of error rates and changes."""
    names = unique_names({r.name: result_name(r.name) for r in results})
    base = next((r for r in results if r.name == baseline), None)
    rows = ResultRows()
    for r in results:
        system = names[r.name]
        if r.collapse:  # no error rates: they are the starting model's
            rows.add(system, ALL, ALL, COLLAPSED, 1)
        for s in [] if r.collapse else r.rates.values():
            rows.add(system, s.set_name, s.language, s.metric, s.rate)
            if base is not None and r is not base:
                change = s.rate - base.rates[s.set_name].rate
                rows.add(system, s.set_name, s.language, f"{s.metric}_change", change)
        if r.params is not None:
            rows.add(system, ALL, ALL, "params", r.params["total"])
            rows.add(system, ALL, ALL, "params_trainable", r.params["trainable"])
            rows.add(system, ALL, ALL, "params_trainable_pct", r.trainable_percent)
    rank_names = unique_names({method: result_name(method) for method in ranks or {}})
    for method, per_matrix in (ranks or {}).items():
        for matrix, values in ((m, v) for m, v in per_matrix.items() if v):
            key = stable_name(matrix)
            rows.add(rank_names[method], ALL, ALL, f"mean_rank_{key}", kit.mean(values))
            rows.add(
                rank_names[method], ALL, ALL, f"rank0_layers_{key}", sum(v == 0 for v in values)
            )
    if param_table:
        rows += param_table_rows(param_table)
    return rows


def mark_collapses(
    results: Sequence[SystemResult],
    systems: Mapping[str, str | os.PathLike],
    sets: Sequence[str],
    baseline: str | None,
    ranks: Ranks | None,
) -> None:
    """Set ``collapse`` of every system but the baseline whose learned update is zero: rank 0 in
    every matrix (its ranks, by the same name), or a decoded model equal to the baseline's."""
    start = decoded_model_dir(systems[baseline], sets) if baseline is not None else None
    for r in results:
        if r.name == baseline:
            continue
        model_dir = decoded_model_dir(systems[r.name], sets) if start is not None else None
        update = relative_update(model_dir, start) if model_dir is not None else None
        r.collapse = collapse_reason(update, (ranks or {}).get(r.name))


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
