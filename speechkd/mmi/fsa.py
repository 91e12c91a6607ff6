"""Epsilon-free weighted acceptors over pdf labels, stored as tensors.

An :class:`Fsa` has states ``0 .. S-1`` with start state ``0``; every arc ``(src, dst, label)``
consumes exactly one frame and carries a log weight; ``final[s]`` is the log final weight of state
``s`` (``-inf`` = not final). Labels are pdf indices ``0 .. P-1`` (the columns of the network
output); label ``0`` is an ordinary label (the CTC blank), never epsilon.

OpenFst text format (as ``fstprint`` writes and ``fstcompile``, kaldifst and k2's
``k2.Fsa.from_openfst`` read): arc lines ``src dst label [cost]`` and final lines
``state [cost]`` where ``cost = -log weight``; the start state is the source of the first line.
OpenFst reserves label 0 for epsilon, so pdf ``p`` is written as ``p + label_offset`` with
``label_offset = 1`` by default, the convention of Kaldi's chain ``den.fst`` (and of k2 graphs
that reserve 0 for epsilon). Pass ``label_offset=0`` for acceptors whose labels are already
1-based, e.g. a phone LM over ``phones.txt`` ids.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

from speechkd.errors import DataError

NEG_INF = float("-inf")


class Fsa:
    """An epsilon-free weighted acceptor: ``Fsa(arcs [A,3] long, scores [A], final [S])``.

    Arc weights and final weights are log weights (log semiring, natural log). The object is
    treated as immutable; derived data (sparse matrices, leaky-HMM distributions) is cached on it.
    """

    def __init__(
        self,
        arcs: torch.Tensor | Iterable[Iterable[int]],
        scores: torch.Tensor | Iterable[float],
        final: torch.Tensor | Iterable[float],
    ) -> None:
        arcs = torch.as_tensor(arcs, dtype=torch.long)
        if arcs.numel() == 0:
            arcs = arcs.reshape(0, 3)
        scores = torch.as_tensor(scores, dtype=torch.float64)
        final = torch.as_tensor(final, dtype=torch.float64)
        if arcs.dim() != 2 or arcs.shape[1] != 3:
            raise DataError(
                f"Fsa arcs: expected a [A, 3] tensor (src, dst, label), got {tuple(arcs.shape)}"
            )
        if scores.shape != (arcs.shape[0],):
            raise DataError(
                f"Fsa scores: expected shape ({arcs.shape[0]},) to match the arcs, "
                f"got {tuple(scores.shape)}"
            )
        if final.dim() != 1 or final.numel() == 0:
            raise DataError(f"Fsa final: expected a non-empty [S] tensor, got {tuple(final.shape)}")
        self.arcs = arcs
        self.scores = scores
        self.final = final
        self._cache: dict[Any, Any] = {}
        self._validate()

    # ------------------------------------------------------------------ basic properties
    @property
    def num_states(self) -> int:
        return int(self.final.shape[0])

    @property
    def num_arcs(self) -> int:
        return int(self.arcs.shape[0])

    @property
    def src(self) -> torch.Tensor:
        return self.arcs[:, 0]

    @property
    def dst(self) -> torch.Tensor:
        return self.arcs[:, 1]

    @property
    def labels(self) -> torch.Tensor:
        return self.arcs[:, 2]

    @property
    def device(self) -> torch.device:
        return self.arcs.device

    @property
    def max_label(self) -> int:
        """The largest label, or -1 for an FSA without arcs."""
        return int(self.labels.max()) if self.num_arcs else -1

    def to(self, device: torch.device | str) -> Fsa:
        """A copy on ``device`` (the same object if it is already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return Fsa(self.arcs.to(device), self.scores.to(device), self.final.to(device))

    def __repr__(self) -> str:
        return (
            f"Fsa(num_states={self.num_states}, num_arcs={self.num_arcs}, "
            f"max_label={self.max_label})"
        )

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        S = self.num_states
        if self.num_arcs:
            lo = int(self.arcs[:, :2].min())
            hi = int(self.arcs[:, :2].max())
            if lo < 0 or hi >= S:
                bad = int(((self.arcs[:, :2] < 0) | (self.arcs[:, :2] >= S)).any(1).nonzero()[0])
                raise DataError(
                    f"Fsa arc {bad} {self.arcs[bad].tolist()}: dangling state (the FSA has "
                    f"{S} states, final has length {S})"
                )
            if int(self.labels.min()) < 0:
                bad = int((self.labels < 0).nonzero()[0])
                raise DataError(
                    f"Fsa arc {bad}: label {int(self.labels[bad])} out of range (labels are pdf "
                    "indices >= 0; the FSA is epsilon-free)"
                )
            if torch.isnan(self.scores).any() or torch.isposinf(self.scores).any():
                bad = int((torch.isnan(self.scores) | torch.isposinf(self.scores)).nonzero()[0])
                raise DataError(
                    f"Fsa arc {bad}: score {float(self.scores[bad])} is not a log weight"
                )
        if torch.isnan(self.final).any() or torch.isposinf(self.final).any():
            bad = int((torch.isnan(self.final) | torch.isposinf(self.final)).nonzero()[0])
            raise DataError(
                f"Fsa state {bad}: final weight {float(self.final[bad])} is not a log weight"
            )
        if not bool(torch.isfinite(self.final).any()):
            raise DataError(f"Fsa with {S} states has no final state (all final weights are -inf)")

    def check_labels(self, num_pdfs: int, name: str = "graph") -> None:
        """Raise ``DataError`` if a label is not a pdf index below ``num_pdfs``."""
        if self.num_arcs and self.max_label >= num_pdfs:
            bad = int((self.labels >= num_pdfs).nonzero()[0])
            raise DataError(
                f"{name}: arc {bad} has label {int(self.labels[bad])} out of range for "
                f"{num_pdfs} pdfs (log_likes.shape[-1])"
            )

    # ------------------------------------------------------------------ structure helpers
    def accessible_coaccessible(self) -> torch.Tensor:
        """Bool [S]: states on some path from the start state to a final state."""
        S = self.num_states
        src = self.src.tolist()
        dst = self.dst.tolist()
        out_adj: list[list[int]] = [[] for _ in range(S)]
        in_adj: list[list[int]] = [[] for _ in range(S)]
        for s, d in zip(src, dst, strict=True):
            out_adj[s].append(d)
            in_adj[d].append(s)
        fwd = _reach([0], out_adj, S)
        finals = torch.isfinite(self.final).nonzero().flatten().tolist()
        bwd = _reach(finals, in_adj, S)
        return torch.tensor([a and b for a, b in zip(fwd, bwd, strict=True)], dtype=torch.bool)

    def connect(self) -> Fsa:
        """Remove states that are not on a start-to-final path (state 0 is always kept)."""
        keep = self.accessible_coaccessible().to(self.device)
        keep[0] = True
        if bool(keep.all()):
            return self
        new_id = torch.full((self.num_states,), -1, dtype=torch.long, device=self.device)
        new_id[keep] = torch.arange(int(keep.sum()), device=self.device)
        arc_keep = keep[self.src] & keep[self.dst]
        arcs = self.arcs[arc_keep].clone()
        arcs[:, 0] = new_id[arcs[:, 0]]
        arcs[:, 1] = new_id[arcs[:, 1]]
        final = self.final[keep]
        if not bool(torch.isfinite(final).any()):
            raise DataError("Fsa.connect: no final state is reachable from the start state")
        return Fsa(arcs, self.scores[arc_keep], final)

    # ------------------------------------------------------------------ OpenFst text
    def to_openfst(self, label_offset: int = 1) -> str:
        """OpenFst text (acceptor format); pdf ``p`` is written as ``p + label_offset``."""
        order = torch.argsort(self.src, stable=True)
        arcs = self.arcs[order].tolist()
        costs = (-self.scores[order]).tolist()
        lines = [
            f"{s} {d} {lab + label_offset} {_fmt_cost(c)}"
            for (s, d, lab), c in zip(arcs, costs, strict=True)
        ]
        for s, w in enumerate(self.final.tolist()):
            if w != NEG_INF:
                lines.append(f"{s} {_fmt_cost(-w)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_openfst(cls, text: str, label_offset: int = 1, acceptor: bool = True) -> Fsa:
        """Parse OpenFst text; ``acceptor=False`` reads transducer lines with equal labels."""
        arcs: list[tuple[int, int, int]] = []
        scores: list[float] = []
        finals: dict[int, float] = {}
        start = None
        n_arc_fields = (3, 4) if acceptor else (4, 5)
        for lineno, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) in (1, 2):
                    state = int(fields[0])
                    cost = _parse_cost(fields[1]) if len(fields) == 2 else 0.0
                    finals[state] = -cost
                elif len(fields) in n_arc_fields:
                    s, d, lab = int(fields[0]), int(fields[1]), int(fields[2])
                    cost_field = fields[-1] if len(fields) == n_arc_fields[1] else None
                    if not acceptor and int(fields[3]) != lab:
                        raise DataError(
                            f"OpenFst text line {lineno}: input label {lab} != output label "
                            f"{fields[3]} (expected an acceptor)"
                        )
                    cost = _parse_cost(cost_field) if cost_field is not None else 0.0
                    if lab - label_offset < 0:
                        raise DataError(
                            f"OpenFst text line {lineno}: label {lab} is epsilon or below the "
                            f"label offset {label_offset}; the acceptor must be epsilon-free"
                        )
                    arcs.append((s, d, lab - label_offset))
                    scores.append(-cost)
                    state = s
                else:
                    raise DataError(
                        f"OpenFst text line {lineno}: {len(fields)} fields; expected "
                        f"{' or '.join(map(str, n_arc_fields))} (arc) or 1-2 (final state)"
                    )
            except ValueError as exc:
                if isinstance(exc, DataError):
                    raise
                raise DataError(
                    f"OpenFst text line {lineno}: cannot parse {line!r}: {exc}"
                ) from None
            if start is None:
                start = state
        if start is None:
            raise DataError("OpenFst text: empty FSA (no lines)")
        states = [start] + [s for a in arcs for s in a[:2]] + list(finals)
        if min(states) < 0:
            raise DataError(f"OpenFst text: negative state id {min(states)}")
        S = max(states) + 1
        final = [NEG_INF] * S
        for s, w in finals.items():
            final[s] = w
        arc_t = torch.tensor(arcs, dtype=torch.long).reshape(-1, 3)
        if start != 0:  # renumber so that the start state is 0
            perm = torch.arange(S)
            perm[0], perm[start] = start, 0
            arc_t[:, :2] = perm[arc_t[:, :2]]
            final[0], final[start] = final[start], final[0]
        return cls(
            arc_t,
            torch.tensor(scores, dtype=torch.float64),
            torch.tensor(final, dtype=torch.float64),
        )


def _reach(seeds: list[int], adj: list[list[int]], n: int) -> list[bool]:
    seen = [False] * n
    queue = deque(seeds)
    for s in seeds:
        seen[s] = True
    while queue:
        s = queue.popleft()
        for d in adj[s]:
            if not seen[d]:
                seen[d] = True
                queue.append(d)
    return seen


def _fmt_cost(cost: float) -> str:
    if cost == math.inf:
        return "Infinity"
    return repr(cost + 0.0)  # repr round-trips float64 exactly; + 0.0 turns -0.0 into 0.0


def _parse_cost(field: str) -> float:
    low = field.lower()
    if low in ("infinity", "inf"):
        return math.inf
    return float(field)
