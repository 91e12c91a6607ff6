"""speechkd.bin.foundation_gap: the teacher–student gap table and its RESULTS.json rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lhotse import SupervisionSegment, SupervisionSet

from speechkd.bin import foundation_gap
from speechkd.errors import DataError

REFS = {"en-1": ("en", "the cat sat"), "en-2": ("en", "a dog ran"), "cs-1": ("cs", "dobrý den")}


def write_decode(root: Path, set_name: str, hyps: dict[str, str], sups: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"ref-{set_name}.txt").write_text("".join(f"{k} {v[1]}\n" for k, v in REFS.items()))
    (root / f"hyp-{set_name}.txt").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()))
    (root / f"scores-{set_name}.json").write_text(json.dumps({"cuts": str(sups), "metric": "cer"}))
    return root


@pytest.fixture
def supervisions(tmp_path: Path) -> Path:
    path = tmp_path / "sups.jsonl.gz"
    SupervisionSet.from_segments(
        SupervisionSegment(k, k, 0.0, 1.0, text=text, language=lang)
        for k, (lang, text) in REFS.items()
    ).to_file(path)
    return path


def test_gap_table_and_rows(tmp_path: Path, supervisions: Path) -> None:
    teacher = write_decode(
        tmp_path / "t", "test", {k: v[1] for k, v in REFS.items()}, supervisions
    )  # perfect
    student = write_decode(
        tmp_path / "s",
        "test",
        {"en-1": "the cat sat", "en-2": "a dog", "cs-1": "dobry"},
        supervisions,
    )
    out = tmp_path / "gap" / "gap.md"
    args = ["--teacher", str(teacher), "--student", str(student), "--sets", "test"]
    assert foundation_gap.main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert "| test | cs | 0.0 | 100.0 | +100.0 |" in text
    assert "| test | en | 0.0 | 16.7 | +16.7 |" in text  # 1 deletion in 6 words
    rows = json.loads((out.parent / "RESULTS.json").read_text())
    by_key = {(r["system"], r["language"], r["metric"]): r["value"] for r in rows}
    assert by_key[("teacher", "all", "wer")] == 0.0
    assert by_key[("zero_shot", "en", "wer")] == pytest.approx(16.67, abs=0.01)
    assert by_key[("zero_shot", "cs", "cer")] > 0


def test_missing_decode_names_the_file(tmp_path: Path, supervisions: Path) -> None:
    teacher = write_decode(tmp_path / "t", "test", {"en-1": "x"}, supervisions)
    out = tmp_path / "gap.md"
    args = ["--teacher", str(teacher), "--student", str(tmp_path / "none"), "--sets", "test"]
    with pytest.raises(DataError, match="none/scores-test.json: missing"):
        foundation_gap.main([*args, "--out", str(out)])
    assert not out.exists()
