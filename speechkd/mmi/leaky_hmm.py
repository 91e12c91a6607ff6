"""The leaky HMM of Kaldi's chain models, and its explicit (expanded-graph) form.

With coefficient ``eta`` and leak distribution ``pi`` (a distribution over states), after every
frame a fraction of the forward mass "leaks" to every state:

    alpha_t(i) <- alpha_t(i) + eta * pi(i) * sum_j alpha_t(j)

This equals the forward pass over an expanded graph in which every arc ``a: s -> d`` (label
``l``, weight ``w``) is accompanied by arcs ``s -> i`` with label ``l`` and weight
``w * eta * pi(i)`` for every state ``i`` (:func:`expand_leaky_hmm`); the probability-space backend
implements the rank-one update above instead, in O(S) per frame.

``pi`` is Kaldi's "initial probabilities": the average over ``num_iters`` frames of the state
distribution reached from the start state when every pdf is equally likely (renormalised each
frame), see ``chain::DenominatorGraph::SetInitialProbs``.
"""

from __future__ import annotations

import math

import torch

from speechkd.mmi.fsa import Fsa
from speechkd.mmi.sparse import csr_matrix

DEFAULT_LEAK_ITERS = 100


def leaky_hmm_distribution(fsa: Fsa, num_iters: int = DEFAULT_LEAK_ITERS) -> torch.Tensor:
    """The leak distribution ``pi`` [S] (float64, sums to 1) of ``fsa``; cached on the object."""
    key = ("leaky_pi", num_iters)
    if key in fsa._cache:
        return fsa._cache[key]
    S = fsa.num_states
    weights = torch.exp(fsa.scores.double()).cpu()
    trans_t = csr_matrix(fsa.dst.cpu(), fsa.src.cpu(), weights, (S, S))
    cur = torch.zeros(S, 1, dtype=torch.float64)
    cur[0] = 1.0
    avg = torch.zeros(S, 1, dtype=torch.float64)
    done = 0
    for _ in range(num_iters):
        cur = torch.sparse.mm(trans_t, cur)
        total = float(cur.sum())
        if total <= 0.0 or not math.isfinite(total):
            break
        cur = cur / total
        avg += cur
        done += 1
    if done == 0:  # no arcs leave the start state: leak back to it
        avg[0] = 1.0
    pi = (avg / avg.sum()).flatten().to(fsa.device)
    fsa._cache[key] = pi
    return pi


def expand_leaky_hmm(fsa: Fsa, coefficient: float, pi: torch.Tensor | None = None) -> Fsa:
    """The epsilon-free graph whose plain total score equals the leaky-HMM score of ``fsa``.

    Every arc ``s -> d`` gets ``S`` companions ``s -> i`` (same label) with log weight
    ``score + log(coefficient) + log(pi[i])`` (states with ``pi[i] = 0`` get none). The result has
    ``A * (1 + |support(pi)|)`` arcs, so this is meant for small graphs (checks, teaching).
    """
    if pi is None:
        pi = leaky_hmm_distribution(fsa)
    pi = pi.to(fsa.device, torch.float64)
    if coefficient <= 0.0:
        return fsa
    support = (pi > 0).nonzero().flatten()
    A, K = fsa.num_arcs, int(support.numel())
    src = fsa.src.repeat_interleave(K)
    dst = support.repeat(A)
    lab = fsa.labels.repeat_interleave(K)
    extra_scores = fsa.scores.repeat_interleave(K) + math.log(coefficient) + torch.log(pi[dst])
    arcs = torch.cat([fsa.arcs, torch.stack([src, dst, lab], 1)])
    scores = torch.cat([fsa.scores, extra_scores])
    return Fsa(arcs, scores, fsa.final)
