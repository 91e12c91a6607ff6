"""The inputs of the PEPSI report: error rates of every system (the metric a set was decoded with,
from ``scores-<set>.json``, and the other one rescored from the ``hyp-<set>.txt`` and
``ref-<set>.txt`` beside it, since the paper reports CER and WER for every language; the pooled
rate of the counts), the parameter counts of each system (``params.json`` of ``whisper_train`` /
``pepsi_prune``; ``result.json`` of an IMP ticket: alive parameters, nothing trained; none: the
foundation model, zero-shot) and the groups of systems: one per language (Table 3) and the
transfer experiment (Table 4), each sharing one foundation model, whose total every system shows;
and the numbers of every table of the report for RESULTS.json (:func:`result_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.markdown import md_parse_table
from speechkd.eval.report_kit import (
    DASH,
    load_json_object,
    load_params,
    load_scores,
    pooled_counts,
    rescore_decode,
)
from speechkd.eval.results_json import ALL, ResultRows, stable_name, unique_names

METRICS = ("cer", "wer")  # column order (the paper: CER, then WER)


def _primary(path: Path, set_name: str) -> tuple[dict, str, float]:
    payload = load_scores(path, set_name, METRICS)
    return payload, str(payload["metric"]), pooled_counts(payload, path).rate


def primary_metric(decode_dir: str | os.PathLike, set_name: str) -> str:
    """The metric ``<decode_dir>/scores-<set_name>.json`` was scored with."""
    return _primary(Path(decode_dir) / f"scores-{set_name}.json", set_name)[1]


def rescore(decode_dir: str | os.PathLike, set_name: str, metric: str, payload: dict) -> float:
    """``metric`` (%) of the hypotheses ``hyp-<set>.txt`` against ``ref-<set>.txt``, normalised
    as ``speechkd.bin.score`` does; the languages are those of the scores file ``payload`` (its
    CutSet when it has several)."""

    decode_dir = Path(decode_dir)
    languages = payload.get("languages") or []
    language = languages[0] if len(languages) == 1 else None
    cuts = None if language is not None else payload.get("cuts")
    if language is None and not cuts:
        raise DataError(
            f"{decode_dir}/scores-{set_name}.json: no single language and no 'cuts' to read the "
            "languages from"
        )
    return rescore_decode(decode_dir, set_name, metric, cuts, language).totals.rate


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


def load_system_params(path: str | os.PathLike | None) -> Params:
    """Counts of ``params.json`` (:func:`speechkd.eval.report_kit.load_params`), of an IMP
    ticket's ``result.json`` (alive_params; nothing trained), or of none (the foundation model)."""
    if path is None:
        return Params(None, 0, None)
    path = Path(path)
    data = load_json_object(path, "params file")
    if "inference" in data:
        counts = load_params(path)
        return Params(counts["total"], counts["trainable"], counts["inference"])
    alive = data.get("alive_params")
    if alive is None:
        raise DataError(f"{path}: neither params.json (inference) nor an IMP result (alive_params)")
    if isinstance(alive, bool) or not isinstance(alive, int) or alive < 0:
        raise DataError(
            f"{path}: field 'alive_params' must be a non-negative integer, got {alive!r}"
        )
    return Params(None, 0, alive)


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


def group_metric(group: Group, set_name: str) -> str:
    """The metric ``set_name`` of ``group`` was decoded with (its first system's)."""
    return primary_metric(group.systems[0].decode_dir, set_name)


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
    params = fill_params(name, {n: load_system_params(p) for n, _, p in specs})
    systems = [System(n, Path(d), params[n]) for n, d, _ in specs]
    return Group(name, list(sets), systems)


@dataclass(frozen=True)
class SubnetPoint:
    """A ticket pruned on ``pruned_on`` to ``pct`` %, decoded zero-shot on ``language``."""

    language: str
    pruned_on: str
    pct: float
    decode_dir: Path


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
