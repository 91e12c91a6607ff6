"""The PEPSI evaluation report: the paper's Tables 3, 4 and 1 and Figs. 3b and 4, from files.

Inputs are files other stages wrote:

* ``<decode_dir>/scores-<set>.json`` of every system (``speechkd.eval.decode_files``; the metric
  the set was decoded with, CER or WER) and the ``hyp-<set>.txt`` / ``ref-<set>.txt`` beside it,
  rescored with the other metric (normalised as ``speechkd.bin.score`` does), since the paper
  reports both for every language. The error rate of a set is the pooled rate of its counts;
* a parameter file per system: ``params.json`` of ``whisper_train`` / ``pepsi_prune``
  (``total``, ``trainable``, ``inference``) or ``result.json`` of an IMP ticket
  (``alive_params``: a pruned model, nothing trained). A system without one is the foundation
  model itself (zero-shot): nothing trained, every weight at inference;
* ``imp-history.json`` of ``pepsi_prune`` (alive share per layer group and round, Fig. 3b).

Per language (Table 3) every system is one row; a system's totals are those of its language's
foundation model (every system of a language shares it), so a ticket's alive count is shown
against the same total. "Pruned" means fewer parameters at inference than the total.

Sparsity convention (:data:`SPARSITY_NOTE`): a pruned share is of ALL the foundation model's
parameters, as the paper's 0.77B of 1.54B alive for whisper-large at 50%.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.markdown import md_parse_table, md_table
from speechkd.eval.report_inputs import load_json_object
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

DASH = "–"
METRICS = ("cer", "wer")  # column order (the paper: CER, then WER)
SPARSITY_NOTE = (
    "Sparsity convention: a pruned share (sparsity, prune %) is of ALL the foundation model's "
    "parameters, as the paper's 0.77B of 1.54B alive for whisper-large at 50%. Biases, norms, "
    "the fixed positions and the LoRA-carrying q/v are never pruned and count as alive, so the "
    "prunable weights lose more than that share."
)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _primary(path: Path, set_name: str) -> tuple[dict, str, float]:
    payload = load_json_object(path, "scores file")
    metric = payload.get("metric")
    if metric not in METRICS:
        raise DataError(f"{path}: metric must be one of {METRICS}, got {metric!r}")
    if payload.get("set") != set_name:
        raise DataError(f"{path}: field 'set' is {payload.get('set')!r}, expected {set_name!r}")
    try:
        counts = ErrorCounts.from_dict(payload["totals"])
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: field 'totals' missing or lacks the count {err}") from None
    return payload, str(metric), counts.rate


def rescore(decode_dir: str | os.PathLike, set_name: str, metric: str, payload: dict) -> float:
    """``metric`` (%) of the hypotheses ``hyp-<set>.txt`` against ``ref-<set>.txt``, normalised
    as ``speechkd.bin.score`` does; the languages are those of the scores file ``payload`` (its
    CutSet when it has several)."""
    from speechkd.eval.scoring import error_rate_report, load_scoring_input

    decode_dir = Path(decode_dir)
    languages = payload.get("languages") or []
    language = languages[0] if len(languages) == 1 else None
    cuts = None if language is not None else payload.get("cuts")
    if language is None and not cuts:
        raise DataError(
            f"{decode_dir}/scores-{set_name}.json: no single language and no 'cuts' to read the "
            "languages from"
        )
    data = load_scoring_input(
        decode_dir / f"ref-{set_name}.txt",
        decode_dir / f"hyp-{set_name}.txt",
        metric,
        language=language,
        ref_cuts=cuts,
        allow_missing=True,
    )
    return error_rate_report(data, metric, allow_empty_ref=True).totals.rate


def load_error_rates(
    decode_dir: str | os.PathLike, set_name: str, both: bool = True
) -> dict[str, float]:
    """``{metric: rate %}`` of one set: the metric of ``scores-<set>.json`` and, with ``both``
    and the decode's ``hyp-<set>.txt`` and ``ref-<set>.txt`` beside it, the other metric of the
    same hypotheses (the paper reports CER and WER for every language)."""
    decode_dir = Path(decode_dir)
    payload, metric, rate = _primary(decode_dir / f"scores-{set_name}.json", set_name)
    rates = {metric: rate}
    has_text = all((decode_dir / f"{k}-{set_name}.txt").is_file() for k in ("hyp", "ref"))
    if both and has_text:
        for other in METRICS:
            if other != metric:
                rates[other] = rescore(decode_dir, set_name, other, payload)
    return {m: rates[m] for m in METRICS if m in rates}


@dataclass
class Params:
    """Parameter counts of one system; ``None``: not known from its file (filled per group)."""

    total: int | None
    trainable: int
    inference: int | None

    @property
    def pruned(self) -> bool:
        return self.total is not None and self.inference is not None and self.inference < self.total


def _count_field(path: Path, data: dict, key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"{path}: field {key!r} must be a non-negative integer, got {value!r}")
    return value


def load_params(path: str | os.PathLike | None) -> Params:
    """Counts of ``params.json`` (total, trainable, inference), of an IMP ticket's
    ``result.json`` (alive_params; nothing trained), or of none (the foundation model)."""
    if path is None:
        return Params(None, 0, None)
    path = Path(path)
    data = load_json_object(path, "params file")
    if "inference" in data:
        return Params(
            _count_field(path, data, "total"),
            _count_field(path, data, "trainable"),
            _count_field(path, data, "inference"),
        )
    if "alive_params" in data:
        return Params(None, 0, _count_field(path, data, "alive_params"))
    raise DataError(f"{path}: neither params.json (inference) nor an IMP result (alive_params)")


def fill_params(group: str, params: Mapping[str, Params]) -> dict[str, Params]:
    """Every system of ``group`` with the group's total (all systems share one foundation model)
    and, for the foundation model itself, inference = total."""
    totals = {p.total for p in params.values() if p.total is not None}
    if len(totals) > 1:
        raise DataError(
            f"{group}: the systems' parameter files disagree on the foundation model's total "
            f"({sorted(totals)}): they were not made from one model"
        )
    total = totals.pop() if totals else None
    out = {}
    for name, p in params.items():
        inference = p.inference if p.inference is not None else total
        if total is not None and inference is not None and inference > total:
            raise DataError(f"{group}: {name} has {inference} parameters alive of {total}")
        out[name] = Params(total, p.trainable, inference)
    return out


@dataclass
class System:
    """One row: a decode directory and the parameter counts of the model decoded."""

    name: str
    decode_dir: Path
    params: Params


@dataclass
class Group:
    """The systems of one language (Table 3) or of the transfer experiment (Table 4)."""

    name: str
    sets: list[str]
    systems: list[System] = field(default_factory=list)
    _rates: dict[str, dict[str, dict[str, float]]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def rates(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{system: {set: {metric: rate}}}`` (scored once, then reused)."""
        if self._rates is None:
            self._rates = {
                s.name: {
                    set_name: load_error_rates(s.decode_dir, set_name) for set_name in self.sets
                }
                for s in self.systems
            }
        return self._rates


