"""Damaged manifests fail with one line naming the file, whichever reader meets them."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from lhotse import CutSet, RecordingSet

from speechkd.bin import cuts_to_text, subsample_cuts
from speechkd.data.lazy_manifests import count_lines, lazy_batch_sampler, write_synthetic_manifest
from speechkd.data.manifest_io import open_cuts_lazy, read_cuts, read_manifest
from speechkd.errors import DataError


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return write_synthetic_manifest(tmp_path / "cuts.jsonl.gz", 40)


def truncated(good: Path) -> Path:
    """``good`` cut short in the middle of its gzip stream (a killed writer)."""
    path = good.with_name("truncated_cuts.jsonl.gz")
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def bad_json(good: Path) -> Path:
    """``good`` with its third line cut in half (valid gzip, broken JSON)."""
    path = good.with_name("bad_json_cuts.jsonl.gz")
    lines = gzip.decompress(good.read_bytes()).decode().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


def one_line_naming(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_good_manifest_reads_eagerly_and_lazily(good: Path) -> None:
    cuts = read_cuts(good)
    assert isinstance(cuts, CutSet) and not cuts.is_lazy and len(cuts) == 40
    lazy = open_cuts_lazy(good)
    assert lazy.is_lazy and [c.id for c in lazy] == [c.id for c in cuts]
    assert len(lazy) == 40


def test_truncated_gzip_names_the_file(good: Path) -> None:
    path = truncated(good)
    with pytest.raises(DataError) as err:
        read_cuts(path)
    assert "truncated manifest" in one_line_naming(err, path)
    assert "end marker after " in str(err.value)  # entries read before the damage
    with pytest.raises(DataError) as err:
        for _ in open_cuts_lazy(path):
            pass
    assert "truncated manifest" in one_line_naming(err, path)
    assert "end marker after " in str(err.value)  # entries read before the damage
    with pytest.raises(DataError) as err:
        len(open_cuts_lazy(path))
    one_line_naming(err, path)
    with pytest.raises(DataError) as err:
        count_lines(path)
    one_line_naming(err, path)


def test_bad_json_names_the_file_and_line(good: Path) -> None:
    path = bad_json(good)
    for read in (read_cuts, lambda p: list(open_cuts_lazy(p))):
        with pytest.raises(DataError) as err:
            read(path)
        assert "line 3 is not valid JSON" in one_line_naming(err, path)


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "empty file (0 bytes)"), (b"not gzip at all", "not a gzip file")],
)
def test_empty_or_not_gzip(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "cuts.jsonl.gz"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_manifest(path)
    assert expected in one_line_naming(err, path)


def test_missing_and_wrong_type(good: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        read_cuts(tmp_path / "nothing.jsonl.gz")
    with pytest.raises(DataError) as err:
        read_manifest(good, RecordingSet)
    assert "expected a RecordingSet, found a CutSet" in one_line_naming(err, good)
    empty = tmp_path / "empty.jsonl.gz"
    empty.write_bytes(gzip.compress(b""))
    assert len(read_manifest(empty, RecordingSet)) == 0


def test_lazy_sampler_reports_truncation(good: Path) -> None:
    path = truncated(good)
    with pytest.raises(DataError) as err:  # while estimating its buckets or iterating
        for _ in lazy_batch_sampler(path, max_duration=30.0, shuffle=False):
            pass
    assert "truncated manifest" in one_line_naming(err, path)


@pytest.mark.parametrize("tool", ["subsample_cuts", "cuts_to_text"])
def test_tools_report_a_truncated_manifest(good: Path, tmp_path: Path, tool: str) -> None:
    path = truncated(good)
    with pytest.raises(DataError) as err:
        if tool == "subsample_cuts":
            subsample_cuts.load_cuts([path])
        else:
            cuts_to_text.cuts_text([path])
    assert "truncated manifest" in one_line_naming(err, path)
