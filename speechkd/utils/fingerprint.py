"""Stage fingerprints: a finished stage is skipped only while its inputs, outputs and config
(parameters) are unchanged.

A stamp file (JSON) records the digest of every input and output path and of the parameter
string. Files are hashed by content (sha256); directories by the sorted list of their files'
relative paths, sizes and modification times (content hashing of large audio trees would cost more
than most stages).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from speechkd.utils.atomic import atomic_write_text

_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root) / name
            if name.startswith(".tmp-"):
                continue
            stat = full.stat()
            h.update(f"{full.relative_to(path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def path_digest(path: str | os.PathLike) -> str:
    """Digest of a file (content) or directory (listing); ``"missing"`` if it does not exist."""
    path = Path(path)
    if path.is_file():
        return "file:" + _file_digest(path)
    if path.is_dir():
        return "dir:" + _dir_digest(path)
    return "missing"


def compute_fingerprint(inputs: list[str], outputs: list[str], params: str) -> dict:
    """The record stored in a stamp: digests of inputs and outputs, and the parameters."""
    return {
        "params": params,
        "inputs": {p: path_digest(p) for p in inputs},
        "outputs": {p: path_digest(p) for p in outputs},
    }


def stage_is_current(
    stamp: str | os.PathLike, inputs: list[str], outputs: list[str], params: str
) -> tuple[bool, str]:
    """Whether the stage recorded in ``stamp`` can be skipped, and why (or why not)."""
    stamp = Path(stamp)
    if not stamp.is_file():
        return False, "never finished"
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False, f"unreadable stamp {stamp}"
    if recorded.get("params") != params:
        return False, "parameters changed"
    # a path named twice (e.g. a teacher that also initialises the student) counts once
    if sorted(recorded.get("inputs", {})) != sorted(set(inputs)):
        return False, "input list changed"
    if sorted(recorded.get("outputs", {})) != sorted(set(outputs)):
        return False, "output list changed"
    for path in inputs:
        if path_digest(path) != recorded["inputs"][path]:
            return False, f"input changed: {path}"
    for path in outputs:
        digest = path_digest(path)
        if digest == "missing":
            return False, f"output missing: {path}"
        if digest != recorded["outputs"][path]:
            return False, f"output changed: {path}"
    return True, "inputs, outputs and parameters unchanged"


def record_stage(
    stamp: str | os.PathLike, inputs: list[str], outputs: list[str], params: str
) -> None:
    """Record a finished stage; every output must exist."""
    record = compute_fingerprint(inputs, outputs, params)
    missing = [p for p, d in record["outputs"].items() if d == "missing"]
    if missing:
        raise FileNotFoundError(f"stage outputs missing, not recording {stamp}: {missing}")
    atomic_write_text(stamp, json.dumps(record, indent=1, sort_keys=True) + "\n")
