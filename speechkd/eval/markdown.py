"""Markdown tables of the reports and tables (GitHub flavour)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence


def md_cell(value: object) -> str:
    """``value`` as one table cell: ``|`` escaped, line breaks as spaces."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a table: header, separator, one line a row."""
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines


def md_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """The table as one string."""
    return "\n".join(md_table(header, rows))


def md_parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first table in ``text`` (cells stripped, ``\\|`` unescaped);
    ``([], [])`` when it has none."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            lines.append(line.strip())
        elif lines:
            break
    if len(lines) < 2:
        return [], []

    def cells(line: str) -> list[str]:
        inner = line[1:-1] if line.endswith("|") and not line.endswith("\\|") else line[1:]
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]

    return cells(lines[0]), [cells(line) for line in lines[2:]]
