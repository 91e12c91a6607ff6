"""Probability-space forward-backward with per-frame renormalisation (the fast backend).

As Kaldi's chain denominator computation: state values are probabilities, renormalised after
every frame (the log normalisers are accumulated in float64), emissions are ``exp(log_like - m)``
with ``m`` the frame's largest log-likelihood among the pdfs the graph uses, and the optional
leaky HMM is a rank-one update per frame (:mod:`speechkd.mmi.leaky_hmm`).

Arcs are grouped into (destination state, emission row) pairs ``d``, so that one frame is

    y = W @ alpha            (sparse CSR [D, S] of arc weights, summing arcs of a pair)
    x = y * e_t[emit(d)]     (one emission per pair)
    alpha' = G @ x           (pairs -> destination states; skipped when that is a bijection)

and the backward pass uses the transposed CSR matrix; the gradient (pdf occupation posteriors)
of frame ``t`` is ``y * e * beta[dst(d)]`` normalised to sum to one per utterance and frame.
Sparse CSR products (32-bit indices) keep the cost at O(A * C) per frame with small constants on
CPU and GPU; the loops hold only the products and a few element-wise operations per frame. The
forward pass keeps the pair values ``x`` of every frame (``[T, D, C]``; for graphs whose pairs are
their states, as CTC and chain denominators, the size of the state values), so the backward pass
needs one product per frame. When ``T * D * C`` is small (``KEEP_PAIR_VALUES``) the pair
emissions of all frames are gathered at once and the posteriors of all frames made in one pass
after the backward recursion.

All arithmetic is in ``dtype`` (float64 by default; float32 halves memory and suits GPUs, but
emissions more than ~87 nats below the frame's best pdf then underflow to zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speechkd.mmi.graph_batch import GraphBatch
from speechkd.mmi.sparse import csr_matrix

KEEP_PAIR_VALUES = 1 << 23  # all frames' pair emissions and posteriors at once up to T * D * C


def _spmm(csr: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    if csr._nnz() == 0:
        return torch.zeros(csr.shape[0], dense.shape[1], dtype=dense.dtype, device=dense.device)
    return torch.sparse.mm(csr, dense)


@dataclass
class ProbGraph:
    """The sparse matrices of one :class:`GraphBatch` for the probability-space recursions."""

    num_pairs: int
    weights: torch.Tensor  # CSR [D, S]
    weights_t: torch.Tensor  # CSR [S, D]
    pair_dst: torch.Tensor  # [D]
    pair_emit: torch.Tensor  # [D]
    combine: torch.Tensor | None  # CSR [S, D], None when pairs are exactly the states
    emit_reduce: torch.Tensor  # CSR [R, D]
    state_utt: torch.Tensor | None  # CSR [B, S] (union)
    pair_utt: torch.Tensor | None  # CSR [B, D] (union)
    pair_utt_index: torch.Tensor | None  # [D] (union)
    used_rows: torch.Tensor  # bool [P] (shared) or [B, P] (union): pdfs some arc reads


def build_prob_graph(batch: GraphBatch, dtype: torch.dtype) -> ProbGraph:
    device = batch.src.device
    S, R = batch.num_states, batch.num_rows
    key = batch.dst * R + batch.emit
    uniq, pair_of_arc = torch.unique(key, return_inverse=True)
    D = int(uniq.numel())
    pair_dst, pair_emit = uniq // R, uniq % R
    w = torch.exp(batch.score).to(dtype)
    weights = csr_matrix(pair_of_arc, batch.src, w, (D, S))
    weights_t = csr_matrix(batch.src, pair_of_arc, w, (S, D))
    ones = torch.ones(D, dtype=dtype, device=device)
    pair_ids = torch.arange(D, device=device)
    identity = D == S and bool((pair_dst == torch.arange(S, device=device)).all())
    combine = None if identity else csr_matrix(pair_dst, pair_ids, ones, (S, D))
    emit_reduce = csr_matrix(pair_emit, pair_ids, ones, (R, D))
    if batch.shared:
        used = torch.zeros(batch.num_pdfs, dtype=torch.bool, device=device)
        used[batch.emit] = True
        state_utt = pair_utt = pair_utt_index = None
    else:
        B = batch.batch_size
        used = torch.zeros(B * batch.num_pdfs, dtype=torch.bool, device=device)
        used[batch.emit] = True
        used = used.reshape(B, batch.num_pdfs)
        state_ones = torch.ones(S, dtype=dtype, device=device)
        state_utt = csr_matrix(batch.state_utt, torch.arange(S, device=device), state_ones, (B, S))
        pair_utt_index = batch.state_utt[pair_dst]
        pair_utt = csr_matrix(pair_utt_index, pair_ids, ones, (B, D))
    return ProbGraph(
        D,
        weights,
        weights_t,
        pair_dst,
        pair_emit,
        combine,
        emit_reduce,
        state_utt,
        pair_utt,
        pair_utt_index,
        used,
    )


def cached_prob_graph(batch: GraphBatch, dtype: torch.dtype) -> ProbGraph:
    """Shared graphs keep their matrices on the :class:`Fsa`; per-utterance ones are rebuilt."""
    if not batch.shared:
        return build_prob_graph(batch, dtype)
    fsa = batch.graphs[0]
    key = ("prob", str(batch.src.device), dtype, batch.num_pdfs)
    if key not in fsa._cache:
        fsa._cache[key] = build_prob_graph(batch, dtype)
    return fsa._cache[key]


class _Sums:
    """Per-utterance sums and broadcasts for the two layouts."""

    def __init__(self, batch: GraphBatch, pg: ProbGraph) -> None:
        self.batch, self.pg = batch, pg

    def states(self, x: torch.Tensor) -> torch.Tensor:  # [S, C] -> [B]
        return x.sum(0) if self.batch.shared else _spmm(self.pg.state_utt, x).reshape(-1)

    def pairs(self, x: torch.Tensor) -> torch.Tensor:  # [D, C] -> [B]
        return x.sum(0) if self.batch.shared else _spmm(self.pg.pair_utt, x).reshape(-1)

    def pair_cells(self, v: torch.Tensor) -> torch.Tensor:  # [B] -> broadcastable to [D, C]
        return v.reshape(1, -1) if self.batch.shared else v[self.pg.pair_utt_index].reshape(-1, 1)


def _positive(x: torch.Tensor) -> torch.Tensor:
    """``x`` (non-negative sums) with zeros raised to the smallest normal number: a safe divisor
    (0 / tiny = 0) in one operation."""
    return x.clamp_min(torch.finfo(x.dtype).tiny)


class ProbSpaceTotalScores(torch.autograd.Function):
    """``forward(log_likes, batch, lengths, eta_pi, dtype) -> [B]`` total log scores."""

    @staticmethod
    def forward(ctx, log_likes, batch: GraphBatch, lengths, eta_pi, dtype):  # type: ignore[override]
        pg = cached_prob_graph(batch, dtype)
        sums = _Sums(batch, pg)
        ll = log_likes.detach()
        B, T, _ = ll.shape
        used = pg.used_rows.reshape(1, 1, -1) if batch.shared else pg.used_rows[:, None, :]
        shift = torch.where(used, ll, torch.full_like(ll, float("-inf"))).amax(-1)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))  # [B, T]
        em = batch.emission_stack(torch.exp(ll - shift[..., None]).to(dtype))  # [T, R, C]
        C = batch.num_cols
        small = T * pg.num_pairs * C <= KEEP_PAIR_VALUES
        emissions = _PairEmissions(em, pg.pair_emit, small)
        leak = _Leak(batch, eta_pi, dtype) if eta_pi is not None else None
        cell_len, ends = batch.utt_cells(lengths), set(lengths.tolist())
        xs = torch.empty(T, pg.num_pairs, C, dtype=dtype, device=ll.device)  # pair values
        norms = torch.empty(T, B, dtype=dtype, device=ll.device)
        alpha = batch.start_values(0.0, 1.0, dtype)
        last = torch.where(cell_len == 0, alpha, torch.zeros_like(alpha))  # each utterance's end
        for t in range(T):
            x = torch.mul(_spmm(pg.weights, alpha), emissions.frame(t), out=xs[t])
            a = x if pg.combine is None else _spmm(pg.combine, x)
            s = sums.states(a)
            c = s if leak is None else leak.norm(s)
            norms[t] = c
            inv = batch.utt_cells(_positive(c).reciprocal())
            alpha = a * inv
            if leak is not None:  # (a + s * eta_pi) / c
                leak.add_to(alpha, s, inv)
            if t + 1 in ends:
                last = torch.where(cell_len == t + 1, alpha, last)
        fin = sums.states(last * torch.exp(batch.final).to(dtype)[:, None])
        log_norm = torch.log(norms.double())
        valid = torch.arange(T, device=ll.device)[None, :] < lengths[:, None]  # [B, T]
        total = (
            torch.where(valid.T, log_norm, torch.zeros_like(log_norm)).sum(0)
            + (shift.double() * valid).sum(1)
            + torch.log(fin.double())
        )
        ctx.batch, ctx.pg, ctx.leak, ctx.emissions = batch, pg, leak, emissions
        ctx.save_for_backward(xs, lengths, total)
        return total.to(log_likes.dtype)

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        xs, lengths, total = ctx.saved_tensors
        batch: GraphBatch = ctx.batch
        pg: ProbGraph = ctx.pg
        leak: _Leak | None = ctx.leak
        emissions: _PairEmissions = ctx.emissions
        sums = _Sums(batch, pg)
        T, S, C = batch.num_frames, batch.num_states, batch.num_cols
        dtype = xs.dtype
        alive = torch.isfinite(total)
        g = torch.where(alive, grad_total.double(), torch.zeros_like(total)).to(dtype)
        final_cells = torch.exp(batch.final).to(dtype)[:, None].expand(S, C)
        cell_len, ends = batch.utt_cells(lengths), set(lengths.tolist())
        # small problems: the pair values z = x * beta[dst] of every frame, made posteriors at
        # the end; else each frame's posteriors at once
        zs = torch.empty_like(xs) if emissions.all_frames else None
        grad_em = None
        if zs is None:
            grad_em = torch.zeros(T, batch.num_rows, C, dtype=dtype, device=xs.device)
        beta = torch.zeros(S, C, dtype=dtype, device=xs.device)
        for t in range(T, 0, -1):
            if t in ends:
                beta = torch.where(cell_len == t, final_cells, beta)
            if leak is not None:  # d/d(pre-leak alpha): beta(i) + eta * sum_j pi(j) beta(j)
                beta = leak.back(beta)
            gb = beta if pg.combine is None else beta.index_select(0, pg.pair_dst)
            w = emissions.frame(t - 1) * gb
            if zs is not None:
                torch.mul(xs[t - 1], gb, out=zs[t - 1])
            else:
                z = xs[t - 1] * gb
                scale = g / _positive(sums.pairs(z))
                grad_em[t - 1] = _spmm(pg.emit_reduce, z * sums.pair_cells(scale))
            prev = _spmm(pg.weights_t, w)
            beta = prev * batch.utt_cells(_positive(sums.states(prev)).reciprocal())
        if zs is not None:
            grad_em = _frame_posteriors(batch, pg, zs, g)
        return batch.unstack(grad_em.to(grad_total.dtype)), None, None, None, None


class _PairEmissions:
    """Each pair's emission at frame ``t``: gathered for all frames at once (``all_frames``, small
    problems) or frame by frame."""

    def __init__(self, em: torch.Tensor, pair_emit: torch.Tensor, all_frames: bool) -> None:
        self.em, self.num_pairs, self.all_frames = em, pair_emit.numel(), all_frames
        self.gathered = _gather_rows(em, pair_emit) if all_frames else None
        self.flat = None if all_frames else _flat_index(pair_emit, em.shape[2])

    def frame(self, t: int) -> torch.Tensor:
        """``[D, C]`` emissions of frame ``t``."""
        if self.gathered is not None:
            return self.gathered[t]
        return self.em[t].reshape(-1)[self.flat].reshape(self.num_pairs, -1)


class _Leak:
    """The leaky HMM's rank-one update: ``a + eta_pi * sum(a)`` per utterance, and its transpose."""

    def __init__(self, batch: GraphBatch, eta_pi: torch.Tensor, dtype: torch.dtype) -> None:
        self.batch = batch
        eta_pi = eta_pi.to(dtype)
        self.col = eta_pi[:, None]  # [S, 1]
        S = batch.num_states
        if batch.shared:
            self.rows = eta_pi[None, :]  # [1, S]: sum_j eta_pi(j) x(j) is one product
        else:
            states = torch.arange(S, device=eta_pi.device)
            self.rows = csr_matrix(batch.state_utt, states, eta_pi, (batch.batch_size, S))
        self.scale = 1.0 + self.weighted_sums(torch.ones(S, 1, dtype=dtype, device=eta_pi.device))

    def weighted_sums(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_j eta_pi(j) x(j)`` per utterance (``[C]`` shared, ``[B]`` union)."""
        if self.batch.shared:
            return (self.rows @ x).reshape(-1)
        return _spmm(self.rows, x).reshape(-1)

    def norm(self, s: torch.Tensor) -> torch.Tensor:
        """The per-utterance sums after the leak, from those before (``s``)."""
        return s * self.scale

    def add_to(self, out: torch.Tensor, s: torch.Tensor, inv: torch.Tensor) -> None:
        """``out += eta_pi * s * inv`` (``inv`` broadcast like state values)."""
        out.addcmul_(self.col, self.batch.utt_cells(s) * inv)

    def back(self, beta: torch.Tensor) -> torch.Tensor:
        """``beta(i) + sum_j eta_pi(j) beta(j)``: the gradient w.r.t. the pre-leak values."""
        return beta + self.batch.utt_cells(self.weighted_sums(beta))


def _frame_posteriors(
    batch: GraphBatch, pg: ProbGraph, zs: torch.Tensor, g: torch.Tensor
) -> torch.Tensor:
    """Emission-row gradients ``[T, R, C]`` from the pair values ``zs [T, D, C]`` (in place):
    each frame's values normalised to ``g`` per utterance, summed per emission row."""
    T, _, C = zs.shape
    if batch.shared:
        totals = zs.sum(1)  # [T, C]
        zs.mul_((g[None, :] / _positive(totals))[:, None, :])
    else:
        totals = torch.zeros(T, batch.batch_size, dtype=zs.dtype, device=zs.device)
        totals.index_add_(1, pg.pair_utt_index, zs[..., 0])
        scale = g[None, :] / _positive(totals)  # [T, B]
        zs.mul_(scale[:, pg.pair_utt_index, None])
    out = torch.zeros(T, batch.num_rows * C, dtype=zs.dtype, device=zs.device)
    out.index_add_(1, _flat_index(pg.pair_emit, C), zs.reshape(T, -1))
    return out.reshape(T, batch.num_rows, C)


def _flat_index(rows: torch.Tensor, cols: int) -> torch.Tensor:
    """Flat indices of the elements of ``rows`` in a row-major matrix of ``cols`` columns."""
    return (rows[:, None] * cols + torch.arange(cols, device=rows.device)).reshape(-1)


def _gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``x [T, R, C]`` at ``rows`` along dim 1 (one flat gather: rows of C elements are slow)."""
    T, _, C = x.shape
    flat = x.reshape(T, -1).index_select(1, _flat_index(rows, C))
    return flat.reshape(T, rows.numel(), C)
