"""``RESULTS.json``: the numbers of a report's tables as rows ``{system, set, language, metric,
value}``, for tools that read results without parsing Markdown.

The file is a JSON list of objects with exactly those keys, sorted by (system, set, language,
metric), one row per key (a number shown in several tables is written once). ``system`` and
``metric`` are stable lower-case names (``zero_shot``, ``wer``, ``bleu_sph``, ``params`` ...);
``set`` is the recipe's set name and ``language`` a language code, or ``all`` for a pooled figure
(an average over languages, a parameter count). A report writes it beside its Markdown
(:func:`results_json_path`), atomically, after checking every row: a bad row is a DataError and
nothing is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

RESULTS_JSON = "RESULTS.json"
ALL = "all"
FIELDS = ("system", "set", "language", "metric", "value")
LOWER_CASE_FIELDS = ("system", "metric")


@dataclass(frozen=True)
class ResultRow:
    """One number of a report: ``value`` of ``metric`` for ``system`` on ``set`` and
    ``language``."""

    system: str
    set: str
    language: str
    metric: str
    value: float | int

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.system, self.set, self.language, self.metric)


class ResultRows(list[ResultRow]):
    """Rows being built; :meth:`add` leaves out a value that a table shows as missing."""

    def add(
        self, system: str, set_name: str, language: str, metric: str, value: float | None
    ) -> None:
        """Append a row unless ``value`` is None or not finite (a "–" or "inf" cell)."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return
        self.append(ResultRow(system, set_name, language, metric, value))


def stable_name(name: str) -> str:
    """``name`` lower-cased with every run of other characters than letters and digits as one
    ``_`` (``"Whisper LTH-FT"`` → ``whisper_lth_ft``); ConfigError when nothing is left."""
    out = re.sub(r"[\W_]+", "_", name.lower()).strip("_")
    if not out:
        raise ConfigError(f"{name!r} has no letter or digit to name a system or metric")
    return out


def unique_names(proposed: Mapping[str, str]) -> dict[str, str]:
    """Label → stable name from ``proposed`` (label → preferred name); labels whose preferred
    names collide fall back to :func:`stable_name` of the label; ConfigError if that collides."""
    counts: dict[str, int] = {}
    for name in proposed.values():
        counts[name] = counts.get(name, 0) + 1
    out = {
        label: name if counts[name] == 1 else stable_name(label) for label, name in proposed.items()
    }
    seen: dict[str, str] = {}
    for label, name in out.items():
        if name in seen:
            raise ConfigError(
                f"systems {seen[name]!r} and {label!r} both map to the result name {name!r}"
            )
        seen[name] = label
    return out


def results_json_path(markdown: str | os.PathLike) -> Path:
    """``RESULTS.json`` in the directory of the Markdown file ``markdown``."""
    return Path(markdown).parent / RESULTS_JSON


def _check_row(index: int, row: object) -> ResultRow:
    where = f"RESULTS.json row {index}"
    if isinstance(row, Mapping):
        if set(row) != set(FIELDS):
            raise DataError(f"{where}: keys must be {list(FIELDS)}, got {sorted(row)}")
        row = ResultRow(**{k: row[k] for k in FIELDS})
    if not isinstance(row, ResultRow):
        raise DataError(f"{where}: expected a ResultRow or a mapping, got {type(row).__name__}")
    for key in FIELDS[:-1]:
        text = getattr(row, key)
        if not isinstance(text, str) or not text.strip() or text != text.strip():
            raise DataError(
                f"{where} ({row.system!r}): {key!r} must be a non-empty string without "
                f"surrounding spaces, got {text!r}"
            )
        if key in LOWER_CASE_FIELDS and text != text.lower():
            raise DataError(f"{where}: {key!r} must be lower-case, got {text!r}")
    value = row.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(
            f"{where} ({row.system}, {row.set}, {row.language}, {row.metric}): value must be a "
            f"finite number, got {value!r}"
        )
    return row


def validate_rows(rows: Iterable[ResultRow | Mapping[str, object]]) -> list[ResultRow]:
    """The rows checked (non-empty strings, lower-case system and metric, finite int or float
    values), a row repeated with the same value kept once, sorted; DataError naming the first
    bad row or a key given two values."""
    by_key: dict[tuple[str, str, str, str], ResultRow] = {}
    for i, row in enumerate(rows):
        checked = _check_row(i, row)
        other = by_key.setdefault(checked.key, checked)
        if other.value != checked.value:
            raise DataError(
                f"RESULTS.json: (system, set, language, metric) {checked.key} has two values, "
                f"{other.value!r} and {checked.value!r}"
            )
    return [by_key[key] for key in sorted(by_key)]


def write_results_json(
    rows: Iterable[ResultRow | Mapping[str, object]], path: str | os.PathLike
) -> Path:
    """Check and sort ``rows`` and write them to ``path`` atomically; nothing is written when a
    row is bad."""
    checked = validate_rows(rows)
    text = json.dumps([asdict(r) for r in checked], indent=1, ensure_ascii=False)
    path = Path(path)
    atomic_write_text(path, text + "\n")
    return path


def load_results_json(path: str | os.PathLike) -> list[ResultRow]:
    """The rows of a ``RESULTS.json``, checked as :func:`write_results_json` checks them."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows")
    try:
        return validate_rows(data)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None


def merge_results_json(
    section_files: Iterable[str | os.PathLike], out_markdown: str | os.PathLike
) -> Path | None:
    """RESULTS.json beside ``out_markdown`` (a RESULTS.md made of report sections) holding the
    rows of the RESULTS.json beside each of ``section_files``; None when none has one.

    Sections whose rows give one key two values (several runs of a method, e.g. training sizes,
    in one document) cannot share one file under the stable names: a warning is logged, no merged
    file is left (a previous one is removed) and each run keeps its own RESULTS.json.
    """
    target = results_json_path(out_markdown)
    sources = [results_json_path(f) for f in section_files]
    sources = [p for p in dict.fromkeys(sources) if p.is_file() and p.resolve() != target.resolve()]
    if not sources:
        return None
    rows = [row for path in sources for row in load_results_json(path)]
    try:
        return write_results_json(rows, target)
    except DataError as err:
        logger.warning(
            "%s not written: the sections' results disagree (%s); see %s",
            target,
            err,
            ", ".join(map(str, sources)),
        )
        target.unlink(missing_ok=True)
        return None
