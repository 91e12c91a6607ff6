"""Inputs shared by the method reports: JSON objects and ``params.json`` parameter counts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from speechkd.errors import DataError

PARAM_KEYS = ("total", "trainable", "inference")


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


def load_params(path: str | os.PathLike) -> dict[str, int]:
    """``{"total", "trainable", "inference"}`` of a ``params.json``, each a non-negative int."""
    path = Path(path)
    data = load_json_object(path, "params file")
    out: dict[str, int] = {}
    for key in PARAM_KEYS:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DataError(f"{path}: field {key!r} must be a non-negative integer, got {value!r}")
        out[key] = value
    return out
