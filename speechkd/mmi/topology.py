"""HMM topologies over phones and their product with an epsilon-free phone LM acceptor.

A :class:`Topology` says how a phone sequence is spelled as pdf frames. Its local states are
pairs ``(context phone, kind)``; ``loops`` lists the arcs that stay within the current LM state
(self-loops, blanks, the second pdf of a chain phone) and ``enter`` the arcs that consume the next
phone of the LM. :func:`compose_lm_topology` builds the product: states ``(LM state, context
phone, kind)`` reachable from ``(0, 0, start kind)``, one arc per topology arc (entering arcs carry
the LM arc's weight), final weights from the LM state when the kind is final. The result is an
epsilon-free acceptor over pdfs in which every arc consumes one frame.

Phones are ``1 .. num_phones`` (0 is epsilon in ``phones.txt`` and never a phone); LM arcs carry
phone labels.

* ``ctc_topo(num_phones)``: pdf 0 is the blank, pdf ``p`` the phone ``p`` (``num_phones + 1`` pdfs).
  Standard: a phone is ``p+`` and a repeated phone needs a blank in between, as ``F.ctc_loss``.
* ``ctc_topo(num_phones, modified=True)``: k2's modified CTC topology (``k2.ctc_topo(...,
  modified=True)``): a hub state with a blank self-loop; a phone is ``p`` (one frame, back to the
  hub) or ``p p+`` through the phone's own state; repeated phones need no blank in between.
* ``chain_topo(num_phones)``: Kaldi's chain topology with two pdfs per phone: phone ``p`` is
  ``a(p) b(p)*`` (its first frame reads pdf ``a(p) = 2(p-1)``, later frames the self-loop pdf
  ``b(p) = 2(p-1)+1``), no blank; ``2 * num_phones`` pdfs. The two kinds "after a" and "after b"
  give every product state a single incoming pdf.
All topology arcs have weight 0 (log 1); the LM weights are the only ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.fsa import Fsa

NEG_INF = float("-inf")

Local = tuple[int, int]  # (context phone, kind)
TopoArc = tuple[Local, int, float]  # (destination local state, pdf, log weight)


@dataclass(frozen=True)
class Topology:
    name: str
    num_phones: int
    num_pdfs: int
    start: Local
    loops: Callable[[Local], list[TopoArc]]
    enter: Callable[[Local, int], list[TopoArc]]
    final_kinds: frozenset[int]


def _check_num_phones(num_phones: int) -> None:
    if num_phones < 1:
        raise ConfigError(f"num_phones={num_phones}: expected >= 1")


def ctc_topo(num_phones: int, modified: bool = False) -> Topology:
    """The CTC topology over phones ``1..num_phones`` with blank pdf 0 (see module doc)."""
    _check_num_phones(num_phones)
    BLANK, TOKEN = 0, 1
    if not modified:

        def loops(loc: Local) -> list[TopoArc]:
            phone, kind = loc
            if kind == BLANK:
                return [((0, BLANK), 0, 0.0)]
            return [(loc, phone, 0.0), ((0, BLANK), 0, 0.0)]

        def enter(loc: Local, nxt: int) -> list[TopoArc]:
            phone, kind = loc
            if kind == TOKEN and phone == nxt:
                return []
            return [((nxt, TOKEN), nxt, 0.0)]

        return Topology(
            "ctc", num_phones, num_phones + 1, (0, BLANK), loops, enter, frozenset({0, 1})
        )

    HUB, INSIDE = 0, 1

    def loops_m(loc: Local) -> list[TopoArc]:
        phone, kind = loc
        if kind == HUB:
            return [((0, HUB), 0, 0.0)]
        return [(loc, phone, 0.0), ((0, HUB), phone, 0.0)]

    def enter_m(loc: Local, nxt: int) -> list[TopoArc]:
        if loc[1] != HUB:
            return []
        return [((0, HUB), nxt, 0.0), ((nxt, INSIDE), nxt, 0.0)]

    return Topology(
        "ctc_modified", num_phones, num_phones + 1, (0, HUB), loops_m, enter_m, frozenset({HUB})
    )


def chain_topo(num_phones: int) -> Topology:
    """Kaldi's chain topology, two pdfs per phone: ``a(p) b(p)*`` (see module doc)."""
    _check_num_phones(num_phones)
    START, AFTER_A, AFTER_B = 0, 1, 2

    def loops(loc: Local) -> list[TopoArc]:
        phone, kind = loc
        if kind == START:
            return []
        return [((phone, AFTER_B), 2 * (phone - 1) + 1, 0.0)]

    def enter(loc: Local, nxt: int) -> list[TopoArc]:
        return [((nxt, AFTER_A), 2 * (nxt - 1), 0.0)]

    return Topology(
        "chain",
        num_phones,
        2 * num_phones,
        (0, START),
        loops,
        enter,
        frozenset({START, AFTER_A, AFTER_B}),
    )


def compose_lm_topology(lm: Fsa, topo: Topology) -> Fsa:
    """The epsilon-free pdf acceptor of phone LM ``lm`` spelled with ``topo`` (trimmed)."""
    if lm.num_arcs and (int(lm.labels.min()) < 1 or lm.max_label > topo.num_phones):
        bad = int(((lm.labels < 1) | (lm.labels > topo.num_phones)).nonzero()[0])
        raise DataError(
            f"compose_lm_topology: LM arc {bad} has phone {int(lm.labels[bad])}; phones are "
            f"1..{topo.num_phones} for the {topo.name} topology"
        )
    lm = lm.to("cpu")
    lm_out: list[list[tuple[int, int, float]]] = [[] for _ in range(lm.num_states)]
    for (s, d, p), w in zip(lm.arcs.tolist(), lm.scores.tolist(), strict=True):
        lm_out[s].append((d, p, w))
    lm_final = lm.final.tolist()
    loops_cache: dict[Local, list[TopoArc]] = {}
    enter_cache: dict[tuple[Local, int], list[TopoArc]] = {}

    ids: dict[tuple[int, int, int], int] = {}
    keys: list[tuple[int, int, int]] = []

    def state_id(key: tuple[int, int, int]) -> int:
        if key not in ids:
            ids[key] = len(keys)
            keys.append(key)
        return ids[key]

    arcs: list[tuple[int, int, int]] = []
    scores: list[float] = []
    state_id((0, *topo.start))
    i = 0
    while i < len(keys):
        q, phone, kind = keys[i]
        loc = (phone, kind)
        if loc not in loops_cache:
            loops_cache[loc] = topo.loops(loc)
        for (nphone, nkind), pdf, w in loops_cache[loc]:
            arcs.append((i, state_id((q, nphone, nkind)), pdf))
            scores.append(w)
        for d, p, lw in lm_out[q]:
            ek = (loc, p)
            if ek not in enter_cache:
                enter_cache[ek] = topo.enter(loc, p)
            for (nphone, nkind), pdf, w in enter_cache[ek]:
                arcs.append((i, state_id((d, nphone, nkind)), pdf))
                scores.append(lw + w)
        i += 1
    final = [lm_final[q] if kind in topo.final_kinds else NEG_INF for q, _, kind in keys]
    fsa = Fsa(
        torch.tensor(arcs, dtype=torch.long).reshape(-1, 3),
        torch.tensor(scores, dtype=torch.float64),
        torch.tensor(final, dtype=torch.float64),
    )
    return fsa.connect()
