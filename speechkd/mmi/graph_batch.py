"""The arcs of a batch of graphs in one index space, as the intersection backends use them.

Two layouts, chosen by what ``total_scores`` is given:

* shared (one :class:`~speechkd.mmi.fsa.Fsa` for the whole batch, e.g. a denominator): state
  values are ``[S, B]`` (one column per utterance) and the emission rows are the ``P`` pdfs;
* union (a list of per-utterance graphs, e.g. numerators): the graphs are concatenated into one
  disjoint union with ``S = sum S_b`` states, state values are ``[S, 1]`` and the emission rows are
  the ``B * P`` (utterance, pdf) pairs.

Either way an arc reads emission row ``emit[a]`` of the frame's emission matrix ``[R, C]``
(``R = P, C = B`` shared; ``R = B*P, C = 1`` union), so the recursions are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speechkd.errors import DataError
from speechkd.mmi.fsa import Fsa


@dataclass
class GraphBatch:
    shared: bool
    batch_size: int
    num_frames: int
    num_pdfs: int
    num_states: int
    src: torch.Tensor  # [A] long
    dst: torch.Tensor  # [A] long
    emit: torch.Tensor  # [A] long: row of the emission matrix
    score: torch.Tensor  # [A] float64 log weights
    final: torch.Tensor  # [S] float64 log final weights
    start: torch.Tensor  # [B or 1] long start state of each graph
    state_utt: torch.Tensor | None  # [S] long utterance of each state (union only)
    arc_utt: torch.Tensor | None  # [A] long utterance of each arc (union only)
    graphs: list[Fsa]

    @property
    def num_cols(self) -> int:
        return self.batch_size if self.shared else 1

    @property
    def num_rows(self) -> int:
        return self.num_pdfs if self.shared else self.batch_size * self.num_pdfs

    # ------------------------------------------------------------ emissions
    def emission_stack(self, log_likes: torch.Tensor) -> torch.Tensor:
        """``[B, T, P]`` -> ``[T, R, C]``: frame ``t``'s emission matrix is ``out[t]``."""
        B, T, P = log_likes.shape
        if self.shared:
            return log_likes.permute(1, 2, 0).contiguous()
        return log_likes.permute(1, 0, 2).reshape(T, B * P, 1)

    def unstack(self, stack: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`emission_stack`: ``[T, R, C]`` -> ``[B, T, P]``."""
        T = stack.shape[0]
        B, P = self.batch_size, self.num_pdfs
        if self.shared:
            return stack.permute(2, 0, 1)
        return stack.reshape(T, B, P).permute(1, 0, 2)

    # ------------------------------------------------------------ per-utterance helpers
    def utt_cells(self, per_utt: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> broadcastable to state values ``[S, C]``."""
        if self.shared:
            return per_utt.reshape(1, -1)
        return per_utt[self.state_utt].reshape(-1, 1)

    def arc_cells(self, per_utt: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> broadcastable to arc values ``[A, C]``."""
        if self.shared:
            return per_utt.reshape(1, -1)
        return per_utt[self.arc_utt].reshape(-1, 1)

    def start_values(self, fill: float, start_value: float, dtype: torch.dtype) -> torch.Tensor:
        """State values ``[S, C]`` equal to ``fill`` except ``start_value`` at the start states."""
        out = torch.full(
            (self.num_states, self.num_cols), fill, dtype=dtype, device=self.src.device
        )
        out[self.start] = start_value
        return out


def make_graph_batch(graphs: Fsa | list[Fsa], log_likes: torch.Tensor) -> GraphBatch:
    """Check ``graphs`` against ``log_likes [B, T, P]`` and index them for the backends."""
    B, T, P = log_likes.shape
    device = log_likes.device
    if isinstance(graphs, Fsa):
        g = graphs.to(device)
        g.check_labels(P, "shared graph")
        return GraphBatch(
            shared=True,
            batch_size=B,
            num_frames=T,
            num_pdfs=P,
            num_states=g.num_states,
            src=g.src,
            dst=g.dst,
            emit=g.labels,
            score=g.scores,
            final=g.final,
            start=torch.zeros(1, dtype=torch.long, device=device),
            state_utt=None,
            arc_utt=None,
            graphs=[g],
        )
    graphs = list(graphs)
    if len(graphs) != B:
        raise DataError(f"total_scores: {len(graphs)} graphs for a batch of {B} utterances")
    moved = []
    for b, g in enumerate(graphs):
        if not isinstance(g, Fsa):
            raise DataError(f"total_scores: graph {b} is a {type(g).__name__}, not an Fsa")
        g = g.to(device)
        g.check_labels(P, f"graph of utterance {b}")
        moved.append(g)
    n_states = torch.tensor([g.num_states for g in moved])
    n_arcs = torch.tensor([g.num_arcs for g in moved])
    offsets = (torch.cumsum(n_states, 0) - n_states).to(device)
    arc_utt = torch.repeat_interleave(torch.arange(B, device=device), n_arcs.to(device))
    state_utt = torch.repeat_interleave(torch.arange(B, device=device), n_states.to(device))
    arcs = torch.cat([g.arcs for g in moved]) if moved else torch.zeros(0, 3, dtype=torch.long)
    return GraphBatch(
        shared=False,
        batch_size=B,
        num_frames=T,
        num_pdfs=P,
        num_states=int(n_states.sum()),
        src=arcs[:, 0] + offsets[arc_utt],
        dst=arcs[:, 1] + offsets[arc_utt],
        emit=arc_utt * P + arcs[:, 2],
        score=torch.cat([g.scores for g in moved]),
        final=torch.cat([g.final for g in moved]),
        start=offsets,
        state_utt=state_utt,
        arc_utt=arc_utt,
        graphs=moved,
    )
