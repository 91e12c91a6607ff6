"""Bad inputs make the tools fail fast with one line naming the file, field or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechkd.bin import bad_input_report
from speechkd.bin.bad_input_report import CASES, Outcome, markdown_table, run_cases


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("bad")
    return {f"{o.case.tool}: {o.case.name}": o for o in run_cases(root)}


@pytest.mark.parametrize("key", [f"{c.tool}: {c.name}" for c in CASES])
def test_each_bad_input_fails_with_a_message_naming_it(outcomes, key: str) -> None:
    outcome = outcomes[key]
    assert outcome.exit_code == 1
    assert outcome.message.startswith(f"{outcome.case.tool}: error: "), outcome.message
    assert "\n" not in outcome.message and "Traceback" not in outcome.message
    for expected in outcome.expected:
        assert expected in outcome.message, (expected, outcome.message)
    assert outcome.names_the_culprit


def test_specific_messages(outcomes) -> None:
    by_tool = {}
    for o in outcomes.values():
        by_tool.setdefault(o.case.tool, []).append(o.message)
    assert any("audio file cannot be decoded" in m for m in by_tool["validate_data"])
    assert any("zero length" in m for m in by_tool["validate_data"])
    assert any("epochs='three'" in m for m in by_tool["whisper_train"])
    assert any("pickled checkpoints are not loaded" in m for m in by_tool["cache_teacher"])


def test_table_and_unclear_marking(outcomes, tmp_path: Path) -> None:
    table = markdown_table(list(outcomes.values()))
    lines = table.splitlines()
    assert lines[0] == "| bad input | tool | exit | message |"
    assert len(lines) == 2 + len(CASES) and "(unclear)" not in table
    traceback = Outcome(CASES[0], 1, "Traceback: OSError: boom", [])
    assert "**(unclear)**" in markdown_table([traceback])


def test_report_cli_prints_the_table(tmp_path: Path, capsys) -> None:
    code = bad_input_report.main(["--work-dir", str(tmp_path), "--only", "compute_features"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("| bad input | tool | exit | message |")
    assert "cut utt0 (" in out and "is 8000 Hz" in out
