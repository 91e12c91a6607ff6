"""Exact log-space forward-backward (the reference backend), float64 throughout.

Vectorised over arcs and utterances: one frame is a gather of the source states' forward scores,
an add of the arc and emission scores and a scatter-logsumexp into the destination states. The
gradient w.r.t. the log-likelihoods is the pdf occupation posterior, computed by an explicit
backward pass (no autograd through the frames). Memory: the forward scores of every frame,
``(T+1) * S * C`` doubles.
"""

from __future__ import annotations

import torch

from speechkd.mmi.graph_batch import GraphBatch

NEG_INF = float("-inf")


def scatter_logsumexp(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``out[i] = logsumexp(values[index == i])`` row-wise: ``[N, C]`` -> ``[size, C]``."""
    C = values.shape[1]
    m = torch.full((size, C), NEG_INF, dtype=values.dtype, device=values.device)
    m.scatter_reduce_(0, index[:, None].expand(-1, C), values, "amax", include_self=True)
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = torch.zeros(size, C, dtype=values.dtype, device=values.device)
    s.index_add_(0, index, torch.exp(values - m_safe[index]))
    return torch.log(s) + m_safe


def _utt_logsumexp(batch: GraphBatch, x: torch.Tensor) -> torch.Tensor:
    """Per-utterance logsumexp of state values ``[S, C]`` -> ``[B]``."""
    if batch.shared:
        return torch.logsumexp(x, dim=0)
    return scatter_logsumexp(x, batch.state_utt, batch.batch_size).reshape(-1)


def _leak(batch: GraphBatch, x: torch.Tensor, log_eta_pi: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(x, log_eta_pi[:, None] + batch.utt_cells(_utt_logsumexp(batch, x)))


def _final_frame_values(
    batch: GraphBatch, alpha: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """State values ``[S, C]`` taken at each utterance's last frame from ``alpha [T+1, S, C]``."""
    if batch.shared:
        return alpha[lengths, :, torch.arange(batch.batch_size, device=alpha.device)].T
    states = torch.arange(batch.num_states, device=alpha.device)
    return alpha[lengths[batch.state_utt], states, 0].reshape(-1, 1)


class LogSpaceTotalScores(torch.autograd.Function):
    """``forward(log_likes, batch, lengths, log_eta_pi) -> [B]`` total log scores."""

    @staticmethod
    def forward(ctx, log_likes, batch: GraphBatch, lengths, log_eta_pi):  # type: ignore[override]
        em = batch.emission_stack(log_likes.detach().double())
        T = batch.num_frames
        score = batch.score[:, None]
        alpha = torch.empty(
            T + 1, batch.num_states, batch.num_cols, dtype=torch.float64, device=em.device
        )
        alpha[0] = batch.start_values(NEG_INF, 0.0, torch.float64)
        for t in range(T):
            v = alpha[t][batch.src] + score + em[t][batch.emit]
            a = scatter_logsumexp(v, batch.dst, batch.num_states)
            alpha[t + 1] = _leak(batch, a, log_eta_pi) if log_eta_pi is not None else a
        last = _final_frame_values(batch, alpha, lengths)
        total = _utt_logsumexp(batch, last + batch.final[:, None])
        ctx.batch, ctx.log_eta_pi = batch, log_eta_pi
        ctx.save_for_backward(em, alpha, lengths, total)
        return total.to(log_likes.dtype)

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        em, alpha, lengths, total = ctx.saved_tensors
        batch: GraphBatch = ctx.batch
        log_eta_pi = ctx.log_eta_pi
        T, S, C = batch.num_frames, batch.num_states, batch.num_cols
        alive = torch.isfinite(total)
        g = torch.where(alive, grad_total.double(), torch.zeros_like(total))
        log_z = torch.where(alive, total, torch.zeros_like(total))
        arc_log_z, arc_g = batch.arc_cells(log_z), batch.arc_cells(g)
        final_cells = batch.final[:, None].expand(S, C)
        cell_len = batch.utt_cells(lengths)
        score = batch.score[:, None]
        grad_em = torch.zeros_like(em)
        beta = torch.full((S, C), NEG_INF, dtype=torch.float64, device=em.device)
        for t in range(T, 0, -1):
            beta = torch.where(cell_len == t, final_cells, beta)
            if log_eta_pi is not None:  # d/d(pre-leak alpha): beta(i) + eta * sum_j pi(j) beta(j)
                leak = _utt_logsumexp(batch, beta + log_eta_pi[:, None])
                beta = torch.logaddexp(beta, batch.utt_cells(leak))
            through = score + em[t - 1][batch.emit] + beta[batch.dst]
            occ = torch.exp(alpha[t - 1][batch.src] + through - arc_log_z) * arc_g
            grad_em[t - 1].index_add_(0, batch.emit, occ)
            beta = scatter_logsumexp(through, batch.src, S)
        grad = batch.unstack(grad_em).to(grad_total.dtype)
        return grad, None, None, None
