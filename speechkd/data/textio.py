"""Reading corpus text files strictly: invalid UTF-8 is an error naming the file and line."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

from speechkd.errors import DataError


def iter_utf8_lines(path: str | os.PathLike) -> Iterator[str]:
    """Stream the lines of ``path`` (gzip-compressed when it ends in ``.gz``) without line
    endings; invalid UTF-8 or a missing file is an error naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        number = 0
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError) as err:  # a corrupt or truncated .gz
                raise DataError(f"{path}:{number + 1}: cannot read ({err})") from None
            if not raw:
                return
            number += 1
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({err.reason})") from None


def read_utf8_lines(path: str | os.PathLike) -> list[str]:
    """The lines of ``path`` without line endings; invalid UTF-8 or a missing file is an error."""
    return list(iter_utf8_lines(path))
