"""The S2-LoRA evaluation report: the paper's Table 2, the change against zero-shot, Fig. 3.

Inputs are files other stages wrote:

* ``<decode_dir>/scores-<set>.json`` of every system (``speechkd.eval.decode_files``): the error
  rate of a set is the pooled one (``totals``: errors / reference tokens), CER or WER as the set
  was scored (the paper: CER for Chinese, WER for English);
* ``params.json`` of a trained system (optional): ``{"total", "trainable", "inference"}``; the
  "% trainable" column is ``trainable / total`` (the Whisper weights, adapters excluded);
* the rank heatmap PNG and its JSON (``speechkd.bin.pruning_plots ranks --json``): a table of the
  mean rank of every adapted matrix type over the layers (Fig. 3 in numbers);
* the parameter table of ``speechkd.bin.peft_param_table`` (its Table-2 part is kept).

Output is a Markdown section (``##`` heading) for ``speechkd.bin.write_results --section``:
a table per method (trainable parameters and %, error rate per test set, in-domain first, the
lowest of each column in bold), the change of every method against the baseline (zero-shot) with
a list of the methods that lowered / raised each set's error rate, the rank distribution and the
parameter table; and RESULTS.json beside it with every number of those tables
(:func:`result_rows`).

A system whose learned update is zero (:mod:`speechkd.eval.learned_update`: rank 0 in every
adapted matrix, or its merged model, found through the ``model_dir`` of its scores files, equal to
the baseline's) is reported as collapsed: the section opens with it, its error rates read
"collapsed" in the tables and RESULTS.json has ``collapsed = 1`` instead of its rates.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.learned_update import collapse_reason, decoded_model_dir, relative_update
from speechkd.eval.markdown import md_parse_table, md_table
from speechkd.eval.pruning_plots import GROUP_TITLES, SHORT_NAMES
from speechkd.eval.report_inputs import load_json_object
from speechkd.eval.report_kit import load_params as load_model_params
from speechkd.eval.results_json import (
    ALL,
    ResultRows,
    results_json_path,
    stable_name,
    unique_names,
    write_results_json,
)
from speechkd.eval.wer import ErrorCounts
from speechkd.utils.atomic import atomic_write_text
from speechkd.whisper.s2lora import ROW_ORDER, S2LORA_GROUPS

DASH = "–"
COLLAPSED = "collapsed"
ERROR_RATE_METRICS = ("wer", "cer")
TABLE2_HEADING = "### Trainable parameters"


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
    payload = load_json_object(path, "scores file")
    metric = payload.get("metric")
    if metric not in ERROR_RATE_METRICS:
        raise DataError(f"{path}: metric must be one of {ERROR_RATE_METRICS}, got {metric!r}")
    if payload.get("set") != set_name:
        raise DataError(f"{path}: field 'set' is {payload.get('set')!r}, expected {set_name!r}")
    totals = payload.get("totals")
    if not isinstance(totals, dict):
        raise DataError(f"{path}: field 'totals' missing")
    try:
        counts = ErrorCounts.from_dict(totals)
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: 'totals' lacks the count {err}") from None
    languages = payload.get("languages") or list(payload.get("per_language") or {})
    return SetRate(set_name, str(metric), counts.rate, counts.snt, tuple(str(x) for x in languages))


def load_params(path: str | os.PathLike) -> dict[str, int]:
    """``{"total", "trainable", "inference"}`` of a ``params.json``; a zero total is an error
    (the trainable percentage divides by it)."""
    out = load_model_params(path)
    if out["total"] == 0:
        raise DataError(f"{Path(path)}: field 'total' is 0")
    return out


@dataclass
class SystemResult:
    """One row of the table: a system's rates per set and its parameter counts (if trained)."""

    name: str
    rates: dict[str, SetRate]
    params: dict[str, int] | None = None
    collapse: str | None = None  # why its learned update is zero (None: it learned one)

    @property
    def trainable_percent(self) -> float | None:
        if self.params is None:
            return None
        return 100.0 * self.params["trainable"] / self.params["total"]


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
# Markdown
# ---------------------------------------------------------------------------------------------


def format_rate(rate: float | None) -> str:
    if rate is None or math.isnan(rate):
        return DASH
    return f"{rate:.2f}" if math.isfinite(rate) else "inf"


def format_count(n: int | None) -> str:
    if n is None:
        return DASH
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n:,}"


def format_percent(pct: float | None) -> str:
    """Two decimals as in the paper (0.02%); a share that rounds to zero is "<0.01%"."""
    if pct is None:
        return DASH
    if 0 < pct < 0.005:
        return "<0.01%"
    return f"{pct:.2f}%"


