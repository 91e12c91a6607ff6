"""The DistillW2V2 size/speed table (speechkd.eval.rtf, python -m speechkd.bin.rtf)."""

from __future__ import annotations

import json

import pytest

from speechkd.bin import rtf as rtf_cli
from speechkd.errors import ConfigError
from speechkd.eval.rtf import (
    TABLE_HEADER,
    expand_models,
    render_table,
    run_benchmark,
    table_rows,
)
from speechkd.fairseq_plugin.models.w2v2_student import build_student


def _cells(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows]


def test_tiny_benchmark_with_streaming() -> None:
    payload = run_benchmark(
        "tiny", audio_seconds=1.0, repeats=1, streaming=True, long_seconds=2.0, num_outputs=16
    )
    rows = payload["rows"]
    assert [r["model"] for r in rows] == ["tiny_teacher", "tiny_student"]
    for r in rows:
        model = build_student(r["model"], num_outputs=16)
        assert r["params"] == sum(p.numel() for p in model.parameters())
        assert r["params_w2v2"] > r["params"]  # the stock model adds the quantiser
        assert r["blocks"] == len(model.layers) and r["encoder_dim"] == model.cfg.encoder_embed_dim
        assert r["params_paper"] is None and r["diff_pct"] is None
        for key in ("rtf", "rtf_streaming", "chunk_ms_short", "chunk_ms_long"):
            assert r[key] is not None and r[key] > 0, key
    assert rows[0]["params"] > rows[1]["params"]
    table = render_table(payload)
    cells = _cells(table)
    assert cells[0] == TABLE_HEADER
    assert [c[0] for c in cells[1:]] == ["tiny_teacher", "tiny_student"]
    assert all(len(c) == len(TABLE_HEADER) for c in cells[1:])
    assert "1 thread(s)" in table and "Streaming" in table


def test_paper_parameter_counts_within_three_percent() -> None:
    payload = run_benchmark("S4,S5", timing=False)
    for r in payload["rows"]:
        assert abs(r["diff_pct"]) < 3.0 and abs(r["diff_pct_w2v2"]) < 3.0, r
        assert r["rtf"] is None
    s4, s5 = payload["rows"]
    assert s5["params"] < s4["params"]  # only the first two CNN layers differ
    cells = table_rows(payload["rows"])
    assert cells[1][:5] == ["S5", "256", "384", "1536", "10"]
    assert cells[1][7] == "22.0M" and cells[1][10] == "-" and cells[1][11] == "0.111"


def test_speed_up_column_relative_to_t1() -> None:
    rows = [
        {"model": m, "cnn_channels": 1, "encoder_dim": 1, "ffn_dim": 1, "blocks": 1}
        | {"params": 1, "params_w2v2": 1, "params_paper": None, "rtf_paper": None}
        | {"diff_pct": None, "diff_pct_w2v2": None, "rtf_streaming": None}
        | {"chunk_ms_short": None, "chunk_ms_long": None, "rtf": rtf}
        for m, rtf in [("T1", 0.8), ("S5", 0.1)]
    ]
    assert [c[12] for c in table_rows(rows)] == ["1.0x", "8.0x"]


def test_cli_json_and_output(tmp_path, capsys) -> None:
    out = tmp_path / "rtf.json"
    argv = [
        "--models",
        "tiny_student",
        "--audio-seconds",
        "0.5",
        "--repeats",
        "1",
        "--clock",
        "cpu",
    ]
    rtf_cli.main([*argv, "--json", "--output", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["settings"]["threads"] == 1 and printed["rows"][0]["rtf"] > 0
    assert printed["settings"]["clock"] == "cpu"
    md = tmp_path / "rtf.md"
    rtf_cli.main(["--models", "tiny_student", "--params-only", "--output", str(md)])
    assert _cells(md.read_text())[1][0] == "tiny_student"


def test_model_list_errors() -> None:
    assert expand_models("table") == ["T1", "S1", "S2", "S3", "S4", "S5"]
    assert expand_models("tiny,S5") == ["tiny_teacher", "tiny_student", "S5"]
    with pytest.raises(ConfigError, match="--models"):
        expand_models(" , ")
    with pytest.raises(ConfigError, match="no architecture file"):
        run_benchmark("S7", timing=False)
    with pytest.raises(ConfigError, match="--clock"):
        run_benchmark("tiny", clock="gpu")
    with pytest.raises(ConfigError, match="--audio-seconds"):
        run_benchmark("tiny", audio_seconds=0.0)
