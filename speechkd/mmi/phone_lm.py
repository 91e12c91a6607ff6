"""Phone language models for denominator graphs, estimated in the style of Kaldi's chain LM.

:class:`PhoneLmEstimator` follows the semantics of Kaldi's ``chain-est-phone-lm``
(``src/chain/language-model.{h,cc}``):

* n-gram counts of order ``ngram_order`` (default 4). A sentence starts in the history ``[BOS]``
  and its end is counted as a symbol ``EOS`` that becomes the final weight, so the LM is an
  acceptor of whole sentences: start state = the history ``[BOS]``, final weight of a state =
  P(end of sentence | history). Histories keep at most ``ngram_order - 1`` symbols (BOS included).
* No smoothing: a state only has arcs for the phones seen after its histories, with maximum
  likelihood probabilities ``count(h, p) / count(h)``. Arcs and the final weight of every state sum
  to one, and there are no back-off (epsilon) arcs: the result is an epsilon-free, deterministic,
  stochastic acceptor. Unseen n-grams have probability 0 (perplexity on held-out text can be
  infinite; :func:`perplexity` reports the covered part and the number of zero-probability
  sentences).
* Hard back-off: histories shorter than ``no_prune_ngram_order`` symbols (default
  ``min(3, ngram_order)``; BOS counts as a symbol) are never removed. Longer histories are removed
  ("backed off") greedily, smallest likelihood loss first (the loss of merging a state's counts
  into those of its history without the oldest phone), until ``num_extra_states`` states are left
  beyond the number of histories of length ``no_prune_ngram_order - 1`` (Kaldi's C++ default is
  1000 extra states; ``steps/nnet3/chain/train.py`` passes 2000, the default here). A removed
  state's counts move to its back-off state, and arcs that would have entered it enter the longest
  kept suffix of its history instead. A state may only be removed when no longer history
  extending it keeps counts and no surviving state needs its leftmost phone to choose an arc
  target; the removal runs in four stages with a fresh priority queue each, as in Kaldi.

Phones are the ids ``1 .. N`` of ``phones.txt`` (:mod:`speechkd.mmi.lexicon`; 0 is epsilon
there and BOS/EOS here, as in Kaldi), the phone labels that
:func:`speechkd.mmi.topology.compose_lm_topology` expects. The output
:class:`~speechkd.mmi.fsa.Fsa` has labels = phone ids, start state 0 = the ``[BOS]`` state and
natural-log weights; write it with ``to_openfst(label_offset=0)`` to keep the ``phones.txt`` ids.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.fsa import Fsa

logger = logging.getLogger(__name__)

_BOS_EOS = 0


@dataclass
class _LmState:
    history: tuple[int, ...]
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    total_with_descendants: int = 0
    backoff: int = -1
    backoff_allowed: bool = False
    fst_state: int = -1

    def add_count(self, symbol: int, count: int) -> None:
        self.counts[symbol] = self.counts.get(symbol, 0) + count
        self.total += count

    def log_like(self) -> float:
        total = self.total
        return sum(c * math.log(c / total) for c in self.counts.values())


@dataclass
class PhoneLmStats:
    """Size and training-data fit of an estimated phone LM."""

    num_states: int
    num_arcs: int
    max_phone: int
    num_sentences: int
    num_tokens: int
    train_perplexity: float
    initial_states: int
    basic_states: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


class PhoneLmEstimator:
    """Accumulate phone sequences with :meth:`add_counts`, then :meth:`estimate` an ``Fsa``."""

    def __init__(
        self,
        ngram_order: int = 4,
        num_extra_states: int = 2000,
        no_prune_ngram_order: int | None = None,
    ) -> None:
        if ngram_order < 2:
            raise ConfigError(f"ngram_order={ngram_order}: must be >= 2")
        if no_prune_ngram_order is None:
            no_prune_ngram_order = min(3, ngram_order)
        if not 1 <= no_prune_ngram_order <= ngram_order:
            raise ConfigError(
                f"no_prune_ngram_order={no_prune_ngram_order}: must be in 1..ngram_order "
                f"({ngram_order})"
            )
        if num_extra_states < 0:
            raise ConfigError(f"num_extra_states={num_extra_states}: must be >= 0")
        self.ngram_order = ngram_order
        self.num_extra_states = num_extra_states
        self.no_prune_ngram_order = no_prune_ngram_order
        self._states: list[_LmState] = []
        self._index: dict[tuple[int, ...], int] = {}
        self._num_active = 0
        self._num_sentences = 0
        self._max_phone = 0
        self._estimated = False
        #: after :meth:`estimate`: the history of each FST state (phone ids, 0 for BOS)
        self.histories: list[tuple[int, ...]] = []

    # ---------------------------------------------------------------- counting
    def _find_or_create(self, hist: tuple[int, ...]) -> int:
        index = self._index.get(hist)
        if index is not None:
            return index
        index = len(self._states)
        self._states.append(_LmState(hist))
        self._index[hist] = index
        if len(hist) >= self.no_prune_ngram_order:
            self._states[index].backoff = self._find_or_create(hist[1:])
        return index

    def _increment(self, hist: tuple[int, ...], symbol: int) -> None:
        state = self._states[self._find_or_create(hist)]
        if state.total == 0:
            self._num_active += 1
        state.add_count(symbol, 1)

    def add_counts(self, phones: Sequence[int]) -> None:
        """Count the n-grams of one sentence of phone ids (``>= 1``)."""
        if self._estimated:
            raise ConfigError("PhoneLmEstimator: add_counts after estimate")
        hist: tuple[int, ...] = (_BOS_EOS,)
        for phone in phones:
            symbol = int(phone)
            if symbol < 1:
                raise DataError(f"phone id {symbol}: phone ids start at 1 (0 is BOS/EOS)")
            self._max_phone = max(self._max_phone, symbol)
            self._increment(hist, symbol)
            hist = hist + (symbol,)
            if len(hist) >= self.ngram_order:
                hist = hist[1:]
        self._increment(hist, _BOS_EOS)
        self._num_sentences += 1

    # ---------------------------------------------------------------- hard back-off
    def _set_descendant_counts(self) -> None:
        for index, state in enumerate(self._states):
            count = state.total
            while index != -1:
                self._states[index].total_with_descendants += count
                index = self._states[index].backoff

    def _backoff_allowed(self, index: int) -> bool:
        state = self._states[index]
        if len(state.history) < self.no_prune_ngram_order:
            return False
        if state.total == 0 or state.total != state.total_with_descendants:
            return False  # empty, or a longer history still keeps counts of its own
        if len(state.history) == self.ngram_order - 1:
            return True
        for symbol in state.counts:
            if symbol != _BOS_EOS:
                nxt = self._index.get(state.history + (symbol,))
                if nxt is not None and self._states[nxt].total_with_descendants != 0:
                    return False  # a transition needs this state's full history
        return True

    def _backoff_loss(self, index: int) -> float:
        """Log-likelihood change (<= 0) of merging a state into its back-off state."""
        state = self._states[index]
        parent = self._states[state.backoff]
        if parent.total == 0:
            return -1.0e-15 * state.total  # free; the smallest state goes first
        merged = _LmState(parent.history, dict(parent.counts), parent.total)
        for symbol, count in state.counts.items():
            merged.add_count(symbol, count)
        change = merged.log_like() - state.log_like() - parent.log_like()
        return min(change, 0.0)

    def _back_off(self, index: int, queue: list) -> None:
        state = self._states[index]
        parent_index = state.backoff
        parent = self._states[parent_index]
        parent_was_allowed = parent.backoff_allowed
        if parent.total != 0:
            self._num_active -= 1
        for symbol, count in state.counts.items():
            parent.add_count(symbol, count)
        state.counts = {}
        state.total = 0
        state.total_with_descendants = 0
        state.backoff_allowed = False
        parent.backoff_allowed = self._backoff_allowed(parent_index)
        if parent.backoff_allowed and not parent_was_allowed:
            loss = self._backoff_loss(parent_index)
            heapq.heappush(queue, (-loss, -parent_index))

    def _do_backoff(self, num_basic: int) -> None:
        initial = self._num_active
        target = num_basic + self.num_extra_states
        for stage in range(1, 5):
            # integer division truncating towards zero, as in C++
            stage_target = initial + int((target - initial) * stage / 4)
            queue: list[tuple[float, int]] = []
            for index in range(len(self._states)):
                allowed = self._backoff_allowed(index)
                self._states[index].backoff_allowed = allowed
                if allowed:
                    queue.append((-self._backoff_loss(index), -index))
            heapq.heapify(queue)
            while self._num_active > stage_target and queue:
                neg_loss, neg_index = heapq.heappop(queue)
                loss = self._backoff_loss(-neg_index)
                if loss != -neg_loss:  # stale: the back-off state changed meanwhile
                    heapq.heappush(queue, (-loss, neg_index))
                else:
                    self._back_off(-neg_index, queue)
        logger.info(
            "phone LM hard back-off: target %d basic + %d extra = %d states; %d -> %d states",
            num_basic, self.num_extra_states, target, initial, self._num_active,
        )  # fmt: skip

    def _find_nonzero(self, hist: tuple[int, ...]) -> int:
        while True:
            index = self._index.get(hist)
            if index is not None and self._states[index].total != 0:
                return index
            if not hist:
                raise AssertionError("phone LM: no state with counts for a history")
            hist = hist[1:]

    # ---------------------------------------------------------------- output
    def estimate(self) -> tuple[Fsa, PhoneLmStats]:
        """Prune and return ``(lm, stats)``; the estimator cannot be used afterwards."""
        if self._num_sentences == 0:
            raise DataError("phone LM: no sentences were counted")
        if self._estimated:
            raise ConfigError("PhoneLmEstimator.estimate called twice")
        self._estimated = True
        self._set_descendant_counts()
        initial = self._num_active
        num_basic = sum(1 for s in self._states if len(s.history) == self.no_prune_ngram_order - 1)
        self._do_backoff(num_basic)

        start = self._find_nonzero((_BOS_EOS,))
        active = [start] + [i for i, s in enumerate(self._states) if s.total != 0 and i != start]
        for fst_state, index in enumerate(active):
            self._states[index].fst_state = fst_state
        self.histories = [self._states[i].history for i in active]
        src: list[int] = []
        dst: list[int] = []
        labels: list[int] = []
        scores: list[float] = []
        final = [-math.inf] * len(active)
        tot_logprob, tot_count = 0.0, 0
        for index in active:
            state = self._states[index]
            for symbol in sorted(state.counts):
                count = state.counts[symbol]
                logprob = math.log(count / state.total)
                tot_logprob += count * logprob
                tot_count += count
                if symbol == _BOS_EOS:
                    final[state.fst_state] = logprob
                else:
                    dest = self._find_nonzero(state.history + (symbol,))
                    src.append(state.fst_state)
                    dst.append(self._states[dest].fst_state)
                    labels.append(symbol)
                    scores.append(logprob)
        arcs = torch.tensor([src, dst, labels], dtype=torch.long).T.reshape(-1, 3)
        lm = Fsa(
            arcs,
            torch.tensor(scores, dtype=torch.float64),
            torch.tensor(final, dtype=torch.float64),
        )
        stats = PhoneLmStats(
            num_states=len(active),
            num_arcs=len(src),
            max_phone=self._max_phone,
            num_sentences=self._num_sentences,
            num_tokens=tot_count,
            train_perplexity=math.exp(-tot_logprob / tot_count),
            initial_states=initial,
            basic_states=num_basic,
        )
        logger.info(
            "phone LM (order %d): %d states, %d arcs, %d sentences, %d tokens (with end of "
            "sentence), training perplexity %.3f",
            self.ngram_order, stats.num_states, stats.num_arcs, stats.num_sentences,
            stats.num_tokens, stats.train_perplexity,
        )  # fmt: skip
        return lm, stats


def estimate_phone_lm(
    sentences: Iterable[Sequence[int]],
    ngram_order: int = 4,
    num_extra_states: int = 2000,
    no_prune_ngram_order: int | None = None,
) -> tuple[Fsa, PhoneLmStats]:
    """Estimate a Kaldi chain-style phone LM from phone-id sequences (see the module docstring)."""
    estimator = PhoneLmEstimator(ngram_order, num_extra_states, no_prune_ngram_order)
    for sentence in sentences:
        estimator.add_counts(sentence)
    return estimator.estimate()


# -------------------------------------------------------------------- checks and evaluation
def stochasticity_error(lm: Fsa) -> float:
    """max over states of |logsumexp(outgoing arc log weights, final log weight)|."""
    num_states = lm.num_states
    totals = torch.full((num_states,), -math.inf, dtype=torch.float64)
    if lm.num_arcs:
        sums = torch.zeros(num_states, dtype=torch.float64)
        peak = torch.full((num_states,), -math.inf, dtype=torch.float64)
        peak = peak.scatter_reduce(0, lm.src, lm.scores, reduce="amax")
        peak = torch.maximum(peak, lm.final)
        safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        sums.index_add_(0, lm.src, torch.exp(lm.scores - safe[lm.src]))
        sums += torch.exp(lm.final - safe)
        totals = torch.log(sums) + safe
    else:
        totals = lm.final.clone()
    return float(totals.abs().max())


def is_stochastic(lm: Fsa, tol: float = 1e-6) -> bool:
    """True when every state's outgoing probability plus final probability is 1 (to ``tol``)."""
    return stochasticity_error(lm) <= tol


