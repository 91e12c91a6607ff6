"""The inputs of the S2-LoRA report and the numbers of its tables: the pooled error rate of every
system per test set (``scores-<set>.json``, CER or WER as it was scored), its parameter counts
(``params.json``), whether its learned update is zero (:mod:`speechkd.eval.learned_update`), the
Table-2 block of ``speechkd.bin.peft_param_table`` and the rows of RESULTS.json
(:func:`result_rows`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from speechkd.errors import DataError
from speechkd.eval import report_kit as kit
from speechkd.eval.learned_update import collapse_reason, decoded_model_dir, relative_update
from speechkd.eval.markdown import md_parse_table
from speechkd.eval.pruning_plots import RankTable
from speechkd.eval.results_json import ALL, ResultRows, stable_name, unique_names

COLLAPSED = "collapsed"
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


def table2_part(text: str) -> str:
    """The Table-2 block of a ``peft_param_table`` output (the whole text if it has none)."""
    lines = text.strip("\n").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TABLE2_HEADING)), None)
    if start is None:
        return "\n".join(lines)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end]).strip("\n")


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
    ranks: RankTable | None = None,
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
    ranks: RankTable | None,
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
