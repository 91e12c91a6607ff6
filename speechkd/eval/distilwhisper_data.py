"""The numbers of the DistilWhisper report, loaded and computed: error rates per system, set and
language (``scores-<set>.json``; "avg" is the mean over languages, as in the paper), domain
averages, the gap closed, the CLSR gate usage (Fig. 2: the share of tokens routed to the language
expert, from the ``gate-usage-<set>.json`` files of ``speechkd.bin.whisper_decode``, drawn as
grouped bars) and the cost of KD with the teacher run online versus read from its top-k cache
(``train-summary.json`` epoch times, the cache's ``index.json``); and the numbers of every table
of the report for RESULTS.json (:func:`result_rows`).

The gap closed by system ``x`` is ``(E_small − E_x) / (E_small − E_large)`` in percent, per
language and on the domain average (over the (set, language) cells that ``x`` and both
references have); a gap that is not positive and finite gives no value, with the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.report_kit import (
    Domain,
    SetScores,
    degenerate_reason,
    load_json_object,
    load_set_scores,
    mean,
    pyplot,
    save_png,
)
from speechkd.eval.results_json import ALL, ResultRows, stable_name, unique_names

GATE_PARTS = ("all", "encoder", "decoder")
Usage = Mapping[str, Mapping[str, Mapping[str, float]]]  # {label: {set: {language: share}}}


def load_system_scores(
    systems: Mapping[str, str | os.PathLike], sets: Sequence[str]
) -> dict[str, dict[str, SetScores]]:
    """``{system: {set: SetScores}}`` for every system (name → decode dir) and set."""
    return {n: {s: load_set_scores(d, s) for s in sets} for n, d in systems.items()}


def domain_cells(scores: Mapping[str, SetScores], d: Domain) -> dict[tuple[str, str], float]:
    """``{(set, language): rate}`` of every set of ``d``."""
    return {(s, lang): r for s in d.sets for lang, r in scores[s].per_language.items()}


def domain_average(scores: Mapping[str, SetScores], domain: Domain) -> float:
    """Macro average over every (set, language) of ``domain``."""
    return mean(domain_cells(scores, domain).values())


def metric_label(scores: Mapping[str, Mapping[str, SetScores]]) -> str:
    return "/".join(sorted({s.metric.upper() for own in scores.values() for s in own.values()}))


# ---------------------------------------------------------------------------------------------
# Gap closed
# ---------------------------------------------------------------------------------------------


def gap_closed(wer_x: float, wer_small: float, wer_large: float) -> float | None:
    """``100 · (small − x) / (small − large)``; None when the gap is not positive and finite."""
    gap = wer_small - wer_large
    if not math.isfinite(gap) or gap <= 0 or not math.isfinite(wer_x):
        return None
    return 100.0 * (wer_small - wer_x) / gap


@dataclass
class GapCell:
    """A value, or None with the reason (None without one: a score is missing), and a note."""

    value: float | None
    reason: str | None = None
    note: str | None = None


@dataclass
class GapTable:
    """Gap closed per system: ``cells[system][column]``, columns in display order."""

    columns: list[tuple[str, str]]
    cells: dict[str, dict[tuple[str, str], GapCell]] = field(default_factory=dict)


def _gap_cell(
    label: str, names: tuple[str, str], metric: str, x: float, s: float, g: float
) -> GapCell:
    value = gap_closed(x, s, g)
    if value is not None or not math.isfinite(s - g) or s - g > 0:
        return GapCell(value, None if value is not None else f"{label}: {x} is not finite.")
    small, large = names
    return GapCell(
        None,
        f"{label}: {metric}({small}) − {metric}({large}) = {s:.2f} − {g:.2f} = {s - g:.2f} ≤ 0: "
        f"{small} is not worse than {large}, so there is no gap to close.",
    )


def compute_gap_table(
    scores: Mapping[str, Mapping[str, SetScores]], small: str, large: str, domains: Sequence[Domain]
) -> GapTable:
    """Gap closed by every system but ``small`` and ``large``, per domain (the mean over the
    (set, language) cells it and both references have) and per language."""
    for ref in (small, large):
        if ref not in scores:
            raise ConfigError(f"reference system {ref!r} is not among the systems {list(scores)}")
    metric = metric_label(scores)
    table = GapTable([(d.name, "avg") for d in domains])
    for d in domains:
        table.columns += sorted({k for own in scores.values() for k in domain_cells(own, d)})
    for name in scores:
        if name in (small, large):
            continue
        row = table.cells[name] = {}
        for d in domains:
            x, s, g = (domain_cells(scores[n], d) for n in (name, small, large))
            common = sorted(set(x) & set(s) & set(g))
            row[(d.name, "avg")] = GapCell(None)
            if common:
                avgs = [mean(c[k] for k in common) for c in (x, s, g)]
                row[(d.name, "avg")] = cell = _gap_cell(
                    f"{d.name} avg", (small, large), metric, *avgs
                )
                if len(common) < len(set(x) | set(s) | set(g)):
                    shown = ", ".join(f"{a}:{b}" for a, b in common)
                    cell.note = (
                        f"{d.name} avg of {name}: over the languages that it, {small} and "
                        f"{large} all have ({shown})."
                    )
            for k in sorted(set(x) | set(s) | set(g)):
                both = k in x and k in s and k in g
                label = f"{k[0]}:{k[1]}"
                row[k] = (
                    _gap_cell(label, (small, large), metric, x[k], s[k], g[k])
                    if both
                    else GapCell(None)
                )
    return table


def gap_reason(
    scores: Mapping[str, Mapping[str, SetScores]], small: str, large: str, domain: Domain
) -> str | None:
    """Why the gap of ``domain`` says nothing: the teacher at chance, or no gap to close."""
    metric = metric_label(scores)
    s, g = (domain_average(scores[n], domain) for n in (small, large))
    return degenerate_reason(metric, {}, teacher=(large, g), student=(small, s))


def _shares(path: Path, data: dict, part: str) -> dict[str, float]:
    per_language = data.get("per_language")
    if not isinstance(per_language, dict) or not per_language:
        raise DataError(f"{path}: field 'per_language' missing or empty")
    shares: dict[str, float] = {}
    for lang in sorted(per_language):
        entry = per_language[lang]
        value = entry.get(part) if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"{path}: per_language[{lang!r}][{part!r}] missing")
        if not 0.0 <= float(value) <= 1.0:
            raise DataError(f"{path}: per_language[{lang!r}][{part!r}] = {value} is not in [0, 1]")
        shares[lang] = float(value)
    return shares


def load_gate_usage(
    gate_systems: Mapping[str, str | os.PathLike], sets: Sequence[str], part: str = "all"
) -> dict[str, dict[str, dict[str, float]]]:
    """``{label: {set: {language: share}}}`` from ``gate-usage-<set>.json`` (share in [0, 1])."""
    if part not in GATE_PARTS:
        raise ConfigError(f"gate part must be one of {GATE_PARTS}, got {part!r}")
    usage: dict[str, dict[str, dict[str, float]]] = {}
    for label, decode_dir in gate_systems.items():
        usage[label] = {}
        for set_name in sets:
            path = Path(decode_dir) / f"gate-usage-{set_name}.json"
            data = load_json_object(path, "gate usage file")
            if data.get("set") != set_name:
                raise DataError(
                    f"{path}: field 'set' is {data.get('set')!r}, expected {set_name!r}"
                )
            usage[label][set_name] = _shares(path, data, part)
    return usage


def gate_bars(
    usage: Usage, domains: Iterable[tuple[str, Sequence[str]]]
) -> tuple[list[str], list[tuple[str, str, str, list[float]]]]:
    """Languages (x axis) and one bar series per (system, set) of the ``(domain, sets)``: system,
    set, label and shares in percent (NaN where the system has no share for a language)."""
    domains = list(domains)
    languages = sorted({lang for sets in usage.values() for s in sets.values() for lang in s})
    series = []
    for label, sets in usage.items():
        for domain, domain_sets in domains:
            for set_name in domain_sets:
                shares = sets[set_name]
                values = [100.0 * shares.get(lang, math.nan) for lang in languages]
                series.append((label, set_name, f"{label}, {set_name} ({domain})", values))
    return languages, series


def plot_gate_usage(
    usage: Usage,
    domains: Iterable[tuple[str, Sequence[str]]],
    out: str | os.PathLike,
    part: str = "all",
    hatched: Sequence[str] = (),
) -> Path:
    """Grouped bar chart (PNG, written atomically): language on x, share routed to the expert;
    the bars of the sets in ``hatched`` (out-of-domain) are hatched and lighter."""
    plt = pyplot()
    languages, series = gate_bars(usage, domains)
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * n * len(languages) + 1.5), 4.5))
    colors = plt.get_cmap("tab10").colors
    systems = list(usage)
    for index, (system, set_name, name, values) in enumerate(series):
        other = set_name in hatched
        shown = [(i, v) for i, v in enumerate(values) if not math.isnan(v)]
        ax.bar(
            [i + (index - (n - 1) / 2) * width for i, _ in shown],
            [v for _, v in shown],
            width,
            label=name,
            color=colors[systems.index(system) % len(colors)],
            alpha=0.55 if other else 1.0,
            hatch="//" if other else None,
            edgecolor="black",
            linewidth=0.5,
        )
    ax.set_xticks(range(len(languages)), languages)
    ax.set_xlabel("language")
    ax.set_ylabel(f"routed to the language expert (% of {part} tokens)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    legend = dict(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2 if n > 1 else 1)
    ax.legend(fontsize="small", frameon=False, **legend)
    return save_png(fig, out)


@dataclass(frozen=True)
class KDCost:
    """Training-time cost of KD with the teacher run online versus read from the cache."""

    online_epoch_s: float
    cached_epoch_s: float
    cache_build_s: float | None
    epochs: int

    @property
    def speedup_per_epoch(self) -> float:
        return self.online_epoch_s / self.cached_epoch_s

    @property
    def speedup_total(self) -> float | None:
        """Whole training (``epochs`` epochs), counting the one-off cache construction."""
        if self.cache_build_s is None:
            return None
        return (
            self.epochs
            * self.online_epoch_s
            / (self.cache_build_s + self.epochs * self.cached_epoch_s)
        )


def _epoch_seconds(path: Path) -> list[float]:
    history = load_json_object(path, "training summary").get("history")
    if not isinstance(history, list) or not history:
        raise DataError(f"{path}: field history is missing or empty")
    try:
        return [float(record["seconds"]) for record in history]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: history records need a numeric 'seconds' field") from None


def load_kd_cost(
    online_summary: str | os.PathLike,
    cached_summary: str | os.PathLike,
    cache_index: str | os.PathLike | None = None,
) -> KDCost:
    """Epoch times of ``train-summary.json`` files and the cache build time of ``index.json``."""
    online, cached = _epoch_seconds(Path(online_summary)), _epoch_seconds(Path(cached_summary))
    build = None
    if cache_index is not None:
        meta = load_json_object(Path(cache_index), "teacher cache index").get("metadata", {})
        build = (
            float(meta["wall_seconds"])
            if isinstance(meta.get("wall_seconds"), int | float)
            else None
        )
    return KDCost(mean(online), mean(cached), build, len(cached))


# ---------------------------------------------------------------------------------------------
# RESULTS.json
# ---------------------------------------------------------------------------------------------

PARAM_METRICS = {
    "total": "params",
    "trainable": "params_trainable",
    "inference": "params_inference",
}


def system_names(scores: Mapping[str, object], small: str, large: str) -> dict[str, str]:
    """Stable RESULTS.json names: ``teacher`` for ``large``, ``zero_shot`` for ``small``."""
    proposed = {
        n: "teacher" if n == large else "zero_shot" if n == small else stable_name(n)
        for n in scores
    }
    return unique_names(proposed)


def error_rate_rows(
    scores: Mapping[str, Mapping[str, SetScores]],
    small: str,
    large: str,
    domains: Sequence[Domain],
    gap_metric: str = "gap_closed",
) -> ResultRows:
    """Error rates per language and ``all`` (a set's average; a domain of several sets as set)
    and the gap closed (%, as ``gap_metric``) of every system."""
    names, rows = system_names(scores, small, large), ResultRows()
    for name, own in scores.items():
        for set_name, s in own.items():
            for lang, rate in s.per_language.items():
                rows.add(names[name], set_name, lang, s.metric, rate)
            rows.add(names[name], set_name, ALL, s.metric, s.average)
        for d in (d for d in domains if len(d.sets) > 1):
            metrics = {own[s].metric for s in d.sets}
            metric = metrics.pop() if len(metrics) == 1 else "error_rate"
            rows.add(names[name], d.name, ALL, metric, domain_average(own, d))
    for name, cells in compute_gap_table(scores, small, large, domains).cells.items():
        for (group, lang), cell in cells.items():
            rows.add(names[name], group, ALL if lang == "avg" else lang, gap_metric, cell.value)
    return rows


def result_rows(
    scores: Mapping[str, Mapping[str, SetScores]],
    small: str,
    large: str,
    domains: Sequence[Domain],
    params: Mapping[str, Mapping[str, int]] | None = None,
    gate_usage: Usage | None = None,
    kd_cost: KDCost | None = None,
) -> ResultRows:
    """The numbers of every table under stable names (``teacher``: ``large``; ``zero_shot``:
    ``small``): error rates per language and ``all`` (a set's average; a domain of several sets
    as set), ``gap_closed`` (%), parameter counts, ``gate_share`` (%) and the cache timings."""
    names = system_names(scores, small, large)
    rows = error_rate_rows(scores, small, large, domains)
    base = (params or {}).get(small)
    for name, p in (params or {}).items():
        for key, metric in PARAM_METRICS.items():
            rows.add(names[name], ALL, ALL, metric, p[key])
        if base is not None:
            rows.add(
                names[name], ALL, ALL, "params_inference_extra", p["inference"] - base["inference"]
            )
    if gate_usage:
        gate_names = unique_names({g: names.get(g, stable_name(g)) for g in gate_usage})
        languages, series = gate_bars(gate_usage, [(d.name, d.sets) for d in domains])
        for label, set_name, _, values in series:
            for lang, value in zip(languages, values, strict=True):
                rows.add(gate_names[label], set_name, lang, "gate_share", value)
            present = [v for v in values if not math.isnan(v)]
            rows.add(gate_names[label], set_name, ALL, "gate_share", mean(present))
    if kd_cost is not None:
        rows.add("kd_teacher_online", "train", ALL, "seconds_per_epoch", kd_cost.online_epoch_s)
        for metric, value in (
            ("seconds_per_epoch", kd_cost.cached_epoch_s),
            ("cache_build_seconds", kd_cost.cache_build_s),
            ("speedup_per_epoch", kd_cost.speedup_per_epoch),
            ("speedup_total", kd_cost.speedup_total),
        ):
            rows.add("kd_teacher_cache", "train", ALL, metric, value)
    return rows
