"""Reading lhotse manifests: a corrupt or truncated file is one :class:`DataError` naming it.

Every reader of lhotse manifests goes through this module. lhotse lets a manifest cut short (a
killed job, a full disk) surface as a bare ``EOFError: Compressed file ended before the
end-of-stream marker was reached``, a ``JSONDecodeError`` or a ``BadGzipFile`` that name no
file; here each becomes ``<path>: <what is wrong>`` on one line.

    cuts = read_cuts(path)                 # eager CutSet
    manifest = read_manifest(path)         # eager, any manifest type (RecordingSet, ...)
    for cut in open_cuts_lazy(path): ...   # streamed; damage raised where iteration reaches it
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

import lhotse
from lhotse import CutSet
from lhotse.lazy import LazyManifestIterator
from lhotse.serialization import (
    Manifest,
    NotALhotseManifest,
    deserialize_item,
    resolve_manifest_set_class,
)

from speechkd.errors import DataError

M = TypeVar("M")

# gzip.BadGzipFile and FileNotFoundError are OSErrors; JSONDecodeError and UnicodeDecodeError
# are the ValueErrors a damaged file raises.
READ_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    zlib.error,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def manifest_error(
    path: str | os.PathLike, err: BaseException, line: int | None = None
) -> DataError:
    """The one-line DataError for ``err`` raised while reading the manifest ``path``.

    ``line``: the 1-based line being read, when known.
    """
    path = Path(path)
    if isinstance(err, EOFError):
        after = f" after {line - 1} entries" if line is not None else ""
        return DataError(
            f"{path}: truncated manifest: the gzip stream ends before its end marker{after} "
            "(the file was cut short; write it again)"
        )
    if isinstance(err, gzip.BadGzipFile):
        return DataError(f"{path}: not a gzip file ({_one_line(err)}): corrupt manifest")
    if isinstance(err, zlib.error):
        return DataError(f"{path}: corrupt gzip data ({_one_line(err)})")
    if isinstance(err, json.JSONDecodeError):
        where = f"line {line if line is not None else err.lineno}"
        what = f"{err.msg.removesuffix(' at')} at column {err.colno}"
        return DataError(
            f"{path}: {where} is not valid JSON ({what}): the manifest is corrupt or was cut short"
        )
    if isinstance(err, UnicodeDecodeError):
        return DataError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}): corrupt manifest"
        )
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path}: manifest not found")
    if isinstance(err, OSError):
        return DataError(f"{path}: cannot read the manifest ({_one_line(err.strerror or err)})")
    return DataError(f"{path}: cannot read the manifest ({type(err).__name__}: {_one_line(err)})")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    # gzip reads a 0-byte file as empty text; even an empty manifest compresses to 20 bytes
    if path.name.endswith(".gz") and path.stat().st_size == 0:
        raise DataError(
            f"{path}: empty file (0 bytes), not a gzip stream: the manifest was cut short"
        )


class CheckedManifestIterator(LazyManifestIterator):
    """lhotse's lazy JSONL reader whose read errors are :func:`manifest_error` DataErrors."""

    def __iter__(self) -> Iterator[Any]:
        line = 0
        try:
            for line, item in enumerate(self.source, start=1):
                try:
                    entry = deserialize_item(item)
                except (KeyError, TypeError, ValueError) as err:
                    raise DataError(
                        f"{self.path}: line {line} is not a lhotse manifest entry "
                        f"({type(err).__name__}: {_one_line(err)})"
                    ) from err
                yield entry
        except READ_ERRORS as err:
            raise manifest_error(self.path, err, line + 1) from err

    def __len__(self) -> int:
        try:
            return len(self.source)
        except READ_ERRORS as err:
            raise manifest_error(self.path, err) from err


@overload
def read_manifest(path: str | os.PathLike, kind: None = None) -> Manifest: ...
@overload
def read_manifest(path: str | os.PathLike, kind: type[M]) -> M: ...
def read_manifest(path: str | os.PathLike, kind: type[M] | None = None) -> M | Manifest:
    """Eager lhotse manifest of whatever type the file holds (``kind``: the type it must hold).

    A ``.jsonl(.gz)`` file is read as a stream (damage reported with its line number); an empty
    one is an empty ``kind`` (CutSet when None). Other formats (.json, .yaml) go to lhotse.
    """
    path = Path(path)
    _check_file(path)
    if ".jsonl" in path.suffixes:
        # iter(): list() of the iterator itself would first count its lines (len) in another pass
        items = list(iter(CheckedManifestIterator(path)))
        if not items:
            return (kind or CutSet).from_items([])  # type: ignore[attr-defined]
        try:
            found = resolve_manifest_set_class(items[0])
        except NotALhotseManifest as err:
            raise DataError(f"{path}: line 1 is not a cut, recording or supervision") from err
        manifest = None if kind not in (None, found) else found.from_items(items)
    else:
        try:
            manifest = lhotse.load_manifest(path)
        except READ_ERRORS as err:
            raise manifest_error(path, err) from err
        except ValueError as err:  # lhotse: an unknown extension, or entries of no known type
            raise DataError(f"{path}: not a lhotse manifest ({_one_line(err)})") from err
        found = type(manifest)
    if kind is not None and found is not kind:
        raise DataError(f"{path}: expected a {kind.__name__}, found a {found.__name__}")
    return manifest


def read_cuts(path: str | os.PathLike) -> CutSet:
    """Eager CutSet from ``path`` (see :func:`read_manifest`)."""
    return read_manifest(path, CutSet)


def open_manifest_lazy(path: str | os.PathLike, kind: type[M]) -> M:
    """A lazily read ``kind`` (CutSet, RecordingSet, ...) of a ``.jsonl(.gz)`` file.

    A missing or empty file fails here; damage fails where iteration reaches it, naming the
    line.
    """
    path = Path(path)
    _check_file(path)
    return kind(CheckedManifestIterator(path))  # type: ignore[call-arg]


def open_cuts_lazy(path: str | os.PathLike) -> CutSet:
    """A lazily read CutSet (see :func:`open_manifest_lazy`)."""
    return open_manifest_lazy(path, CutSet)
