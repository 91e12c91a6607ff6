"""Reading corpus text files strictly: invalid UTF-8 is an error naming the file and line."""

from __future__ import annotations

import os
from pathlib import Path

from speechkd.errors import DataError


def read_utf8_lines(path: str | os.PathLike) -> list[str]:
    """The lines of ``path`` without line endings; invalid UTF-8 or a missing file is an error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lines = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({err.reason})") from None
    return lines
