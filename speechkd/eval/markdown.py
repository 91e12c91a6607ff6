"""Markdown tables of the reports and tables (GitHub flavour)."""

from __future__ import annotations

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
