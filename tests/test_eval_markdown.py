"""Markdown tables: what md_text writes, md_parse_table reads back."""

from __future__ import annotations

from speechkd.eval.markdown import md_parse_table, md_text


def test_table_round_trip() -> None:
    header, rows = ["method", "a|b"], [["lora", "1,024"], ["x|y", ""]]
    text = "### Heading\n\n" + md_text(header, rows) + "\n\nA note | not a table.\n"
    assert md_parse_table(text) == (header, rows)
    assert md_parse_table("no table here") == ([], [])
