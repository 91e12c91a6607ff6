"""The probability-space backend on denominator-like graphs, against a straightforward reference.

Graphs are random stochastic phone LMs composed with the CTC, modified-CTC and chain topologies
(the structure of ``make_den_graph`` output). The reference runs the leaky-HMM forward recursion
arc by arc in float64 without renormalisation and differentiates it with autograd.
"""

from __future__ import annotations

import pytest
import torch

import speechkd.mmi.prob_backend as prob_backend
from speechkd.mmi import Fsa, leaky_hmm_distribution, total_scores
from speechkd.mmi.denominator import compose_with_topology
from speechkd.mmi.graph_batch import make_graph_batch
from speechkd.mmi.random_graphs import random_fsa

TOPOLOGIES = ["ctc", "ctc-modified", "chain"]
NUM_PHONES = 4


def den_graph(topology: str, seed: int) -> Fsa:
    """A random stochastic phone LM (phones 1..NUM_PHONES) composed with ``topology``."""
    lm = random_fsa(5, 18, NUM_PHONES, seed=seed)
    arcs = lm.arcs.clone()
    arcs[:, 2] += 1
    return compose_with_topology(Fsa(arcs, lm.scores, lm.final), topology, NUM_PHONES)


def reference_totals(
    graph: Fsa, log_likes: torch.Tensor, lengths: torch.Tensor, leaky: float
) -> torch.Tensor:
    """Total log scores ``[B]`` by the plain leaky-HMM forward recursion (differentiable)."""
    S = graph.num_states
    weights = torch.exp(graph.scores)
    pi = leaky_hmm_distribution(graph)
    totals = []
    for b, n in enumerate(lengths.tolist()):
        alpha = torch.zeros(S, dtype=torch.float64)
        alpha[0] = 1.0
        for t in range(n):
            moved = alpha[graph.src] * weights * torch.exp(log_likes[b, t, graph.labels])
            alpha = torch.zeros(S, dtype=torch.float64).index_add(0, graph.dst, moved)
            alpha = alpha + leaky * pi * alpha.sum()
        totals.append(torch.log((alpha * torch.exp(graph.final)).sum()))
    return torch.stack(totals)


def problem(graph: Fsa, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    num_pdfs = graph.max_label + 1
    log_likes = (torch.randn(3, 9, num_pdfs, generator=gen, dtype=torch.float64) * 2).log_softmax(
        -1
    )
    return log_likes, torch.tensor([9, 4, 7])


def scores_and_grads(graphs, log_likes, lengths, leaky, **kwargs):
    x = log_likes.clone().requires_grad_(True)
    total = total_scores(graphs, x, lengths, leaky_hmm_coefficient=leaky, **kwargs)
    (grad,) = torch.autograd.grad(total.sum(), x)
    return total.detach(), grad


@pytest.fixture(params=[True, False], ids=["keep", "per-frame"])
def keep(request, monkeypatch) -> bool:
    """Both paths of the backend: per-frame values kept (small problems) or recomputed."""
    if not request.param:
        monkeypatch.setattr(prob_backend, "KEEP_PAIR_VALUES", 0)
    return request.param


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("leaky", [0.0, 0.05])
def test_shared_den_graph_equals_reference(topology, leaky, keep):
    graph = den_graph(topology, seed=len(topology))
    log_likes, lengths = problem(graph, seed=1)
    x = log_likes.clone().requires_grad_(True)
    ref = reference_totals(graph, x, lengths, leaky)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 2e-5)):
        total, grad = scores_and_grads(
            graph, log_likes, lengths, leaky, backend="prob", prob_dtype=dtype
        )
        torch.testing.assert_close(total, ref.detach(), rtol=0, atol=tol)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=tol)
    log_total, log_grad = scores_and_grads(graph, log_likes, lengths, leaky, backend="log")
    torch.testing.assert_close(log_total, ref.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(log_grad, ref_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("leaky", [0.0, 0.05])
def test_per_utterance_graphs_equal_reference(leaky, keep):
    graphs = [den_graph(t, seed=b) for b, t in enumerate(["ctc", "ctc-modified", "ctc"])]
    log_likes, lengths = problem(graphs[0], seed=2)  # the graphs share their pdfs
    x = log_likes.clone().requires_grad_(True)
    ref = torch.cat(
        [reference_totals(g, x[b : b + 1], lengths[b : b + 1], leaky) for b, g in enumerate(graphs)]
    )
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    total, grad = scores_and_grads(graphs, log_likes, lengths, leaky, backend="prob")
    torch.testing.assert_close(total, ref.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("leaky", [0.0, 1e-5])
def test_kept_and_per_frame_paths_agree_in_float32(leaky, monkeypatch):
    graph = den_graph("ctc", seed=7)
    gen = torch.Generator().manual_seed(7)
    log_likes = (torch.randn(4, 30, graph.max_label + 1, generator=gen) * 4).log_softmax(-1)
    lengths = torch.tensor([30, 12, 29, 1])
    kept = scores_and_grads(graph, log_likes, lengths, leaky, backend="prob")
    monkeypatch.setattr(prob_backend, "KEEP_PAIR_VALUES", 0)
    per_frame = scores_and_grads(graph, log_likes, lengths, leaky, backend="prob")
    exact = scores_and_grads(graph, log_likes.double(), lengths, leaky, backend="log")
    for a, b in zip(kept, per_frame, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(kept[0].double(), exact[0], rtol=0, atol=1e-3)
    torch.testing.assert_close(kept[1].double(), exact[1], rtol=0, atol=1e-4)


def test_sparse_matrices_have_32_bit_indices():
    graph = den_graph("ctc", seed=0)
    batch = make_graph_batch(graph, torch.zeros(2, 3, graph.max_label + 1))
    pg = prob_backend.build_prob_graph(batch, torch.float32)
    for matrix in (pg.weights, pg.weights_t, pg.emit_reduce):
        assert matrix.crow_indices().dtype == torch.int32
        assert matrix.col_indices().dtype == torch.int32
