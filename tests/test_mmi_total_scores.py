"""total_scores: every backend against brute-force path enumeration, gradients, batching, CTC."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from speechkd.errors import ConfigError, DataError
from speechkd.mmi import (
    Fsa,
    ctc_graph,
    expand_leaky_hmm,
    k2_available,
    occupation_posteriors,
    total_scores,
)
from speechkd.mmi.random_graphs import random_fsa

NEG_INF = float("-inf")
TORCH_BACKENDS = ["log", "prob"]
ALL_BACKENDS = TORCH_BACKENDS + [
    pytest.param("k2", marks=pytest.mark.skipif(not k2_available(), reason="k2 not importable"))
]


def brute_force(fsa: Fsa, log_likes: list[list[float]], length: int) -> float:
    """log of the sum over all paths of `length` arcs from state 0 to a final state."""
    out_arcs: dict[int, list[tuple[int, int, float]]] = {}
    for (s, d, lab), w in zip(fsa.arcs.tolist(), fsa.scores.tolist(), strict=True):
        out_arcs.setdefault(s, []).append((d, lab, w))
    final = fsa.final.tolist()
    paths: list[float] = []

    def walk(state: int, t: int, acc: float) -> None:
        if t == length:
            if final[state] != NEG_INF:
                paths.append(acc + final[state])
            return
        for d, lab, w in out_arcs.get(state, []):
            walk(d, t + 1, acc + w + log_likes[t][lab])

    walk(0, 0, 0.0)
    if not paths:
        return NEG_INF
    m = max(paths)
    return m + math.log(math.fsum(math.exp(p - m) for p in paths))


def small_problem(seed: int):
    fsa = random_fsa(4, 10, 3, seed=seed, final_prob=0.4, stochastic=False)
    gen = torch.Generator().manual_seed(seed)
    log_likes = torch.randn(4, 6, 3, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 5, 4])
    return fsa, log_likes, lengths


def reference(graphs, log_likes, lengths) -> torch.Tensor:
    return torch.tensor(
        [
            brute_force(
                graphs[b] if isinstance(graphs, list) else graphs, log_likes[b].tolist(), int(n)
            )
            for b, n in enumerate(lengths)
        ],
        dtype=torch.float64,
    )


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_graph_equals_brute_force(backend, seed):
    fsa, log_likes, lengths = small_problem(seed)
    ours = total_scores(fsa, log_likes, lengths, backend=backend)
    tol = 1e-9 if backend != "k2" else 1e-4
    torch.testing.assert_close(ours, reference(fsa, log_likes, lengths), rtol=0, atol=tol)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_per_utterance_graphs_equal_brute_force(backend):
    _, log_likes, lengths = small_problem(5)
    graphs = [
        random_fsa(2 + b, 5 + 2 * b, 3, seed=10 + b, final_prob=0.5, stochastic=False)
        for b in range(4)
    ]
    ours = total_scores(graphs, log_likes, lengths, backend=backend)
    tol = 1e-9 if backend != "k2" else 1e-4
    torch.testing.assert_close(ours, reference(graphs, log_likes, lengths), rtol=0, atol=tol)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("leaky", [0.0, 0.2])
def test_gradcheck(backend, shared, leaky):
    fsa, log_likes, lengths = small_problem(1)
    graphs = fsa if shared else [random_fsa(3, 8, 3, seed=b, stochastic=False) for b in range(4)]
    x = log_likes.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v: total_scores(graphs, v, lengths, backend=backend, leaky_hmm_coefficient=leaky),
        (x,),
        fast_mode=True,
    )


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_posteriors_are_distributions_and_zero_on_padding(backend):
    fsa, log_likes, lengths = small_problem(2)
    total, post = occupation_posteriors(fsa, log_likes, lengths, backend=backend)
    assert torch.isfinite(total).all()
    frame_mass = post.sum(-1)
    valid = torch.arange(6)[None, :] < lengths[:, None]
    torch.testing.assert_close(frame_mass[valid], torch.ones(int(valid.sum()), dtype=torch.float64))
    assert (post[~valid] == 0).all() and (post >= 0).all()


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("leaky", [0.0, 0.1])
def test_batched_equals_per_utterance(backend, leaky):
    fsa = random_fsa(30, 150, 7, seed=4)
    gen = torch.Generator().manual_seed(4)
    log_likes = torch.randn(5, 20, 7, generator=gen, dtype=torch.float64).log_softmax(-1)
    lengths = torch.tensor([20, 3, 17, 9, 1])
    x = log_likes.clone().requires_grad_(True)
    batched = total_scores(fsa, x, lengths, backend=backend, leaky_hmm_coefficient=leaky)
    (grad,) = torch.autograd.grad(batched.sum(), x)
    for b, n in enumerate(lengths.tolist()):
        # a different padding length and garbage in the padded frames change nothing
        xb = torch.cat(
            [log_likes[b : b + 1, :n], torch.full((1, 4, 7), 123.0, dtype=torch.float64)], 1
        )
        xb.requires_grad_(True)
        single = total_scores(
            fsa, xb, torch.tensor([n]), backend=backend, leaky_hmm_coefficient=leaky
        )
        (gb,) = torch.autograd.grad(single.sum(), xb)
        torch.testing.assert_close(single[0], batched[b], rtol=0, atol=1e-10)
        torch.testing.assert_close(gb[0, :n], grad[b, :n], rtol=0, atol=1e-10)
        assert (gb[0, n:] == 0).all() and (grad[b, n:] == 0).all()
    listed = total_scores(
        [fsa] * 5, log_likes, lengths, backend=backend, leaky_hmm_coefficient=leaky
    )
    torch.testing.assert_close(listed, batched.detach(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_ctc_graph_matches_ctc_loss(backend):
    gen = torch.Generator().manual_seed(0)
    targets = [[1, 1, 2], [3], [2, 2, 2, 4], [1, 2, 3, 4, 4], []]
    input_lengths = torch.tensor([12, 7, 10, 12, 3])
    logits = torch.randn(5, 12, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    log_probs = logits.log_softmax(-1)
    ours = total_scores([ctc_graph(y) for y in targets], log_probs, input_lengths, backend=backend)
    ref = -F.ctc_loss(
        log_probs.transpose(0, 1),
        torch.tensor([t for y in targets for t in y]),
        input_lengths,
        torch.tensor([len(y) for y in targets]),
        reduction="none",
    )
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits, retain_graph=True)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_leaky_hmm_equals_expanded_graph(seed):
    fsa = random_fsa(5, 14, 4, seed=seed, final_prob=0.5)
    gen = torch.Generator().manual_seed(seed)
    log_likes = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 6])
    expanded = expand_leaky_hmm(fsa, 0.05)
    assert expanded.num_arcs > fsa.num_arcs
    exact = total_scores(expanded, log_likes, lengths, backend="log")
    for backend in TORCH_BACKENDS:
        leaky = total_scores(fsa, log_likes, lengths, backend=backend, leaky_hmm_coefficient=0.05)
        torch.testing.assert_close(leaky, exact, rtol=0, atol=1e-9)
    plain = total_scores(fsa, log_likes, lengths, backend="prob")
    assert (exact > plain).all()
    # gradients agree too
    x1 = log_likes.clone().requires_grad_(True)
    x2 = log_likes.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(
        total_scores(fsa, x1, lengths, backend="prob", leaky_hmm_coefficient=0.05).sum(), x1
    )
    (g2,) = torch.autograd.grad(total_scores(expanded, x2, lengths, backend="log").sum(), x2)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_no_surviving_path_gives_minus_inf_and_zero_gradient(backend, caplog):
    # the graph needs at least 3 frames; utterance 1 has 2
    fsa = Fsa([[0, 1, 0], [1, 2, 1], [2, 3, 0]], [0.0, 0.0, 0.0], [NEG_INF] * 3 + [0.0])
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    with caplog.at_level(logging.WARNING):
        tot = total_scores([fsa, fsa], x, torch.tensor([3, 2]), backend=backend)
    assert math.isfinite(tot[0].item()) and tot[1].item() == NEG_INF
    assert "batch index(es) [1]" in caplog.text
    (grad,) = torch.autograd.grad(tot.sum(), x)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all() and (grad[0] != 0).any()


def test_float32_inputs():
    fsa, log_likes, lengths = small_problem(0)
    ref = reference(fsa, log_likes, lengths)
    for backend in TORCH_BACKENDS:
        ours = total_scores(fsa, log_likes.float(), lengths, backend=backend)
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-4)


def test_input_errors():
    fsa, log_likes, lengths = small_problem(0)
    with pytest.raises(ConfigError, match="backend"):
        total_scores(fsa, log_likes, lengths, backend="fast")
    with pytest.raises(DataError, match=r"lengths\[0\] = 9"):
        total_scores(fsa, log_likes, torch.tensor([9, 1, 1, 1]))
    with pytest.raises(DataError, match="2 graphs for a batch of 4"):
        total_scores([fsa, fsa], log_likes, lengths)
    with pytest.raises(DataError, match="out of range for 2 pdfs"):
        total_scores(fsa, log_likes[..., :2], lengths)
    bad = log_likes.clone()
    bad[2, 1, 0] = math.nan
    with pytest.raises(DataError, match=r"log_likes\[2, 1\]"):
        total_scores(fsa, bad, lengths)
    bad[2, 1, 0] = 0.0
    bad[1, 5, 0] = math.nan  # a padded frame: ignored
    total_scores(fsa, bad, lengths, backend="log")
    if not k2_available():
        with pytest.raises(ConfigError, match="k2"):
            total_scores(fsa, log_likes, lengths, backend="k2")
