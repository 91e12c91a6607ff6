"""Inputs shared by the method reports: ``NAME=VALUE`` options and JSON objects (the parameter
counts of ``params.json``: :func:`speechkd.eval.report_kit.load_params`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from speechkd.errors import ConfigError, DataError

PARAM_KEYS = ("total", "trainable", "inference")


def parse_named(
    spec: str, option: str, max_values: int = 1, form: str | None = None
) -> tuple[str, list[str]]:
    """``NAME=V1[,V2...]`` (at most ``max_values`` values) → (NAME, [V1, ...]); the name may hold
    spaces, not ``=``. ConfigError naming ``option``, the spec and the expected ``form``."""
    name, sep, rest = spec.partition("=")
    values = rest.split(",", max_values - 1) if rest else []
    if not sep or not name.strip() or not values or not all(v.strip() for v in values):
        form = form or ("NAME=VALUE[,VALUE]" if max_values > 1 else "NAME=VALUE")
        raise ConfigError(f"{option} {spec!r}: expected {form}")
    return name.strip(), [v.strip() for v in values]


def parse_named_list(
    specs: Iterable[str], option: str, max_values: int = 1, form: str | None = None
) -> dict[str, list[str]]:
    """:func:`parse_named` of every spec, in order; a name given twice is a ConfigError."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, values = parse_named(spec, option, max_values, form)
        if name in out:
            raise ConfigError(f"{option}: name {name!r} given twice")
        out[name] = values
    return out


def parse_system_spec(spec: str) -> tuple[str, Path]:
    """``NAME=SYSTEM_DIR`` → (NAME, SYSTEM_DIR); ConfigError naming the spec otherwise."""
    name, (directory,) = parse_named(spec, "--system", form="NAME=SYSTEM_DIR")
    return name, Path(directory)


def parse_system_specs(specs: Iterable[str]) -> dict[str, Path]:
    """``{NAME: SYSTEM_DIR}`` of ``--system NAME=SYSTEM_DIR`` options, in the given order."""
    systems = parse_named_list(specs, "--system", form="NAME=SYSTEM_DIR")
    if not systems:
        raise ConfigError("--system: give at least one system")
    return {name: Path(directory) for name, (directory,) in systems.items()}


def load_json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; DataError naming the file (and ``what`` it is) otherwise."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data
