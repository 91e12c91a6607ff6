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
Sparse CSR products keep the cost at O(A * C) per frame with small constants on CPU and GPU.

All arithmetic is in ``dtype`` (float64 by default; float32 halves memory and suits GPUs, but
emissions more than ~87 nats below the frame's best pdf then underflow to zero).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from speechkd.mmi.graph_batch import GraphBatch

KEEP_PAIR_VALUES = 1 << 23  # keep per-frame pair values when T * D * C is at most this


def _csr(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape).coalesce()
        return coo.to_sparse_csr()


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
    weights = _csr(pair_of_arc, batch.src, w, (D, S))
    weights_t = _csr(batch.src, pair_of_arc, w, (S, D))
    ones = torch.ones(D, dtype=dtype, device=device)
    pair_ids = torch.arange(D, device=device)
    identity = D == S and bool((pair_dst == torch.arange(S, device=device)).all())
    combine = None if identity else _csr(pair_dst, pair_ids, ones, (S, D))
    emit_reduce = _csr(pair_emit, pair_ids, ones, (R, D))
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
        state_utt = _csr(batch.state_utt, torch.arange(S, device=device), state_ones, (B, S))
        pair_utt_index = batch.state_utt[pair_dst]
        pair_utt = _csr(pair_utt_index, pair_ids, ones, (B, D))
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
        S, C = batch.num_states, batch.num_cols
        alphas = torch.empty(T + 1, S, C, dtype=dtype, device=ll.device)
        alphas[0] = batch.start_values(0.0, 1.0, dtype)
        log_norm = torch.empty(T, B, dtype=torch.float64, device=ll.device)
        eta_pi_col = eta_pi.to(dtype)[:, None] if eta_pi is not None else None
        # small problems (numerators): gather the pair emissions once and keep the products
        keep = T * pg.num_pairs * C <= KEEP_PAIR_VALUES
        em_pairs = em.index_select(1, pg.pair_emit) if keep else None
        xs = torch.empty(T, pg.num_pairs, C, dtype=dtype, device=ll.device) if keep else None
        for t in range(T):
            e_t = em_pairs[t] if keep else em[t].index_select(0, pg.pair_emit)
            x = _spmm(pg.weights, alphas[t]) * e_t
            if keep:
                xs[t] = x
            a = x if pg.combine is None else _spmm(pg.combine, x)
            if eta_pi_col is not None:
                a = a + batch.utt_cells(sums.states(a)) * eta_pi_col
            c = sums.states(a)
            log_norm[t] = torch.log(c.double())
            torch.div(a, batch.utt_cells(_positive(c)), out=alphas[t + 1])
        last = _last_frame(batch, alphas, lengths)
        fin = sums.states(last * torch.exp(batch.final).to(dtype)[:, None])
        valid = torch.arange(T, device=ll.device)[None, :] < lengths[:, None]  # [B, T]
        total = (
            torch.where(valid.T, log_norm, torch.zeros_like(log_norm)).sum(0)
            + (shift.double() * valid).sum(1)
            + torch.log(fin.double())
        )
        ctx.batch, ctx.pg, ctx.eta_pi_col, ctx.keep = batch, pg, eta_pi_col, keep
        if keep:
            ctx.save_for_backward(em_pairs, xs, lengths, total)
        else:
            ctx.save_for_backward(em, alphas, lengths, total)
        return total.to(log_likes.dtype)

    @staticmethod
    def backward(ctx, grad_total):  # type: ignore[override]
        em, alphas, lengths, total = ctx.saved_tensors  # (em_pairs, xs, ...) when ctx.keep
        keep = ctx.keep
        batch: GraphBatch = ctx.batch
        pg: ProbGraph = ctx.pg
        eta_pi_col = ctx.eta_pi_col
        sums = _Sums(batch, pg)
        T, S, C = batch.num_frames, batch.num_states, batch.num_cols
        dtype = em.dtype
        alive = torch.isfinite(total)
        g = torch.where(alive, grad_total.double(), torch.zeros_like(total)).to(dtype)
        final_cells = torch.exp(batch.final).to(dtype)[:, None].expand(S, C)
        cell_len = batch.utt_cells(lengths)
        grad_em = torch.zeros(T, batch.num_rows, C, dtype=grad_total.dtype, device=em.device)
        beta = torch.zeros(S, C, dtype=dtype, device=em.device)
        for t in range(T, 0, -1):
            beta = torch.where(cell_len == t, final_cells, beta)
            if eta_pi_col is not None:
                beta = beta + batch.utt_cells(sums.states(beta * eta_pi_col))
            gb = beta.index_select(0, pg.pair_dst)
            if keep:
                w = em[t - 1] * gb
                z = alphas[t - 1] * gb
            else:
                w = em[t - 1].index_select(0, pg.pair_emit) * gb
                z = _spmm(pg.weights, alphas[t - 1]) * w
            scale = g / _positive(sums.pairs(z))
            grad_em[t - 1] = _spmm(pg.emit_reduce, z * sums.pair_cells(scale)).to(grad_em.dtype)
            prev = _spmm(pg.weights_t, w)
            beta = prev / batch.utt_cells(_positive(sums.states(prev)))
        return batch.unstack(grad_em), None, None, None, None


def _last_frame(batch: GraphBatch, alphas: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if batch.shared:
        return alphas[lengths, :, torch.arange(batch.batch_size, device=alphas.device)].T
    states = torch.arange(batch.num_states, device=alphas.device)
    return alphas[lengths[batch.state_utt], states, 0].reshape(-1, 1)