def _best(values: Sequence[float]) -> float | None:
    """The lowest finite value, None when there is none or when every value is the same."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite or len(set(values)) < 2:
        return None
    return min(finite)


def render_main_table(
    results: Sequence[SystemResult], in_domain: Sequence[str], out_of_domain: Sequence[str]
) -> list[str]:
    """Table 2: trainable parameters, % trainable and the error rate per set (best in bold)."""
    sets = [*in_domain, *out_of_domain]
    metrics = check_metrics(results, sets)
    header = ["Method", "#Trainable params", "% trainable"]
    header += [f"{s} {metrics[s].upper()}" for s in sets]
    best = {s: _best([r.rates[s].rate for r in results if not r.collapse]) for s in sets}
    rows = []
    for r in results:
        row = [
            f"{r.name} ({COLLAPSED})" if r.collapse else r.name,
            format_count(r.params["trainable"] if r.params else None),
            format_percent(r.trainable_percent),
        ]
        if r.collapse:
            rows.append(row + [COLLAPSED] * len(sets))
            continue
        for s in sets:
            text = format_rate(r.rates[s].rate)
            row.append(
                f"**{text}**" if best[s] is not None and r.rates[s].rate == best[s] else text
            )
        rows.append(row)
    sizes = ", ".join(f"{s}: {results[0].rates[s].utterances}" for s in sets) if results else ""
    caption = (
        f"Error rates (%) per test set; in-domain: {', '.join(in_domain) or DASH}; "
        f"out-of-domain: {', '.join(out_of_domain) or DASH}. The lowest of each column (if they "
        "differ) is in bold. % trainable: trainable parameters over the Whisper parameters "
        "(adapters excluded); every adapter is merged into the weights after training, so "
        f"inference costs the Whisper parameters alone. Utterances per set: {sizes}."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_change_table(
    results: Sequence[SystemResult],
    baseline: str,
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
) -> list[str]:
    """Error rate minus the baseline's, per set (negative: better), and who helped where."""
    by_name = {r.name: r for r in results}
    if baseline not in by_name:
        raise ConfigError(f"baseline {baseline!r} is not among the systems {list(by_name)}")
    base = by_name[baseline]
    sets = [*in_domain, *out_of_domain]
    collapsed = [r.name for r in results if r.collapse and r.name != baseline]
    others = [r for r in results if r.name != baseline and not r.collapse]
    header = ["Method", *(f"Δ {s}" for s in sets)]
    rows = []
    for r in results:
        if r.name == baseline:
            continue
        if r.collapse:
            rows.append([f"{r.name} ({COLLAPSED})", *[COLLAPSED] * len(sets)])
            continue
        row = [r.name]
        for s in sets:
            diff = r.rates[s].rate - base.rates[s].rate
            row.append(f"{diff:+.2f}" if math.isfinite(diff) else DASH)
        rows.append(row)
    lines = [
        f"Error rate minus that of {baseline}, in points (negative: the method helped).",
        "",
        *md_table(header, rows),
        "",
    ]
    for s in sets:
        domain = "in-domain" if s in in_domain else "out-of-domain"
        better = [r.name for r in others if r.rates[s].rate < base.rates[s].rate]
        worse = [r.name for r in others if r.rates[s].rate > base.rates[s].rate]
        same = [r.name for r in others if r.rates[s].rate == base.rates[s].rate]
        parts = [f"better than {baseline}: {', '.join(better) or 'none'}"]
        parts.append(f"worse: {', '.join(worse) or 'none'}")
        if same:
            parts.append(f"unchanged: {', '.join(same)}")
        lines.append(f"- {s} ({domain}, {base.rates[s].metric.upper()}): " + "; ".join(parts))
    if collapsed:
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
    lines += [f"- {r.name}: {r.collapse}" for r in collapsed]
    return [*lines, ""]


def _matrix_order(matrix: str) -> tuple[int, int, str]:
    group, _, short = matrix.partition(".")
    groups = list(S2LORA_GROUPS)
    rows = [SHORT_NAMES[p] for p in ROW_ORDER["ffn" if group.endswith("ffm") else "attention"]]
    return (
        groups.index(group) if group in groups else len(groups),
        rows.index(short) if short in rows else len(rows),
        matrix,
    )


