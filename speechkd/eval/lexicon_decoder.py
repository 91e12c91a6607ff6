"""Word-level CTC decoding with a lexicon and a word n-gram LM, and a word n-gram LM trainer.

Decoding: :class:`CtcLexiconDecoder` wraps flashlight-text's ``LexiconDecoder`` (the beam search
of wav2letter/flashlight that fairseq's ``--w2l-decoder kenlm`` and torchaudio's ``ctc_decoder``
use): token passing over a lexicon prefix tree of unit spellings, with LM look-ahead (the best
unigram score below a tree node, "smearing"), ``lm_weight``, ``word_score`` (added per word),
``sil_score``, a beam size, a per-frame token beam and a score threshold. The LM is an ARPA file
read by KenLM (bundled in the flashlight-text wheel) or, without one, no LM (lexicon-constrained
decoding only). LM scores are log10 probabilities, as in fairseq/torchaudio/wav2letter, so their
``lm_weight`` values carry over; acoustic scores are natural-log CTC posteriors.

flashlight emits a word when the last unit of its spelling is consumed and returns to the tree
root, where staying costs the silence unit's score; a CTC model often repeats the last unit for a
few frames, which would then be charged at the silence/blank score. Every spelling is therefore
also inserted followed by the blank (and by the silence unit when that is a real unit such as
``|``), so that repeats of the last unit are absorbed inside the word, as CTC allows, when a
blank, the silence unit or the end of the utterance follows (a virtual blank frame is appended).
A repeat directly followed by the first unit of the next word is still charged at the blank's
score (a limit of flashlight's token passing, shared by fairseq and torchaudio).

LM training: :func:`train_arpa_lm` estimates an interpolated modified Kneser-Ney word n-gram LM
(Chen & Goodman; the method of KenLM's ``lmplz`` and SRILM's ``-kndiscount -interpolate``) from
sentences and writes it as ARPA text (:func:`write_arpa_lm`), readable by KenLM and by
:class:`speechkd.mmi.arpa.ArpaModel`. Words outside ``vocabulary`` become ``<unk>``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.eval.ctc_decode import WORD_BOUNDARY, UnitTable
from speechkd.mmi.lexicon import Lexicon
from speechkd.mmi.text_to_phones import iter_text_lines, split_words
from speechkd.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
ZERO_LOG10 = -99.0
FLASHLIGHT_PIN = "flashlight-text==0.0.7"
_NO_SCORE = -1e10


# --------------------------------------------------------------------------- decoding
@dataclass
class LexiconDecoderConfig:
    """Beam-search options (names and defaults as torchaudio's ``ctc_decoder``)."""

    beam: int = 50
    beam_size_token: int | None = None  # None: all units
    beam_threshold: float = 25.0
    lm_weight: float = 2.0
    word_score: float = 0.0
    sil_score: float = 0.0
    unk_score: float = float("-inf")
    log_add: bool = False
    nbest: int = 1

    def check(self) -> None:
        if self.beam < 1:
            raise ConfigError(f"beam must be >= 1, got {self.beam}")
        if self.beam_size_token is not None and self.beam_size_token < 1:
            raise ConfigError(f"beam_size_token must be >= 1, got {self.beam_size_token}")
        if not self.beam_threshold > 0:
            raise ConfigError(f"beam_threshold must be > 0, got {self.beam_threshold}")
        if self.nbest < 1:
            raise ConfigError(f"nbest must be >= 1, got {self.nbest}")


@dataclass(frozen=True)
class WordHypothesis:
    """A decoded word sequence with its total, acoustic and LM scores."""

    words: tuple[str, ...]
    score: float
    am_score: float
    lm_score: float

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _flashlight():
    try:
        from flashlight.lib.text import decoder
        from flashlight.lib.text.dictionary import Dictionary
    except ImportError as exc:  # pragma: no cover - a pinned requirement
        raise ConfigError(
            f"lexicon decoding needs flashlight-text (pip install {FLASHLIGHT_PIN}): {exc}"
        ) from None
    return decoder, Dictionary


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture what C++ code writes to file descriptor 2 (KenLM's progress bar)."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def load_kenlm(path: str | os.PathLike, word_dict):
    """A flashlight ``KenLM`` over ``word_dict`` from an ARPA (or KenLM binary) file."""
    from flashlight.lib.text.decoder.kenlm import KenLM

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: language model not found")
    with _captured_stderr() as messages:
        try:
            lm = KenLM(str(path), word_dict)
        except RuntimeError as exc:
            raise DataError(f"{path}: KenLM cannot read this LM ({exc})") from None
    if messages and messages[0].strip():
        logger.debug("KenLM on %s: %s", path, messages[0].strip())
    return lm


def resolve_silence(table: UnitTable, sil_token: str | None) -> int:
    """The silence/word-boundary unit id: ``sil_token``, else ``|`` if a unit, else the blank
    (then staying between words is scored as blank frames)."""
    if sil_token is not None:
        index = table.index(sil_token)
        if index is None:
            raise ConfigError(f"silence unit {sil_token!r} is not one of the model's units")
        return index
    index = table.index(WORD_BOUNDARY)
    return table.blank if index is None else index


class CtcLexiconDecoder:
    """Lexicon + word LM beam search over CTC log-posteriors (flashlight ``LexiconDecoder``).

    ``table``: the model's units and blank; ``lexicon``: word → unit spellings (words with a unit
    the model lacks are left out, with a warning); ``lm``: an ARPA/KenLM file or None (no LM);
    ``sil_token``: see :func:`resolve_silence`.
    """

    def __init__(
        self,
        table: UnitTable,
        lexicon: Lexicon,
        lm: str | os.PathLike | None = None,
        config: LexiconDecoderConfig | None = None,
        sil_token: str | None = None,
    ) -> None:
        decoder, Dictionary = _flashlight()
        self.table = table
        self.config = config or LexiconDecoderConfig()
        self.config.check()
        self.blank = table.blank
        self.sil = resolve_silence(table, sil_token)
        unit_index: dict[str, int] = {}
        for i, s in enumerate(table.symbols):
            unit_index.setdefault(s, i)
        spellings: dict[str, list[list[int]]] = {}
        skipped: Counter = Counter()
        for word, prons in lexicon.entries.items():
            if word in (BOS, EOS, UNK):
                continue
            ids = []
            for pron in prons:
                missing = [u for u in pron if u not in unit_index]
                if missing:
                    skipped.update(missing)
                    continue
                ids.append([unit_index[u] for u in pron])
            if ids:
                spellings[word] = ids
        if skipped:
            logger.warning(
                "lexicon: pronunciations with units the model lacks were left out (units: %s)",
                ", ".join(f"{u!r}x{n}" for u, n in skipped.most_common(10)),
            )
        if not spellings:
            raise DataError("lexicon: no word can be spelled with the model's units")
        self.words = [*spellings, UNK]
        self.word_dict = Dictionary(self.words)
        self.unk = self.word_dict.get_index(UNK)
        self.word_dict.set_default_index(self.unk)
        self.lm = decoder.ZeroLM() if lm is None else load_kenlm(lm, self.word_dict)
        self.trie = decoder.Trie(len(table), self.sil)
        start = self.lm.start(False)
        endings = [[]] + [[u] for u in dict.fromkeys((self.blank, self.sil))]
        for word, ids in spellings.items():
            index = self.word_dict.get_index(word)
            _, score = self.lm.score(start, index)
            for spelling in ids:
                for end in endings:
                    self.trie.insert(spelling + end, index, score)
        self.trie.smear(decoder.SmearingMode.MAX)
        c = self.config
        options = decoder.LexiconDecoderOptions(
            beam_size=c.beam,
            beam_size_token=c.beam_size_token or len(table),
            beam_threshold=c.beam_threshold,
            lm_weight=c.lm_weight,
            word_score=c.word_score,
            unk_score=c.unk_score,
            sil_score=c.sil_score,
            log_add=c.log_add,
            criterion_type=decoder.CriterionType.CTC,
        )
        self.decoder = decoder.LexiconDecoder(
            options, self.trie, self.lm, self.sil, self.blank, self.unk, [], False
        )
        logger.info(
            "lexicon decoder: %d words, %d units, blank %r, silence %r, LM %s",
            len(spellings), len(table), table.symbols[self.blank], table.symbols[self.sil],
            lm if lm is not None else "none",
        )  # fmt: skip

    def decode_utterance(self, log_probs: torch.Tensor) -> list[WordHypothesis]:
        """The n-best word sequences of one utterance's log-posteriors [T, V]."""
        if log_probs.dim() != 2 or log_probs.shape[1] != len(self.table):
            raise DataError(
                f"lexicon decoder: expected log-probs [T, {len(self.table)}], "
                f"got {tuple(log_probs.shape)}"
            )
        frames, units = log_probs.shape
        if frames == 0:
            return [WordHypothesis((), 0.0, 0.0, 0.0)]
        # a last, virtual frame that is surely blank: a word whose last unit lasts to the end
        # leaves the tree through its blank ending (score 0 for every hypothesis)
        emissions = np.full((frames + 1, units), _NO_SCORE, dtype=np.float32)
        emissions[:frames] = log_probs.detach().float().cpu().numpy()
        emissions[frames, self.blank] = 0.0
        frames += 1
        results = self.decoder.decode(emissions.ctypes.data, frames, units)
        hyps = []
        for r in results[: self.config.nbest]:
            words = tuple(self.words[w] for w in r.words if w >= 0)
            hyps.append(WordHypothesis(words, r.score, r.emittingModelScore, r.lmScore))
        return hyps or [WordHypothesis((), float("-inf"), float("-inf"), 0.0)]

    def decode(
        self, log_probs: torch.Tensor, padding_mask: torch.Tensor | None = None
    ) -> list[str]:
        """Best word sequence per utterance of ``log_probs`` [B, T, V] (padded frames dropped)."""
        if log_probs.dim() != 3:
            raise DataError(f"lexicon decoder: expected [B, T, V], got {tuple(log_probs.shape)}")
        batch, frames = log_probs.shape[:2]
        lengths = (
            [frames] * batch if padding_mask is None else (~padding_mask.bool()).sum(-1).tolist()
        )
        return [self.decode_utterance(log_probs[b, : lengths[b]])[0].text for b in range(batch)]


# --------------------------------------------------------------------------- LM training
def read_lm_sentences(
    sources: Sequence[str | os.PathLike], lowercase: bool = True, strip_punctuation: bool = True
) -> list[list[str]]:
    """Sentences (word lists) of text files, split as the lexicon tools split text."""
    paths = [Path(p) for p in sources]
    sentences = []
    for _, line in iter_text_lines(paths):
        words = [w for w in split_words(line, lowercase, strip_punctuation) if w]
        if words:
            sentences.append(words)
    if not sentences:
        raise DataError(f"{', '.join(map(str, paths))}: no words to train a language model")
    return sentences


def _discounts(counts: Iterable[int], order: int) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from the counts of one order.

    When the count-of-counts are too few for valid estimates (tiny texts) one absolute discount
    ``Y = n1 / (n1 + 2 n2)`` (0.5 if undefined) is used for all counts.
    """
    coc = Counter(min(c, 4) for c in counts)
    n1, n2, n3, n4 = (coc.get(k, 0) for k in (1, 2, 3, 4))
    if n1 and n2:
        y = n1 / (n1 + 2 * n2)
    else:
        y = 0.5
    if n1 and n2 and n3 and n4:
        d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
        if all(0 < dk <= k + 1 for k, dk in enumerate(d)):
            return d
    y = min(max(y, 0.05), 0.95)
    logger.info("order %d: too few counts for modified Kneser-Ney; one discount %.3f", order, y)
    return (y, y, y)


def _fmt(x: float) -> str:
    return f"{x:.7g}"


def train_arpa_lm(
    sentences: Iterable[Sequence[str]], order: int = 4, vocabulary: Iterable[str] | None = None
) -> str:
    """An interpolated modified Kneser-Ney n-gram LM of ``sentences`` as ARPA text.

    Every sentence is ``<s> w1 .. wk </s>``; the unigram distribution is interpolated with a
    uniform one over the vocabulary (``</s>`` and ``<unk>`` included), so every word has a
    non-zero probability. Listed n-grams are those seen in the text; back-off weights are the
    interpolation weights, which makes the ARPA model equal the interpolated one.
    """
    if order < 1:
        raise ConfigError(f"LM order must be >= 1, got {order}")
    vocab = None if vocabulary is None else set(vocabulary)
    names: list[str] = [BOS, EOS, UNK]
    ids: dict[str, int] = {w: i for i, w in enumerate(names)}
    bos, eos = 0, 1
    counts: list[Counter] = [Counter() for _ in range(order + 1)]  # counts[n]: n-grams
    num_sentences = 0
    for sentence in sentences:
        seq = [bos]
        for w in sentence:
            if w in (BOS, EOS):
                raise DataError(f"LM text: the word {w!r} is reserved")
            if vocab is not None and w not in vocab:
                w = UNK
            i = ids.get(w)
            if i is None:
                i = ids[w] = len(names)
                names.append(w)
            seq.append(i)
        seq.append(eos)
        num_sentences += 1
        for n in range(1, order + 1):
            c = counts[n]
            for start in range(len(seq) - n + 1):
                if n == 1 and start == 0:
                    continue  # <s> is a context, never predicted
                c[tuple(seq[start : start + n])] += 1
    if not num_sentences:
        raise DataError("LM text: no sentences")
    top = max(n for n in range(1, order + 1) if counts[n])
    if top < order:
        logger.info("LM: no %d-grams in the text; order %d", order, top)
    # adjusted counts: continuation counts below the top order, except after <s>
    adjusted: list[dict[tuple[int, ...], int]] = [{} for _ in range(top + 1)]
    adjusted[top] = counts[top]
    for n in range(top - 1, 0, -1):
        cont: Counter = Counter(gram[1:] for gram in counts[n + 1])
        adjusted[n] = {g: (c if g[0] == bos else cont[g]) for g, c in counts[n].items()}
        del cont
    del counts
    discounts = [(0.0, 0.0, 0.0)] + [_discounts(adjusted[n].values(), n) for n in range(1, top + 1)]

    vocab_size = len(names) - 1  # everything but <s>
    prob: list[dict[tuple[int, ...], float]] = [{} for _ in range(top + 1)]
    gamma: list[dict[tuple[int, ...], float]] = [{} for _ in range(top + 1)]  # keyed by history
    for n in range(1, top + 1):
        d1, d2, d3 = discounts[n]
        totals: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
        for gram, a in adjusted[n].items():
            t = totals[gram[:-1]]
            t[0] += a
            t[min(a, 3)] += 1
        for hist, (s, k1, k2, k3) in totals.items():
            gamma[n][hist] = (d1 * k1 + d2 * k2 + d3 * k3) / s
        for gram, a in adjusted[n].items():
            hist = gram[:-1]
            d = d1 if a == 1 else d2 if a == 2 else d3
            lower = 1.0 / vocab_size if n == 1 else prob[n - 1][gram[1:]]
            prob[n][gram] = (a - d) / totals[hist][0] + gamma[n][hist] * lower
        if n == 1:
            for i in range(1, len(names)):  # unseen unigrams (<unk>): the uniform share
                prob[1].setdefault((i,), gamma[1][()] / vocab_size)

    lines = ["\\data\\"]
    sizes = [len(prob[1]) + 1] + [len(prob[n]) for n in range(2, top + 1)]
    lines += [f"ngram {n}={size}" for n, size in enumerate(sizes, start=1)]
    for n in range(1, top + 1):
        lines += ["", f"\\{n}-grams:"]
        entries = sorted(prob[n].items())
        if n == 1:
            entries = [((bos,), None), *entries]
        for gram, p in entries:
            logp = ZERO_LOG10 if p is None else math.log10(p)
            text = f"{_fmt(logp)}\t{' '.join(names[i] for i in gram)}"
            if n < top and gram in gamma[n + 1]:
                text += f"\t{_fmt(math.log10(gamma[n + 1][gram]))}"
            lines.append(text)
    lines += ["", "\\end\\", ""]
    logger.info(
        "LM: %d sentences, vocabulary %d, order %d, n-grams %s",
        num_sentences, vocab_size, top, " ".join(map(str, sizes)),
    )  # fmt: skip
    return "\n".join(lines)


def write_arpa_lm(
    path: str | os.PathLike,
    sentences: Iterable[Sequence[str]],
    order: int = 4,
    vocabulary: Iterable[str] | None = None,
) -> Path:
    """Train with :func:`train_arpa_lm` and write the ARPA file atomically."""
    path = Path(path)
    atomic_write_text(path, train_arpa_lm(sentences, order, vocabulary))
    return path
