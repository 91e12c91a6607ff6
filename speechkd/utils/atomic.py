"""Atomic file output: write to a temporary sibling, then rename over the target.

A killed process leaves either the previous file or none, never a half-written one. Temporary
names start with ``.tmp-`` and keep the target's suffixes, so format detection by extension
(``.jsonl.gz``, ``.safetensors``) still works on them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def temp_sibling(path: str | os.PathLike) -> Path:
    """A unique temporary path beside ``path`` that keeps its suffixes."""
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}-{os.urandom(4).hex()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_manifest(manifest: Any, path: str | os.PathLike) -> None:
    """Save a lhotse manifest (RecordingSet, SupervisionSet, CutSet, ...) atomically."""
    with atomic_path(path) as tmp:
        manifest.to_file(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` in one rename.

    On failure the temporary directory is removed and ``path`` is left as it was. With
    ``overwrite=False`` an existing ``path`` is kept and the new directory is discarded (safe for
    caches filled by concurrent processes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                return
            old = temp_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            try:
                os.replace(tmp, path)
            except OSError:
                if overwrite or not path.exists():
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
