"""Topologies and their product with a phone LM, checked against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.mmi import (
    Fsa,
    chain_topo,
    compose_lm_topology,
    ctc_graph,
    ctc_topo,
    linear_graph,
    total_scores,
)

NEG_INF = float("-inf")


def phone_lm(
    arcs: list[tuple[int, int, int, float]], final: dict[int, float], num_states: int
) -> Fsa:
    fin = [final.get(s, NEG_INF) for s in range(num_states)]
    return Fsa([a[:3] for a in arcs], [a[3] for a in arcs], fin)


def lm_sequences(lm: Fsa, max_len: int) -> list[tuple[tuple[int, ...], float]]:
    """All (phone sequence, log weight incl. final) of the LM up to max_len phones."""
    out: list[tuple[tuple[int, ...], float]] = []
    arcs = list(zip(lm.arcs.tolist(), lm.scores.tolist(), strict=True))

    def walk(state, seq, acc):
        if lm.final[state] != NEG_INF:
            out.append((tuple(seq), acc + float(lm.final[state])))
        if len(seq) == max_len:
            return
        for (s, d, p), w in arcs:
            if s == state:
                walk(d, seq + [p], acc + w)

    walk(0, [], 0.0)
    return out


def k2_ctc_parses(frames: tuple[int, ...], phones: tuple[int, ...], modified: bool) -> int:
    """Number of paths of k2.ctc_topo(max_token, modified) reading `frames` and writing `phones`."""

    # standard: state = last label (0 = blank); arc i -> j reads j, writes j unless i == j or j == 0
    # modified: state 0 (hub) self-loops read l write l (eps for blank); 0 -> i reads/writes i;
    # state i: self-loop reads i, i -> 0 reads i, both write nothing; only state 0 is final.
    def walk(t, state, written):
        if len(written) > len(phones) or tuple(written) != phones[: len(written)]:
            return 0
        if t == len(frames):
            ok = (state == 0 or not modified) and tuple(written) == phones
            return int(ok)
        lab = frames[t]
        total = 0
        if not modified:
            out = [] if (lab == state or lab == 0) else [lab]
            total += walk(t + 1, lab, written + out)
        elif state == 0:
            total += walk(t + 1, 0, written + ([lab] if lab else []))
            if lab:
                total += walk(t + 1, lab, written + [lab])
        elif lab == state:
            total += walk(t + 1, state, written) + walk(t + 1, 0, written)
        return total

    return walk(0, 0, [])


def chain_parses(frames: tuple[int, ...], phones: tuple[int, ...]) -> int:
    # frames must be a(p1) b(p1)* a(p2) b(p2)* ... with a(p) = 2(p-1), b(p) = 2(p-1)+1
    i = 0
    for a, b in ((2 * (p - 1), 2 * (p - 1) + 1) for p in phones):
        if i >= len(frames) or frames[i] != a:
            return 0
        i += 1
        while i < len(frames) and frames[i] == b:
            i += 1
    return int(i == len(frames))


def brute_total(lm: Fsa, log_likes: torch.Tensor, parses, num_pdfs: int) -> float:
    T = log_likes.shape[0]
    seqs = lm_sequences(lm, T)
    terms = []
    for frames in itertools.product(range(num_pdfs), repeat=T):
        emit = sum(float(log_likes[t, f]) for t, f in enumerate(frames))
        for phones, w in seqs:
            n = parses(frames, phones)
            if n:
                terms.append(math.log(n) + w + emit)
    m = max(terms)
    return m + math.log(math.fsum(math.exp(x - m) for x in terms))


LM = phone_lm(
    [
        (0, 1, 1, math.log(0.6)),
        (0, 2, 2, math.log(0.3)),
        (1, 1, 1, math.log(0.3)),
        (1, 2, 2, math.log(0.5)),
        (2, 0, 1, math.log(0.5)),
    ],
    {0: math.log(0.1), 1: math.log(0.2), 2: math.log(0.5)},
    3,
)


@pytest.mark.parametrize("modified", [False, True])
def test_ctc_topology_product_matches_k2_semantics(modified):
    graph = compose_lm_topology(LM, ctc_topo(2, modified=modified))
    gen = torch.Generator().manual_seed(1)
    log_likes = torch.randn(1, 5, 3, generator=gen, dtype=torch.float64)
    for T in (3, 5):
        ours = total_scores(graph, log_likes[:, :T], torch.tensor([T]), backend="log")
        ref = brute_total(LM, log_likes[0, :T], lambda f, p: k2_ctc_parses(f, p, modified), 3)
        assert abs(float(ours) - ref) < 1e-9


def test_chain_topology_product():
    graph = compose_lm_topology(LM, chain_topo(2))
    assert graph.max_label == 3
    gen = torch.Generator().manual_seed(2)
    log_likes = torch.randn(1, 5, 4, generator=gen, dtype=torch.float64)
    for T in (2, 4):
        ours = total_scores(graph, log_likes[:, :T], torch.tensor([T]), backend="prob")
        ref = brute_total(LM, log_likes[0, :T], chain_parses, 4)
        assert abs(float(ours) - ref) < 1e-9


def test_linear_lm_with_ctc_topology_equals_ctc_graph():
    tokens = [3, 1, 1, 2]
    lm = phone_lm([(i, i + 1, t, 0.0) for i, t in enumerate(tokens)], {4: 0.0}, 5)
    composed = compose_lm_topology(lm, ctc_topo(3))
    direct = ctc_graph(tokens)
    assert composed.num_states == direct.num_states and composed.num_arcs == direct.num_arcs
    gen = torch.Generator().manual_seed(3)
    log_likes = torch.randn(2, 11, 4, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([11, 8])
    torch.testing.assert_close(
        total_scores(composed, log_likes, lengths, backend="prob"),
        total_scores([direct, direct], log_likes, lengths, backend="log"),
        rtol=0,
        atol=1e-9,
    )


def test_graph_errors():
    with pytest.raises(DataError, match="blank"):
        ctc_graph([1, 0, 2])
    with pytest.raises(ConfigError, match="num_phones"):
        ctc_topo(0)
    with pytest.raises(DataError, match="has phone 2; phones are 1..1"):
        compose_lm_topology(LM, chain_topo(1))


def test_ctc_graph_shape_and_linear_graph():
    g = ctc_graph([5, 5, 7])
    assert g.num_states == 7
    # the repeated 5 has no skip arc, 5 -> 7 has one
    assert [1, 3, 5] not in g.arcs.tolist() and [3, 5, 7] in g.arcs.tolist()
    assert torch.isfinite(g.final).nonzero().flatten().tolist() == [5, 6]
    lin = linear_graph([2, 2, 0])
    x = torch.randn(1, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(
        total_scores([lin], x, torch.tensor([3])), (x[0, 0, 2] + x[0, 1, 2] + x[0, 2, 0]).reshape(1)
    )
