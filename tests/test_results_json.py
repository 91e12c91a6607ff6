"""RESULTS.json writer: rows checked, sorted and written atomically; a bad row writes nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from speechkd.errors import ConfigError, DataError
from speechkd.eval.results_json import (
    ResultRow,
    ResultRows,
    load_results_json,
    merge_results_json,
    results_json_path,
    stable_name,
    unique_names,
    write_results_json,
)


def test_rows_sorted_and_written(tmp_path: Path) -> None:
    rows = ResultRows()
    rows.add("zero_shot", "test", "ca", "wer", 42.5)
    rows.add("ft", "test", "all", "wer", 30.0)
    rows.add("ft", "all", "all", "params", 7_810_000)
    rows.add("ft", "test", "th", "wer", None)  # a "–" cell: no row
    rows.add("ft", "test", "cs", "wer", math.inf)  # an "inf" cell: no row
    out = results_json_path(tmp_path / "exp" / "report.md")
    assert out == tmp_path / "exp" / "RESULTS.json"
    write_results_json(rows, out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data == [
        {"system": "ft", "set": "all", "language": "all", "metric": "params", "value": 7810000},
        {"system": "ft", "set": "test", "language": "all", "metric": "wer", "value": 30.0},
        {"system": "zero_shot", "set": "test", "language": "ca", "metric": "wer", "value": 42.5},
    ]
    assert isinstance(data[0]["value"], int)
    assert load_results_json(out) == sorted(rows, key=lambda r: r.key)
    assert [p.name for p in out.parent.iterdir()] == ["RESULTS.json"]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (ResultRow("ft", "test", "ca", "wer", math.nan), "finite number"),
        (ResultRow("ft", "test", "ca", "wer", math.inf), "finite number"),
        (ResultRow("ft", "test", "ca", "wer", True), "finite number"),
        (ResultRow("ft", "test", "ca", "wer", "12.5"), "finite number"),  # type: ignore[arg-type]
        (ResultRow("", "test", "ca", "wer", 1.0), "'system' must be a non-empty string"),
        (ResultRow("ft", " ", "ca", "wer", 1.0), "'set' must be a non-empty string"),
        (ResultRow("ft", "test", None, "wer", 1.0), "'language'"),  # type: ignore[arg-type]
        (ResultRow("FT", "test", "ca", "wer", 1.0), "'system' must be lower-case"),
        (ResultRow("ft", "test", "ca", "WER", 1.0), "'metric' must be lower-case"),
        ({"system": "ft", "set": "test", "metric": "wer", "value": 1.0}, "keys must be"),
    ],
)
def test_bad_row_writes_nothing(tmp_path: Path, row: object, match: str) -> None:
    out = tmp_path / "RESULTS.json"
    good = ResultRow("ft", "test", "ca", "wer", 1.0)
    with pytest.raises(DataError, match=match):
        write_results_json([ResultRow("lora", "test", "ca", "wer", 2.0), row], out)  # type: ignore[list-item]
    assert not out.exists()
    out.write_text("[]\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 1"):
        write_results_json([good, row], out)  # type: ignore[list-item]
    assert out.read_text(encoding="utf-8") == "[]\n"  # the previous file is kept
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_key_with_two_values_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.json"
    same = [ResultRow("ft", "test", "ca", "wer", 1.0), ResultRow("ft", "test", "ca", "wer", 1.0)]
    write_results_json(same, out)  # one number shown in two tables: written once
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 1
    out.unlink()
    rows = [same[0], ResultRow("ft", "test", "ca", "wer", 2.0)]
    with pytest.raises(
        DataError, match=r"\('ft', 'test', 'ca', 'wer'\) has two values, 1.0 and 2.0"
    ):
        write_results_json(rows, out)
    assert not out.exists()


def test_load_checks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.json"
    path.write_text(json.dumps({"system": "ft"}), encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list"):
        load_results_json(path)
    path.write_text(json.dumps([{"system": "ft", "set": "test", "language": "ca"}]))
    with pytest.raises(DataError, match=f"{path.name}: RESULTS.json row 0: keys must be"):
        load_results_json(path)


def test_names() -> None:
    assert stable_name("Whisper LTH-FT") == "whisper_lth_ft"
    assert stable_name("DistilWhisper 10k") == "distilwhisper_10k"
    assert stable_name("M: L_kd_res(enc)") == "m_l_kd_res_enc"
    with pytest.raises(ConfigError, match="no letter or digit"):
        stable_name(" - ")
    # colliding preferred names fall back to the labels' own names
    assert unique_names({"A x": "ss", "B": "ss", "C": "m1"}) == {"A x": "a_x", "B": "b", "C": "m1"}
    with pytest.raises(ConfigError, match="both map to"):
        unique_names({"x": "m", "y": "m", "z": "x"})


def test_merge_beside_the_document(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runs = [tmp_path / "exp" / f"run{i}" for i in (1, 2, 3)]
    for run, value in zip(runs, (10.0, 20.0, 30.0), strict=True):
        run.mkdir(parents=True)
        (run / "report.md").write_text("## run\n", encoding="utf-8")
        rows = [ResultRow("teacher", "test", "ca", "wer", 5.0)]
        rows.append(ResultRow("ft", "test", "ca", "wer", value))
        write_results_json(rows, run / "RESULTS.json")
    out = tmp_path / "RESULTS.md"
    assert merge_results_json([tmp_path / "none.md"], out) is None  # no section has one
    # one run: its rows; the teacher's row, equal in every run, is kept once
    merged = merge_results_json([runs[0] / "report.md"], out)
    assert merged == tmp_path / "RESULTS.json"
    assert [r.key for r in load_results_json(merged)] == [
        ("ft", "test", "ca", "wer"),
        ("teacher", "test", "ca", "wer"),
    ]
    # several runs give ft two values: no merged file, a warning, each run keeps its own
    with caplog.at_level("WARNING"):
        assert merge_results_json([r / "report.md" for r in runs], out) is None
    assert not merged.exists()
    assert "disagree" in caplog.text and str(runs[1] / "RESULTS.json") in caplog.text
    assert all((r / "RESULTS.json").is_file() for r in runs)
