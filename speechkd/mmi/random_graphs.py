"""Seeded random acceptors for checks and benchmarks."""

from __future__ import annotations

import torch

from speechkd.mmi.fsa import Fsa


def random_fsa(
    num_states: int,
    num_arcs: int,
    num_pdfs: int,
    seed: int = 0,
    final_prob: float = 1.0,
    stochastic: bool = True,
) -> Fsa:
    """A random acceptor in which every state is on a start-to-final path.

    A ring ``i -> i+1 (mod S)`` keeps every state reachable and co-reachable; the other arcs get
    uniform random ends and labels. With ``stochastic`` the outgoing weights of each state sum to
    one (a denominator-like graph); otherwise they are standard normal log weights. Each state is
    final with probability ``final_prob`` (state ``S-1`` always is).
    """
    g = torch.Generator().manual_seed(seed)
    S = num_states
    ring_src = torch.arange(S)
    ring_dst = (ring_src + 1) % S
    n_rand = max(num_arcs - S, 0)
    src = torch.cat([ring_src, torch.randint(0, S, (n_rand,), generator=g)])[:num_arcs]
    dst = torch.cat([ring_dst, torch.randint(0, S, (n_rand,), generator=g)])[:num_arcs]
    labels = torch.randint(0, num_pdfs, (src.numel(),), generator=g)
    if stochastic:
        raw = torch.rand(src.numel(), generator=g, dtype=torch.float64) + 0.1
        out_sum = torch.zeros(S, dtype=torch.float64).index_add_(0, src, raw)
        scores = torch.log(raw / out_sum[src])
    else:
        scores = torch.randn(src.numel(), generator=g, dtype=torch.float64)
    is_final = torch.rand(S, generator=g) < final_prob
    is_final[S - 1] = True
    final = torch.where(
        is_final,
        torch.randn(S, generator=g, dtype=torch.float64) * (0.0 if stochastic else 1.0),
        torch.tensor(float("-inf"), dtype=torch.float64),
    )
    return Fsa(torch.stack([src, dst, labels], 1), scores, final)
