"""benchmark_mmi --den-graph: the denominator's cost in a training update, as a table."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechkd.bin import benchmark_mmi
from speechkd.mmi import Fsa, compose_lm_topology, ctc_topo
from speechkd.mmi.random_graphs import random_fsa


def write_den_graph(path: Path) -> Fsa:
    lm = random_fsa(4, 12, 3, seed=0)
    arcs = lm.arcs.clone()
    arcs[:, 2] += 1  # phones 1..3
    den = compose_lm_topology(Fsa(arcs, lm.scores, lm.final), ctc_topo(3))
    path.write_text(den.to_openfst(), encoding="utf-8")
    return den


@pytest.mark.parametrize("student", ["none", "tiny_student"])
def test_den_graph_update_table(tmp_path, student):
    den = write_den_graph(tmp_path / "den.fst.txt")
    out = tmp_path / "bench.md"
    benchmark_mmi.main(
        [
            "--den-graph", str(tmp_path / "den.fst.txt"), "--batch", "2", "--frames", "6",
            "--student", student, "--repeats", "1", "--threads", "1", "--clock", "cpu",
            "--out", str(out),
        ]
    )  # fmt: skip
    text = out.read_text()
    assert "--den-graph" in text and f"model `{student}`" in text
    rows = [line for line in text.splitlines() if line.startswith(f"| {tmp_path}")]
    assert [row.split(" | ")[7] for row in rows] == ["lfmmi", "distill"]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        assert int(cells[1].replace(",", "")) == den.num_states
        assert int(cells[2].replace(",", "")) == den.num_arcs
        assert all(float(c) >= 0 for c in cells[3:7] + cells[8:10])
        assert cells[10].endswith(" %")
