"""k2 as an intersection backend, used when ``import k2`` works.

Graphs are converted to k2 acceptors (a super-final state reached by ``-1`` arcs carrying the final
weights, as k2 requires) and intersected with a ``k2.DenseFsaVec`` without pruning; the total
scores come from ``get_tot_scores(log_semiring=True, use_double_scores=True)``, and k2's autograd
gives the gradient. k2 computes emissions in float32 and has no leaky HMM.
"""

from __future__ import annotations

import functools

import torch

from speechkd.mmi.fsa import Fsa

OUTPUT_BEAM = 1e10  # no pruning: the result is the full intersection


@functools.cache
def k2_available() -> bool:
    try:
        import k2  # noqa: F401
    except Exception:  # ImportError, or a k2 built against another torch
        return False
    return True


def to_k2(fsa: Fsa, device: torch.device):
    """The k2 acceptor of ``fsa`` on ``device`` (cached on the object)."""
    import k2

    key = ("k2", str(device))
    if key not in fsa._cache:
        S = fsa.num_states
        lines = [
            f"{s} {d} {lab} {w!r}"
            for (s, d, lab), w in zip(fsa.arcs.tolist(), fsa.scores.tolist(), strict=True)
        ]
        lines += [
            f"{s} {S} -1 {w!r}" for s, w in enumerate(fsa.final.tolist()) if w != float("-inf")
        ]
        lines.append(str(S))
        graph = k2.arc_sort(k2.Fsa.from_str("\n".join(lines), acceptor=True))
        fsa._cache[key] = graph.to(device)
    return fsa._cache[key]


def k2_total_scores(
    graphs: Fsa | list[Fsa], log_likes: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Total log scores ``[B]`` through ``k2.intersect_dense`` (differentiable by k2)."""
    import k2

    B = log_likes.shape[0]
    device = log_likes.device
    order = torch.argsort(lengths.cpu(), descending=True, stable=True)
    segments = torch.stack([order, torch.zeros_like(order), lengths.cpu()[order]], dim=1).to(
        torch.int32
    )
    dense = k2.DenseFsaVec(log_likes.float(), segments)
    if isinstance(graphs, Fsa):
        per_utt = [to_k2(graphs, device)] * B
    else:
        per_utt = [to_k2(graphs[int(i)], device) for i in order]
    a_fsas = k2.create_fsa_vec(per_utt)
    lattice = k2.intersect_dense(a_fsas, dense, output_beam=OUTPUT_BEAM)
    tot_sorted = lattice.get_tot_scores(log_semiring=True, use_double_scores=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(B)
    return tot_sorted[inverse.to(tot_sorted.device)].to(log_likes.dtype)
