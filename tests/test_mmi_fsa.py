"""Fsa construction, validation and OpenFst text round trips."""

from __future__ import annotations

import math

import pytest
import torch

from speechkd.errors import DataError
from speechkd.mmi import Fsa
from speechkd.mmi.random_graphs import random_fsa

NEG_INF = float("-inf")


def _same(a: Fsa, b: Fsa) -> None:
    assert a.num_states == b.num_states
    key_a = sorted(zip(a.arcs.tolist(), a.scores.tolist(), strict=True))
    key_b = sorted(zip(b.arcs.tolist(), b.scores.tolist(), strict=True))
    assert key_a == key_b
    assert a.final.tolist() == b.final.tolist()


def test_properties_and_to():
    fsa = Fsa([[0, 1, 2], [1, 1, 0]], [-0.5, -1.0], [NEG_INF, 0.0])
    assert (fsa.num_states, fsa.num_arcs, fsa.max_label) == (2, 2, 2)
    assert fsa.to("cpu") is fsa
    assert fsa.to(torch.device("cpu")).arcs.dtype == torch.long


def test_openfst_round_trip_exact():
    fsa = random_fsa(7, 30, 5, seed=3, final_prob=0.5, stochastic=False)
    text = fsa.to_openfst()
    first = text.splitlines()[0].split()
    assert first[0] == "0" and len(first) == 4
    # pdf p is written as p + 1 (0 is epsilon in OpenFst)
    assert min(int(line.split()[2]) for line in text.splitlines() if len(line.split()) == 4) >= 1
    _same(Fsa.from_openfst(text), fsa)
    _same(Fsa.from_openfst(fsa.to_openfst(label_offset=0), label_offset=0), fsa)


def test_openfst_reads_fstprint_style_text():
    # start state 3 (first line), weightless arcs and finals, Infinity costs, transducer columns
    text = "3 1 5 0.5\n3 3 2\n1 0 3 Infinity\n1 0.25\n0\n"
    fsa = Fsa.from_openfst(text)
    assert fsa.num_states == 4
    arcs = {tuple(a): s for a, s in zip(fsa.arcs.tolist(), fsa.scores.tolist(), strict=True)}
    # states 0 and 3 are swapped so that the start state is 0
    assert arcs[(0, 1, 4)] == -0.5 and arcs[(0, 0, 1)] == 0.0 and arcs[(1, 3, 2)] == NEG_INF
    assert fsa.final.tolist() == [NEG_INF, -0.25, NEG_INF, 0.0]
    fst = Fsa.from_openfst("0 1 3 3 1.5\n1\n", acceptor=False)
    assert fst.arcs.tolist() == [[0, 1, 2]] and fst.scores.tolist() == [-1.5]
    with pytest.raises(DataError, match="output label"):
        Fsa.from_openfst("0 1 3 4\n1\n", acceptor=False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 1 0 1.0\n1\n", "epsilon"),
        ("0 1 2 1.0 7 8\n1\n", "fields"),
        ("0 x 2\n1\n", "cannot parse"),
        ("", "empty"),
    ],
)
def test_openfst_errors(text, message):
    with pytest.raises(DataError, match=message):
        Fsa.from_openfst(text)


def test_validation_errors():
    with pytest.raises(DataError, match="dangling state"):
        Fsa([[0, 5, 1]], [0.0], [0.0, 0.0])
    with pytest.raises(DataError, match="out of range"):
        Fsa([[0, 1, -1]], [0.0], [0.0, 0.0])
    with pytest.raises(DataError, match="no final state"):
        Fsa([[0, 1, 1]], [0.0], [NEG_INF, NEG_INF])
    with pytest.raises(DataError, match="not a log weight"):
        Fsa([[0, 1, 1]], [math.nan], [0.0, 0.0])
    with pytest.raises(DataError, match=r"\[A, 3\]"):
        Fsa([[0, 1]], [0.0], [0.0, 0.0])
    fsa = Fsa([[0, 1, 4]], [0.0], [NEG_INF, 0.0])
    with pytest.raises(DataError, match="label 4 out of range for 3 pdfs"):
        fsa.check_labels(3)


def test_connect_removes_useless_states():
    # state 2 is unreachable, state 3 cannot reach a final state
    fsa = Fsa([[0, 1, 0], [2, 1, 0], [0, 3, 1]], [0.0, 0.0, 0.0], [NEG_INF, 0.0, 0.0, NEG_INF])
    trimmed = fsa.connect()
    assert trimmed.num_states == 2 and trimmed.arcs.tolist() == [[0, 1, 0]]