class _LmScorer:
    """Log probability of label sequences under an acceptor (forward algorithm, log semiring)."""

    def __init__(self, lm: Fsa) -> None:
        self.final = lm.final.tolist()
        self.arcs: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for (s, d, lab), w in zip(lm.arcs.tolist(), lm.scores.tolist(), strict=True):
            self.arcs.setdefault((s, lab), []).append((d, w))

    def log_prob(self, labels: Sequence[int]) -> float:
        active = {0: 0.0}
        for lab in labels:
            nxt: dict[int, float] = {}
            for s, w in active.items():
                for d, aw in self.arcs.get((s, int(lab)), ()):
                    nxt[d] = _log_add(nxt.get(d, -math.inf), w + aw)
            if not nxt:
                return -math.inf
            active = nxt
        total = -math.inf
        for s, w in active.items():
            total = _log_add(total, w + self.final[s])
        return total


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def sequence_log_prob(lm: Fsa, labels: Sequence[int]) -> float:
    """Natural-log probability of a whole sentence (final weight included)."""
    return _LmScorer(lm).log_prob(labels)


@dataclass
class PerplexityResult:
    """Perplexity per token (phones + end of sentence) over the sentences with nonzero probability.

    ``zero_prob_sentences`` counts sentences the (unsmoothed) LM cannot produce; their tokens are
    excluded from ``perplexity``.
    """

    perplexity: float
    sentences: int
    tokens: int
    zero_prob_sentences: int
    zero_prob_tokens: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def perplexity(lm: Fsa, sentences: Iterable[Sequence[int]]) -> PerplexityResult:
    """Perplexity of ``lm`` on phone-id sentences (see :class:`PerplexityResult`)."""
    scorer = _LmScorer(lm)
    tot, tokens, n, zero_s, zero_t = 0.0, 0, 0, 0, 0
    for sentence in sentences:
        n += 1
        logp = scorer.log_prob(sentence)
        if logp == -math.inf:
            zero_s += 1
            zero_t += len(sentence) + 1
        else:
            tot += logp
            tokens += len(sentence) + 1
    ppl = math.exp(-tot / tokens) if tokens else math.inf
    return PerplexityResult(ppl, n, tokens, zero_s, zero_t)
