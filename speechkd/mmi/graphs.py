"""Per-utterance graphs: the linear CTC graph of a label sequence and frame-level linear graphs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speechkd.errors import DataError
from speechkd.mmi.fsa import Fsa

NEG_INF = float("-inf")


def _as_list(tokens: Sequence[int] | torch.Tensor) -> list[int]:
    return tokens.tolist() if isinstance(tokens, torch.Tensor) else [int(x) for x in tokens]


def ctc_graph(tokens: Sequence[int] | torch.Tensor, blank: int = 0) -> Fsa:
    """The linear CTC graph of ``tokens``: ``F.ctc_loss``'s lattice as an acceptor over pdfs.

    States ``2i`` are "blank before token i" and ``2i+1`` "token i" (``2U + 1`` states for ``U``
    tokens); every state has a self-loop, blank states go on to their token, token states go on
    to the next blank and, unless the next token is the same label, to the next token. The last
    token state and the trailing blank state are final. All weights are 0 (log 1).
    """
    toks = _as_list(tokens)
    for i, tok in enumerate(toks):
        if tok == blank or tok < 0:
            raise DataError(f"ctc_graph: token {i} is {tok}, which is the blank or negative")
    U = len(toks)
    arcs: list[tuple[int, int, int]] = [(0, 0, blank)]
    for i, tok in enumerate(toks):
        b, s = 2 * i, 2 * i + 1
        arcs += [(b, s, tok), (s, s, tok), (s, s + 1, blank), (s + 1, s + 1, blank)]
        if i + 1 < U and toks[i + 1] != tok:
            arcs.append((s, s + 2, toks[i + 1]))
    final = [NEG_INF] * (2 * U + 1)
    final[2 * U] = 0.0
    if U:
        final[2 * U - 1] = 0.0
    return Fsa(
        torch.tensor(arcs),
        torch.zeros(len(arcs), dtype=torch.float64),
        torch.tensor(final, dtype=torch.float64),
    )


def linear_graph(labels: Sequence[int] | torch.Tensor) -> Fsa:
    """The one-path graph reading ``labels[t]`` at frame ``t`` (a frame-level alignment)."""
    labs = _as_list(labels)
    arcs = [(t, t + 1, lab) for t, lab in enumerate(labs)]
    final = [NEG_INF] * len(labs) + [0.0]
    return Fsa(
        torch.tensor(arcs, dtype=torch.long).reshape(-1, 3),
        torch.zeros(len(arcs), dtype=torch.float64),
        torch.tensor(final, dtype=torch.float64),
    )
