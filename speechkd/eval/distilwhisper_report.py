"""The DistilWhisper evaluation report: the paper's Table 1, the gap closed, Fig. 2.

Inputs are files other stages wrote:

* ``<decode_dir>/scores-<set>.json`` of every system (``speechkd.eval.decode_files``): the
  per-language error counts give the WER per language, and "avg" is their macro average (the
  mean over languages, as in the paper);
* ``params.json`` of a system's experiment (optional): ``{"total", "trainable", "inference"}``;
* ``<decode_dir>/gate-usage-<set>.json`` of CLSR systems: per language, the share of encoder,
  decoder and all tokens routed to the language expert (hard gates).

The gap closed by system ``x`` is ``(WER_small − WER_x) / (WER_small − WER_large)`` in percent,
per language and on the domain average (the macro average over the languages and sets of a
domain). A gap that is zero or negative (the small model is not worse) or not finite makes the
cell "n/a", explained by a note below the table. Output is a Markdown section (``##`` heading)
meant to be inserted into RESULTS.md, a PNG bar chart of the gate usage, and RESULTS.json beside
the Markdown (every number of the tables; :func:`result_rows`), written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.markdown import md_table
from speechkd.eval.report_inputs import PARAM_KEYS, load_json_object
from speechkd.eval.report_kit import load_params
from speechkd.eval.results_json import (
    ALL,
    ResultRows,
    results_json_path,
    stable_name,
    unique_names,
    write_results_json,
)
from speechkd.eval.wer import ErrorCounts
from speechkd.utils.atomic import atomic_path, atomic_write_text

DASH = "–"
NA = "n/a"
ERROR_RATE_METRICS = ("wer", "cer")
GATE_PARTS = ("all", "encoder", "decoder")
IN_DOMAIN = "in-domain"
OUT_OF_DOMAIN = "out-of-domain"


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetScores:
    """Error rates (%) of one system on one set: per language and their macro average."""

    set_name: str
    metric: str
    per_language: dict[str, float]
    path: Path

    @property
    def average(self) -> float:
        """Mean of the per-language rates (the paper's "avg")."""
        return _mean(self.per_language.values())


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def load_set_scores(decode_dir: str | os.PathLike, set_name: str) -> SetScores:
    """Per-language WER/CER (%) of ``<decode_dir>/scores-<set_name>.json``, from its counts."""
    path = Path(decode_dir) / f"scores-{set_name}.json"
    payload = load_json_object(path, "scores file")
    metric = payload.get("metric")
    if metric not in ERROR_RATE_METRICS:
        raise DataError(f"{path}: metric must be one of {ERROR_RATE_METRICS}, got {metric!r}")
    if payload.get("set") != set_name:
        raise DataError(f"{path}: field 'set' is {payload.get('set')!r}, expected {set_name!r}")
    per_language = payload.get("per_language")
    if not isinstance(per_language, dict) or not per_language:
        raise DataError(f"{path}: field 'per_language' missing or empty")
    rates: dict[str, float] = {}
    for lang in sorted(per_language):
        try:
            counts = ErrorCounts.from_dict(per_language[lang])
        except (KeyError, TypeError) as err:
            raise DataError(f"{path}: per_language[{lang!r}] lacks the count {err}") from None
        rates[lang] = counts.rate
    return SetScores(set_name, str(metric), rates, path)


def load_system_scores(
    systems: Mapping[str, str | os.PathLike], sets: Sequence[str]
) -> dict[str, dict[str, SetScores]]:
    """``{system: {set: SetScores}}`` for every system (name → decode dir) and set."""
    return {
        name: {set_name: load_set_scores(decode_dir, set_name) for set_name in sets}
        for name, decode_dir in systems.items()
    }


# ---------------------------------------------------------------------------------------------
# Gap closed
# ---------------------------------------------------------------------------------------------


def gap_closed(wer_x: float, wer_small: float, wer_large: float) -> float | None:
    """``100 · (small − x) / (small − large)``; None when the gap is not positive and finite."""
    gap = wer_small - wer_large
    if not math.isfinite(gap) or gap <= 0 or not math.isfinite(wer_x):
        return None
    return 100.0 * (wer_small - wer_x) / gap


@dataclass(frozen=True)
class Domain:
    """A named group of sets (in-domain, out-of-domain)."""

    name: str
    sets: tuple[str, ...]


@dataclass
class GapCell:
    """One cell of the gap table: a value, or None with the reason (None: no score).

    ``note`` says how a value was taken when that needs saying (an average over fewer languages).
    """

    value: float | None
    reason: str | None = None
    note: str | None = None


@dataclass
class GapTable:
    """Gap closed per system: ``cells[system][column]``, columns in display order."""

    columns: list[tuple[str, str]]
    cells: dict[str, dict[tuple[str, str], GapCell]] = field(default_factory=dict)


def _domain_cells(scores: Mapping[str, SetScores], domain: Domain) -> dict[tuple[str, str], float]:
    return {
        (set_name, lang): rate
        for set_name in domain.sets
        for lang, rate in scores[set_name].per_language.items()
    }


def domain_average(scores: Mapping[str, SetScores], domain: Domain) -> float:
    """Macro average over every (set, language) of ``domain``."""
    return _mean(_domain_cells(scores, domain).values())


def _fmt_diff(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else str(x)


def _gap_reason(label: str, small: str, large: str, wer_small: float, wer_large: float) -> str:
    gap = wer_small - wer_large
    if not math.isfinite(gap):
        return (
            f"{label}: the WER of {small} ({_fmt_diff(wer_small)}) or {large} "
            f"({_fmt_diff(wer_large)}) is not finite, so the gap is undefined."
        )
    return (
        f"{label}: WER({small}) − WER({large}) = {_fmt_diff(wer_small)} − "
        f"{_fmt_diff(wer_large)} = {gap:.2f} ≤ 0: {small} is not worse than {large}, "
        "so there is no gap to close."
    )


def compute_gap_table(
    scores: Mapping[str, Mapping[str, SetScores]],
    small: str,
    large: str,
    domains: Sequence[Domain],
) -> GapTable:
    """Gap closed by every system other than ``small`` and ``large``, per domain and language.

    The domain column compares macro averages over the (set, language) cells that the system
    and both references all have.
    """
    for ref in (small, large):
        if ref not in scores:
            raise ConfigError(f"reference system {ref!r} is not among the systems {list(scores)}")
    columns: list[tuple[str, str]] = [(d.name, "avg") for d in domains]
    for d in domains:
        langs = {key for name in scores for key in _domain_cells(scores[name], d)}
        columns += sorted(langs)
    table = GapTable(columns)
    ref_cells = {
        d.name: (_domain_cells(scores[small], d), _domain_cells(scores[large], d)) for d in domains
    }
    for name, own in scores.items():
        if name in (small, large):
            continue
        row: dict[tuple[str, str], GapCell] = {}
        for d in domains:
            x_cells = _domain_cells(own, d)
            s_cells, l_cells = ref_cells[d.name]
            common = sorted(set(x_cells) & set(s_cells) & set(l_cells))
            if not common:
                row[(d.name, "avg")] = GapCell(None)
            else:
                cell = _gap_cell(
                    f"{d.name} avg",
                    small,
                    large,
                    _mean(x_cells[k] for k in common),
                    _mean(s_cells[k] for k in common),
                    _mean(l_cells[k] for k in common),
                )
                if len(common) < len(set(x_cells) | set(s_cells) | set(l_cells)):
                    shown = ", ".join(f"{s}:{lang}" for s, lang in common)
                    cell.note = (
                        f"{d.name} avg of {name}: over the languages that it, {small} and "
                        f"{large} all have ({shown})."
                    )
                row[(d.name, "avg")] = cell
            for key in sorted(set(x_cells) | set(s_cells) | set(l_cells)):
                if key in x_cells and key in s_cells and key in l_cells:
                    row[key] = _gap_cell(
                        f"{key[0]}:{key[1]}",
                        small,
                        large,
                        x_cells[key],
                        s_cells[key],
                        l_cells[key],
                    )
                else:
                    row[key] = GapCell(None)
        table.cells[name] = row
    return table


def _gap_cell(
    label: str, small: str, large: str, wer_x: float, wer_small: float, wer_large: float
) -> GapCell:
    value = gap_closed(wer_x, wer_small, wer_large)
    if value is not None:
        return GapCell(value)
    if not math.isfinite(wer_small - wer_large) or wer_small - wer_large <= 0:
        return GapCell(None, _gap_reason(label, small, large, wer_small, wer_large))
    return GapCell(None, f"{label}: the WER of this system is not finite ({wer_x}).")


# ---------------------------------------------------------------------------------------------
# Parameters and gate usage
# ---------------------------------------------------------------------------------------------


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
                    raise DataError(
                        f"{path}: per_language[{lang!r}][{part!r}] = {value} is not in [0, 1]"
                    )
                shares[lang] = float(value)
            usage[label][set_name] = shares
    return usage


def _set_label(set_name: str, domains: Sequence[Domain]) -> str:
    for d in domains:
        if set_name in d.sets:
            return f"{set_name} ({d.name})"
    return set_name


def gate_bars(
    usage: Mapping[str, Mapping[str, Mapping[str, float]]], domains: Sequence[Domain]
) -> tuple[list[str], list[tuple[str, str, str, list[float]]]]:
    """Languages (x axis) and one bar series per (system, set): system, set, label and shares in
    percent (NaN where the system has no share for a language)."""
    languages = sorted({lang for sets in usage.values() for s in sets.values() for lang in s})
    series = []
    for label, sets in usage.items():
        for d in domains:
            for set_name in d.sets:
                shares = sets[set_name]
                series.append(
                    (
                        label,
                        set_name,
                        f"{label}, {_set_label(set_name, domains)}",
                        [100.0 * shares.get(lang, math.nan) for lang in languages],
                    )
                )
    return languages, series


def plot_gate_usage(
    usage: Mapping[str, Mapping[str, Mapping[str, float]]],
    domains: Sequence[Domain],
    out: str | os.PathLike,
    part: str = "all",
) -> Path:
    """Grouped bar chart (PNG, written atomically): language on x, share routed to the expert."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages, series = gate_bars(usage, domains)
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * n * len(languages) + 1.5), 4.5))
    colors = plt.get_cmap("tab10").colors
    systems = list(usage)
    ood_sets = {s for d in domains if d.name == OUT_OF_DOMAIN for s in d.sets}
    for index, (system, set_name, name, values) in enumerate(series):
        ood = set_name in ood_sets
        shown = [(i, v) for i, v in enumerate(values) if not math.isnan(v)]
        ax.bar(
            [i + (index - (n - 1) / 2) * width for i, _ in shown],
            [v for _, v in shown],
            width,
            label=name,
            color=colors[systems.index(system) % len(colors)],
            alpha=0.55 if ood else 1.0,
            hatch="//" if ood else None,
            edgecolor="black",
            linewidth=0.5,
        )
    ax.set_xticks(range(len(languages)), languages)
    ax.set_xlabel("language")
    ax.set_ylabel(f"routed to the language expert (% of {part} tokens)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncol=2 if n > 1 else 1,
        frameon=False,
    )
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(
                tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None}
            )
    finally:
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _rate(x: float | None, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return DASH
    return f"{x:.{digits}f}" if math.isfinite(x) else "inf"


def _count(n: int | None) -> str:
    if n is None:
        return DASH
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


class _Notes:
    """Numbered notes below a table, one per distinct text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"({self.texts.index(text) + 1})"

    def lines(self) -> list[str]:
        return [f"({i}) {t}  " for i, t in enumerate(self.texts, 1)] + ([""] if self.texts else [])


def render_wer_table(
    scores: Mapping[str, Mapping[str, SetScores]], domains: Sequence[Domain]
) -> list[str]:
    """Table 1: per-language rates and avg per set (and per domain with several sets)."""
    header = ["System"]
    keys: list[tuple[str, ...]] = []
    for d in domains:
        for set_name in d.sets:
            langs = sorted({lang for s in scores.values() for lang in s[set_name].per_language})
            header += [f"{set_name}:{lang}" for lang in langs] + [f"{set_name}:avg"]
            keys += [("lang", set_name, lang) for lang in langs] + [("set", set_name)]
        if len(d.sets) > 1:
            header.append(f"{d.name} avg")
            keys.append(("domain", d.name))
    notes = _Notes()
    rows = []
    for name, own in scores.items():
        row: list[str] = [name]
        for key in keys:
            if key[0] == "lang":
                row.append(_rate(own[key[1]].per_language.get(key[2])))
            elif key[0] == "set":
                set_scores = own[key[1]]
                text = _rate(set_scores.average)
                all_langs = {lang for s in scores.values() for lang in s[key[1]].per_language}
                if set(set_scores.per_language) != all_langs:
                    text += " " + notes.mark(
                        f"{name}: {key[1]} avg over its {len(set_scores.per_language)} "
                        f"languages only ({', '.join(set_scores.per_language)})."
                    )
                row.append(text)
            else:
                domain = next(d for d in domains if d.name == key[1])
                row.append(_rate(domain_average(own, domain)))
        rows.append(row)
    metrics = sorted({s.metric.upper() for own in scores.values() for s in own.values()})
    sets_text = "; ".join(f"{d.name}: {', '.join(d.sets)}" for d in domains if d.sets)
    caption = (
        f"{'/'.join(metrics)} (%, lower is better) per language; `<set>:avg` is the mean over "
        f"languages (the paper's avg). Sets, {sets_text}."
    )
    if len(metrics) > 1:
        per_set = sorted(
            {(set_name, s.metric.upper()) for own in scores.values() for set_name, s in own.items()}
        )
        caption += " Metric per set: " + ", ".join(f"{s} {m}" for s, m in per_set) + "."
    return [caption, "", *md_table(header, rows), "", *notes.lines()]


def render_gap_table(table: GapTable, small: str, large: str) -> list[str]:
    """Gap closed (%) per system, domain average first, then per language."""
    header = ["System"] + [f"{a} avg" if b == "avg" else f"{a}:{b}" for a, b in table.columns]
    notes = _Notes()
    rows = []
    for name, cells in table.cells.items():
        row = [name]
        for column in table.columns:
            cell = cells.get(column, GapCell(None))
            if cell.value is not None:
                text = _rate(cell.value, 1)
            elif cell.reason is not None:
                text = f"{NA} {notes.mark(cell.reason)}"
            else:
                text = DASH
            if cell.note is not None:
                text += " " + notes.mark(cell.note)
            row.append(text)
        rows.append(row)
    caption = (
        f"Gap closed (%) = 100 · (WER({small}) − WER(system)) / (WER({small}) − WER({large})): "
        f"0 is {small}, 100 is {large}; the avg columns compare language-averaged WERs. "
        f"{DASH}: a score is missing."
    )
    if not rows:
        return [caption, "", f"No system besides {small} and {large}.", ""]
    return [caption, "", *md_table(header, rows), "", *notes.lines()]


def render_params_table(
    names: Sequence[str], params: Mapping[str, Mapping[str, int]], small: str | None = None
) -> list[str]:
    """Parameters: total, trainable, activated at inference, and the inference overhead."""
    base = params.get(small) if small is not None else None
    header = ["System", "Total", "Trainable", "Inference"]
    if base is not None:
        header.append(f"Inference vs {small}")
    rows = []
    for name in names:
        p = params.get(name)
        row = [name] + [_count(p[k]) if p else DASH for k in PARAM_KEYS]
        if base is not None:
            if p is None:
                row.append(DASH)
            else:
                diff = p["inference"] - base["inference"]
                sign = "+" if diff >= 0 else "−"
                text = f"{sign}{_count(abs(diff))}"
                if base["inference"]:
                    text += f" ({sign}{abs(100.0 * diff / base['inference']):.1f}%)"
                row.append(text)
        rows.append(row)
    caption = (
        "Parameters of each model: its Whisper weights (Total; language experts, gates and "
        "adapters not counted), those trained, and those activated at inference for one "
        f"language (from params.json; {DASH}: not given)."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_gate_table(
    usage: Mapping[str, Mapping[str, Mapping[str, float]]],
    domains: Sequence[Domain],
    part: str = "all",
) -> list[str]:
    """The numbers of the gate plot: share (%) of tokens routed to the language expert."""
    languages, series = gate_bars(usage, domains)
    header = ["System, set", *languages, "avg"]
    rows = []
    for _, _, name, values in series:
        present = [v for v in values if not math.isnan(v)]
        rows.append([name, *(_rate(v, 1) for v in values), _rate(_mean(present), 1)])
    caption = (
        f"Share (%) of tokens ({part}) routed to the language expert with hard gates; avg is the "
        "mean over languages."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_report(
    scores: Mapping[str, Mapping[str, SetScores]],
    small: str,
    large: str,
    domains: Sequence[Domain],
    params: Mapping[str, Mapping[str, int]] | None = None,
    gate_usage: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    plot_link: str | None = None,
    title: str = "DistilWhisper",
    gate_part: str = "all",
    kd_cost: KDCost | None = None,
) -> str:
    """The Markdown section: WER table, gap closed, parameters, gate usage and KD cost if given."""
    lines = [f"## {title}", ""]
    lines += ["### Error rates (Table 1)", "", *render_wer_table(scores, domains)]
    lines += [
        f"### Gap closed between {small} and {large}",
        "",
        *render_gap_table(compute_gap_table(scores, small, large, domains), small, large),
    ]
    lines += ["### Parameters", "", *render_params_table(list(scores), params or {}, small)]
    if gate_usage:
        lines += ["### Gate activation (Fig. 2)", ""]
        if plot_link is not None:
            lines += [f"![Share of tokens routed to the language expert]({plot_link})", ""]
        lines += render_gate_table(gate_usage, domains, gate_part)
    if kd_cost is not None:
        lines += ["### Cost of the teacher: online versus cached", "", *render_kd_cost(kd_cost)]
    return "\n".join(lines).rstrip("\n") + "\n"


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
        cached = self.cache_build_s + self.epochs * self.cached_epoch_s
        return self.epochs * self.online_epoch_s / cached


def _epoch_seconds(path: Path) -> list[float]:
    summary = load_json_object(path, "training summary")
    history = summary.get("history")
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
    online = _epoch_seconds(Path(online_summary))
    cached = _epoch_seconds(Path(cached_summary))
    build = None
    if cache_index is not None:
        metadata = load_json_object(Path(cache_index), "teacher cache index").get("metadata", {})
        value = metadata.get("wall_seconds")
        build = float(value) if isinstance(value, int | float) else None
    return KDCost(_mean(online), _mean(cached), build, len(cached))


def render_kd_cost(cost: KDCost) -> list[str]:
    """The teacher-cache speed-up section."""
    rows = [
        ("teacher run online", f"{cost.online_epoch_s:.1f}", "–"),
        ("teacher top-k cache", f"{cost.cached_epoch_s:.1f}", _seconds(cost.cache_build_s)),
    ]
    lines = [*md_table(("KD teacher", "Seconds per epoch", "Cache construction (s)"), rows), ""]
    lines.append(
        f"Speed-up per epoch: {cost.speedup_per_epoch:.2f}x"
        + (
            f"; over {cost.epochs} epochs including the cache construction: "
            f"{cost.speedup_total:.2f}x."
            if cost.speedup_total is not None
            else "."
        )
    )
    return [*lines, ""]


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


# ---------------------------------------------------------------------------------------------
# RESULTS.json
# ---------------------------------------------------------------------------------------------

PARAM_METRICS = {
    "total": "params",
    "trainable": "params_trainable",
    "inference": "params_inference",
}
KD_ONLINE = "kd_teacher_online"
KD_CACHE = "kd_teacher_cache"


def result_system_names(names: Iterable[str], small: str, large: str) -> dict[str, str]:
    """Stable names: ``teacher`` (the large reference), ``zero_shot`` (the small one, the student
    before adaptation), any other system its name lower-case with underscores."""
    return unique_names(
        {
            n: "teacher" if n == large else "zero_shot" if n == small else stable_name(n)
            for n in names
        }
    )


def result_rows(
    scores: Mapping[str, Mapping[str, SetScores]],
    small: str,
    large: str,
    domains: Sequence[Domain],
    params: Mapping[str, Mapping[str, int]] | None = None,
    gate_usage: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    kd_cost: KDCost | None = None,
) -> ResultRows:
    """The numbers of every table: error rates (per language, ``all``: the set's average and,
    for a domain of several sets, the domain's as set), ``gap_closed`` (%), parameter counts,
    ``gate_share`` (%) and the teacher-cache timings."""
    names = result_system_names(scores, small, large)
    rows = ResultRows()
    for name, own in scores.items():
        system = names[name]
        for set_name, s in own.items():
            for lang, rate in s.per_language.items():
                rows.add(system, set_name, lang, s.metric, rate)
            rows.add(system, set_name, ALL, s.metric, s.average)
        for d in domains:
            if len(d.sets) > 1:
                metrics = {own[set_name].metric for set_name in d.sets}
                metric = metrics.pop() if len(metrics) == 1 else "error_rate"
                rows.add(system, d.name, ALL, metric, domain_average(own, d))
    for name, cells in compute_gap_table(scores, small, large, domains).cells.items():
        for (group, lang), cell in cells.items():
            set_name, language = (group, ALL) if lang == "avg" else (group, lang)
            rows.add(names[name], set_name, language, "gap_closed", cell.value)
    base = (params or {}).get(small)
    for name, p in (params or {}).items():
        for key, metric in PARAM_METRICS.items():
            rows.add(names[name], ALL, ALL, metric, p[key])
        if base is not None:
            extra = p["inference"] - base["inference"]
            rows.add(names[name], ALL, ALL, "params_inference_extra", extra)
    if gate_usage:
        gate_names = unique_names(
            {label: names.get(label, stable_name(label)) for label in gate_usage}
        )
        languages, series = gate_bars(gate_usage, domains)
        for label, set_name, _, values in series:
            for lang, value in zip(languages, values, strict=True):
                rows.add(gate_names[label], set_name, lang, "gate_share", value)
            present = [v for v in values if not math.isnan(v)]
            rows.add(gate_names[label], set_name, ALL, "gate_share", _mean(present))
    if kd_cost is not None:
        rows.add(KD_ONLINE, "train", ALL, "seconds_per_epoch", kd_cost.online_epoch_s)
        rows.add(KD_CACHE, "train", ALL, "seconds_per_epoch", kd_cost.cached_epoch_s)
        rows.add(KD_CACHE, "train", ALL, "cache_build_seconds", kd_cost.cache_build_s)
        rows.add(KD_CACHE, "train", ALL, "speedup_per_epoch", kd_cost.speedup_per_epoch)
        rows.add(KD_CACHE, "train", ALL, "speedup_total", kd_cost.speedup_total)
    return rows


def make_domains(in_domain: Sequence[str], out_of_domain: Sequence[str]) -> list[Domain]:
    """In- and out-of-domain groups; each set in at most one, at least one set in all."""
    if not in_domain and not out_of_domain:
        raise ConfigError("give at least one in-domain or out-of-domain set")
    both = sorted(set(in_domain) & set(out_of_domain))
    if both:
        raise ConfigError(f"sets both in- and out-of-domain: {both}")
    for group in (in_domain, out_of_domain):
        if len(set(group)) != len(group):
            raise ConfigError(f"a set is given twice: {list(group)}")
    return [
        Domain(name, tuple(sets))
        for name, sets in ((IN_DOMAIN, in_domain), (OUT_OF_DOMAIN, out_of_domain))
        if sets
    ]


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
) -> Path:
    """Load every input, write the gate plot (if gate systems are given), RESULTS.json beside
    ``out`` and the Markdown.

    ``systems`` is name → decode dir, in table order; ``params`` name → params.json. The plot is
    linked from the Markdown by its path relative to the directory of ``out``.
    """
    for ref in (small, large):
        if ref not in systems:
            raise ConfigError(f"reference system {ref!r} is not among the systems {list(systems)}")
    unknown = sorted(set(params or {}) - set(systems))
    if unknown:
        raise ConfigError(f"params given for unknown systems {unknown}")
    if gate_systems and plot is None:
        raise ConfigError("gate systems need a plot path")
    domains = make_domains(in_domain, out_of_domain)
    sets = [s for d in domains for s in d.sets]
    scores = load_system_scores(systems, sets)
    loaded_params = {name: load_params(path) for name, path in (params or {}).items()}
    usage = load_gate_usage(gate_systems, sets, gate_part) if gate_systems else None
    out = Path(out)
    link = None
    if usage:
        plot_path = plot_gate_usage(usage, domains, plot, gate_part)
        link = Path(os.path.relpath(plot_path.resolve(), out.resolve().parent)).as_posix()
    text = render_report(
        scores, small, large, domains, loaded_params, usage, link, title, gate_part, kd_cost
    )
    rows = result_rows(scores, small, large, domains, loaded_params, usage, kd_cost)
    write_results_json(rows, results_json_path(out))
    atomic_write_text(out, text)
    return out