def load_ranks(path: str | os.PathLike) -> dict[str, dict[str, list[int]]]:
    """``{method: {matrix: [rank per layer]}}`` from the JSON of ``pruning_plots ranks``."""
    path = Path(path)
    data = load_json_object(path, "rank file")
    out: dict[str, dict[str, list[int]]] = {}
    for method, entries in data.items():
        if not isinstance(entries, list):
            raise DataError(f"{path}: {method!r} must be a list of rank entries")
        per_matrix: dict[str, dict[int, int]] = {}
        for entry in entries:
            try:
                layer, matrix, rank = int(entry["layer"]), str(entry["matrix"]), int(entry["rank"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: {method!r}: bad entry {entry!r}") from None
            per_matrix.setdefault(matrix, {})[layer] = rank
        out[method] = {m: [ranks[k] for k in sorted(ranks)] for m, ranks in per_matrix.items()}
    return out


def render_rank_table(ranks: Mapping[str, Mapping[str, Sequence[int]]]) -> list[str]:
    """Mean rank over the layers and the layers left at rank 0, per matrix and method."""
    methods = list(ranks)
    matrices = sorted({m for r in ranks.values() for m in r}, key=_matrix_order)
    header = ["Matrix"]
    for method in methods:
        header += [f"{method} mean rank", f"{method} rank-0 layers"]
    rows = []
    for matrix in matrices:
        group, _, short = matrix.partition(".")
        row = [f"{GROUP_TITLES.get(group, group)} W_{short}"]
        for method in methods:
            values = ranks[method].get(matrix)
            if values:
                zero = sum(v == 0 for v in values)
                row += [f"{sum(values) / len(values):.2f}", f"{zero}/{len(values)}"]
            else:
                row += [DASH, DASH]
        rows.append(row)
    return [*md_table(header, rows), ""]


def table2_part(text: str) -> str:
    """The Table-2 block of a ``peft_param_table`` output (the whole text if it has none)."""
    lines = text.strip("\n").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TABLE2_HEADING)), None)
    if start is None:
        return "\n".join(lines)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end]).strip("\n")


def render_report(
    results: Sequence[SystemResult],
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
    baseline: str | None = None,
    ranks: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
    ranks_link: str | None = None,
    param_table: str | None = None,
    title: str = "S2-LoRA",
) -> str:
    """The Markdown section."""
    lines = [f"## {title}", "", *render_collapse_note(results)]
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
        lines += [
            table2_part(param_table),
            "",
            "Built from the model configuration (no weights) by "
            "`python -m speechkd.bin.peft_param_table`.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


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
    ranks: Mapping[str, Mapping[str, Sequence[int]]] | None = None,
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
        else:
            for s in r.rates.values():
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
        for matrix, values in per_matrix.items():
            if values:
                key = stable_name(matrix)
                rows.add(rank_names[method], ALL, ALL, f"mean_rank_{key}", _mean(values))
                zero = sum(v == 0 for v in values)
                rows.add(rank_names[method], ALL, ALL, f"rank0_layers_{key}", zero)
    if param_table:
        rows += param_table_rows(param_table)
    return rows


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values)


def make_sets(in_domain: Sequence[str], out_of_domain: Sequence[str]) -> list[str]:
    """Every set once, in-domain first; at least one."""
    sets = [*in_domain, *out_of_domain]
    if not sets:
        raise ConfigError("give at least one in-domain or out-of-domain set")
    repeated = sorted({s for s in sets if sets.count(s) > 1})
    if repeated:
        raise ConfigError(f"sets given twice (or both in- and out-of-domain): {repeated}")
    return sets


def mark_collapses(
    results: Sequence[SystemResult],
    systems: Mapping[str, str | os.PathLike],
    sets: Sequence[str],
    baseline: str | None,
    ranks: Mapping[str, Mapping[str, Sequence[int]]] | None,
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
    beside it.

    ``systems`` is name → decode dir, in table order; ``params`` name → params.json. The rank
    plot is linked by its path relative to the directory of ``out``.
    """
    if not systems:
        raise ConfigError("no system to report")
    unknown = sorted(set(params or {}) - set(systems))
    if unknown:
        raise ConfigError(f"params given for unknown systems {unknown}")
    if baseline is not None and baseline not in systems:
        raise ConfigError(f"baseline {baseline!r} is not among the systems {list(systems)}")
    sets = make_sets(in_domain, out_of_domain)
    results = [
        SystemResult(
            name,
            {s: load_set_rate(decode_dir, s) for s in sets},
            load_params(params[name]) if params and name in params else None,
        )
        for name, decode_dir in systems.items()
    ]
    ranks = load_ranks(ranks_json) if ranks_json is not None else None
    mark_collapses(results, systems, sets, baseline, ranks)
    out = Path(out)
    link = None
    if ranks_plot is not None:
        plot = Path(ranks_plot)
        if not plot.is_file():
            raise DataError(f"{plot}: rank heatmap not found")
        link = Path(os.path.relpath(plot.resolve(), out.resolve().parent)).as_posix()
    table = None
    if param_table is not None:
        path = Path(param_table)
        if not path.is_file():
            raise DataError(f"{path}: parameter table not found")
        table = path.read_text(encoding="utf-8")
    text = render_report(results, in_domain, out_of_domain, baseline, ranks, link, table, title)
    rows = result_rows(results, baseline, ranks, table)
    write_results_json(rows, results_json_path(out))
    atomic_write_text(out, text)
    return out