def build_group(
    name: str, sets: Sequence[str], specs: Sequence[tuple[str, str, str | None]]
) -> Group:
    """A group from ``(system, decode dir, params file or None)`` in table order."""
    if not specs:
        raise ConfigError(f"{name}: no systems")
    names = [s[0] for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{name}: systems given twice: {duplicated}")
    params = fill_params(name, {n: load_params(p) for n, _, p in specs})
    systems = [System(n, Path(d), params[n]) for n, d, _ in specs]
    return Group(name, list(sets), systems)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _rate(x: float | None) -> str:
    if x is None or math.isnan(x):
        return DASH
    return f"{x:.2f}" if math.isfinite(x) else "inf"


def format_count(n: int | None) -> str:
    """1.54B, 2.62M, 9,216; ``–`` for unknown."""
    if n is None:
        return DASH
    if n >= 1_000_000_000:
        return f"{n / 1e9:.2f}B"
    if n >= 100_000:
        return f"{n / 1e6:.2f}M"
    return f"{n:,}"


def _trainable(p: Params) -> str:
    return DASH if p.trainable == 0 else format_count(p.trainable)


def _alive(p: Params) -> str:
    if p.inference is None or not p.total:
        return DASH
    return f"{100.0 * p.inference / p.total:.1f}%"


def _span(values: Sequence[str]) -> str:
    """One value, or the first and last of several distinct ones."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else f"{distinct[0]} … {distinct[-1]}"


def _metrics(rates: Mapping[str, Mapping[str, Mapping[str, float]]], set_name: str) -> list[str]:
    present = {m for per_set in rates.values() for m in per_set[set_name]}
    return [m for m in METRICS if m in present]


def render_main_table(groups: Sequence[Group]) -> list[str]:
    """Table 3: one row per system; parameters, then the error rates per language and set."""
    names = list(dict.fromkeys(s.name for g in groups for s in g.systems))
    rates = {g.name: g.rates() for g in groups}
    columns: list[tuple[str, str, str]] = []  # (group, set, metric)
    for g in groups:
        for set_name in g.sets:
            columns += [(g.name, set_name, m) for m in _metrics(rates[g.name], set_name)]
    multi_set = any(len(g.sets) > 1 for g in groups)
    header = ["System", "Pruned", "Trainable", "Inference"]
    header += [
        f"{set_name if multi_set else group} {metric.upper()}"
        for group, set_name, metric in columns
    ]
    rows = []
    for name in names:
        params = [s.params for g in groups for s in g.systems if s.name == name]
        row = [
            name,
            "Y" if any(p.pruned for p in params) else "N",
            _span([_trainable(p) for p in params]),
            _span([format_count(p.inference) for p in params]),
        ]
        for group, set_name, metric in columns:
            value = rates[group].get(name, {}).get(set_name, {}).get(metric)
            row.append(_rate(value))
        rows.append(row)
    sets = sorted({s for g in groups for s in g.sets})
    caption = (
        "Error rates (%, lower is better) of every system trained per target language on its "
        f"test set ({', '.join(sets)}); Trainable: parameters updated ({DASH}: none), "
        "Inference: parameters alive at inference (adapters merged; first … last language "
        "where the tickets differ). CER and WER are of the same hypotheses."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_params_table(groups: Sequence[Group]) -> list[str]:
    """Trainable and alive parameters per system and language."""
    names = list(dict.fromkeys(s.name for g in groups for s in g.systems))
    header = ["System"]
    for g in groups:
        header += [f"{g.name} trainable", f"{g.name} inference (alive)"]
    rows = []
    for name in names:
        row = [name]
        for g in groups:
            p = next((s.params for s in g.systems if s.name == name), None)
            if p is None:
                row += [DASH, DASH]
            else:
                row += [_trainable(p), f"{format_count(p.inference)} ({_alive(p)})"]
        rows.append(row)
    totals = {g.name: g.systems[0].params.total for g in groups}
    shown = ", ".join(f"{k} {format_count(v)}" for k, v in totals.items())
    caption = (
        "Parameters per language: trained, and alive at inference with their share of the "
        f"foundation model's total ({shown})."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_transfer_table(group: Group, language: str) -> list[str]:
    """Table 4: the transfer corpus' test sets; pruned models carry the tickets pruned on the
    main corpus' ``language``."""
    rates = group.rates()
    columns = [(s, m) for s in group.sets for m in _metrics(rates, s)]
    header = ["System", "Trainable", "Inference", "Pruned", "Trained on"]
    header += [f"{s} {m.upper()}" for s, m in columns]
    rows = []
    for system in group.systems:
        p = system.params
        row = [
            system.name,
            _trainable(p),
            format_count(p.inference),
            "Y" if p.pruned else "N",
            group.name if p.trainable else DASH,
        ]
        row += [_rate(rates[system.name][s].get(m)) for s, m in columns]
        rows.append(row)
    caption = (
        f"Transfer to {group.name}: pruned models use the tickets pruned on {language} of the "
        f"main corpus, then (LTH-FT, PEPSI) are trained on {group.name} like FFT and LoRA; "
        "error rates (%) on its test sets."
    )
    return [caption, "", *md_table(header, rows), ""]


@dataclass(frozen=True)
class SubnetPoint:
    """A ticket pruned on ``pruned_on`` to ``pct`` %, decoded zero-shot on ``language``."""

    language: str
    pruned_on: str
    pct: float
    decode_dir: Path


def render_subnet_tables(points: Sequence[SubnetPoint], sets: Sequence[str]) -> list[str]:
    """Table 1: per evaluated language, one row per language pruned on, one column per level."""
    lines: list[str] = []
    for language in dict.fromkeys(p.language for p in points):
        own = [p for p in points if p.language == language]
        levels = sorted({p.pct for p in own})
        sources = list(dict.fromkeys(p.pruned_on for p in own))
        for set_base in sets:
            set_name = f"{set_base}_{language}"
            metric = None
            rows = []
            for source in sources:
                row = [source]
                for level in levels:
                    point = next((p for p in own if p.pruned_on == source and p.pct == level), None)
                    if point is None:
                        row.append(DASH)
                        continue
                    rates = load_error_rates(point.decode_dir, set_name, both=False)
                    metric = metric or next(m for m in METRICS if m in rates)
                    row.append(_rate(rates.get(metric)))
                rows.append(row)
            header = ["Pruned on", *(f"alive {100.0 - level:.1f}%" for level in levels)]
            lines += [
                f"Zero-shot {(metric or 'error rate').upper()} (%) on {set_name} of the tickets "
                f"pruned on each language (rewound to the foundation weights, nothing trained); "
                "alive: share of all parameters kept (100%: the unpruned model).",
                "",
                *md_table(header, rows),
                "",
            ]
    return lines


def render_alive_table(history: Mapping) -> list[str]:
    """The numbers of Fig. 3b: alive % per layer group after every IMP round."""
    from speechkd.eval.pruning_plots import LAYER_GROUP_TITLES, alive_table

    groups, rounds, alive = alive_table(history)
    by_round = {int(r["round"]): r for r in history["rounds"]}
    header = ["Round", "Pruned", *(LAYER_GROUP_TITLES.get(g, g) for g in groups)]
    rows = []
    for j, round_index in enumerate(rounds):
        sparsity = by_round[round_index].get("sparsity")
        pruned = DASH if sparsity is None else f"{100.0 * float(sparsity):.1f}%"
        rows.append([round_index, pruned, *(f"{alive[i, j]:.1f}" for i in range(len(groups)))])
    # Histories from before the all-parameter convention record shares of the prunable weights.
    of = "all parameters" if history.get("sparsity_of") == "all parameters" else "prunable weights"
    return [
        f"Alive parameters (%) per layer group after each IMP round (Pruned: share of {of} "
        "removed).",
        "",
        *md_table(header, rows),
        "",
    ]


def render_report(
    groups: Sequence[Group],
    title: str = "PEPSI",
    transfer: Group | None = None,
    transfer_language: str | None = None,
    subnet: Sequence[SubnetPoint] = (),
    subnet_sets: Sequence[str] = (),
    alive: Sequence[tuple[str, Mapping, str | None]] = (),
    figures: Sequence[tuple[str, str, str | None]] = (),
) -> str:
    """The Markdown section. ``alive``: (language, imp history, PNG link or None); ``figures``:
    (caption, PNG link, Markdown text of its numbers or None)."""
    lines = [f"## {title}", "", SPARSITY_NOTE, ""]
    lines += ["### Error rates and parameters (Table 3)", "", *render_main_table(groups)]
    lines += ["### Parameters per language", "", *render_params_table(groups)]
    if transfer is not None:
        lines += [f"### Transfer to {transfer.name} (Table 4)", ""]
        lines += render_transfer_table(transfer, transfer_language or "?")
    if subnet:
        lines += ["### Language-specific subnetworks (Table 1)", ""]
        lines += render_subnet_tables(subnet, subnet_sets)
    if alive:
        lines += ["### Alive parameters per layer group (Fig. 3b)", ""]
        for language, history, link in alive:
            lines += [f"IMP on {language}:", ""]
            if link is not None:
                lines += [f"![Alive parameters per layer group, IMP on {language}]({link})", ""]
            lines += render_alive_table(history)
    for caption, link, table in figures:
        lines += [f"### {caption}", "", f"![{caption}]({link})", ""]
        if table:
            lines += [table.strip("\n"), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# RESULTS.json
# ---------------------------------------------------------------------------------------------

# the recipe's labels (and system names) → stable names
RESULT_NAMES = {
    "Whisper zero-shot": "zero_shot",
    "zeroshot": "zero_shot",
    "Whisper FFT": "fft",
    "ft": "fft",
    "Whisper LoRA": "lora",
    "Whisper LTH": "lth",
    "Whisper LTH-FT": "lth_ft",
    "PEPSI": "pepsi",
}


def result_name(label: str) -> str:
    """The stable name of a system label (``Whisper LTH-FT`` → ``lth_ft``)."""
    return RESULT_NAMES.get(label, stable_name(label))


def _pct_name(pct: float) -> str:
    return f"{pct:g}".replace(".", "_")


def _group_rows(rows: ResultRows, group: Group, language: str, param_set: str) -> None:
    names = unique_names({s.name: result_name(s.name) for s in group.systems})
    rates = group.rates()
    for system in group.systems:
        name, p = names[system.name], system.params
        for set_name, per_metric in rates[system.name].items():
            for metric, value in per_metric.items():
                rows.add(name, set_name, language, metric, value)
        rows.add(name, param_set, language, "params", p.total)
        rows.add(name, param_set, language, "params_trainable", p.trainable)
        rows.add(name, param_set, language, "params_inference", p.inference)
        if p.inference is not None and p.total:
            rows.add(name, param_set, language, "params_alive_pct", 100.0 * p.inference / p.total)


def _subnet_rows(rows: ResultRows, points: Sequence[SubnetPoint], sets: Sequence[str]) -> None:
    for p in points:
        system = f"ticket_{stable_name(p.pruned_on)}_pruned_{_pct_name(p.pct)}"
        for set_base in sets:
            set_name = f"{set_base}_{p.language}"
            rates = load_error_rates(p.decode_dir, set_name, both=False)
            for metric, value in rates.items():
                rows.add(system, set_name, p.language, metric, value)


def _alive_rows(rows: ResultRows, language: str, history: Mapping) -> None:
    from speechkd.eval.pruning_plots import alive_table

    groups, rounds, alive = alive_table(history)
    by_round = {int(r["round"]): r for r in history["rounds"]}
    for j, round_index in enumerate(rounds):
        system = f"imp_round_{round_index}"
        sparsity = by_round[round_index].get("sparsity")
        if sparsity is not None:
            rows.add(system, ALL, language, "pruned_pct", 100.0 * float(sparsity))
        for i, group in enumerate(groups):
            rows.add(system, ALL, language, f"alive_pct_{group}", float(alive[i, j]))


def _figure_rows(rows: ResultRows, table: str) -> None:
    """A ``pruning_plots prune-curve --table``: per prune %, ``<set> [<language>] <METRIC>``."""
    header, body = md_parse_table(table)
    for cells in body:
        try:
            level = float(cells[0])
        except (ValueError, IndexError):
            continue
        for label, cell in zip(header[1:], cells[1:], strict=False):
            words = label.split()
            if len(words) not in (2, 3) or cell in ("", DASH):
                continue
            try:
                value = float(cell)
            except ValueError:
                continue
            language = words[1] if len(words) == 3 else ALL
            system = f"imp_pruned_{_pct_name(level)}"
            rows.add(system, words[0], language, words[-1].lower(), value)


def result_rows(
    groups: Sequence[Group],
    transfer: Group | None = None,
    transfer_language: str | None = None,
    subnet: Sequence[SubnetPoint] = (),
    subnet_sets: Sequence[str] = (),
    alive: Sequence[tuple[str, Mapping, str | None]] = (),
    figures: Sequence[tuple[str, str, str | None]] = (),
) -> ResultRows:
    """The numbers of every table: per language (the group), ``cer``/``wer`` per set and the
    parameter counts (set ``all``); the transfer systems on their sets (language
    ``transfer_language``, parameters under the set named by the transfer corpus); Table 1's
    tickets ``ticket_<pruned on>_pruned_<pct>``; Fig. 3b's ``imp_round_<n>`` (``alive_pct_<layer
    group>``, ``pruned_pct``; language: the IMP's); Fig. 4's ``imp_pruned_<pct>``."""
    rows = ResultRows()
    for group in groups:
        _group_rows(rows, group, group.name, ALL)
    if transfer is not None:
        _group_rows(rows, transfer, transfer_language or ALL, transfer.name)
    _subnet_rows(rows, subnet, subnet_sets)
    for language, history, _ in alive:
        _alive_rows(rows, language, history)
    for _, _, table in figures:
        if table:
            _figure_rows(rows, table)
    return rows


def write_report(out: str | os.PathLike, text: str, rows: ResultRows) -> Path:
    """Write the Markdown section ``text`` to ``out`` and ``rows`` to RESULTS.json beside it,
    atomically (nothing when a row is bad)."""
    out = Path(out)
    write_results_json(rows, results_json_path(out))
    atomic_write_text(out, text)
    return out


__all__ = [
    "Group",
    "Params",
    "SubnetPoint",
    "System",
    "build_group",
    "fill_params",
    "format_count",
    "load_error_rates",
    "load_params",
    "render_report",
    "result_rows",
    "write_report",
]
