"""Intelligibility probe: a small CTC recogniser trained from scratch on a corpus's fbank cuts.

If synthetic speech is intelligible, a small model trained on some speakers reaches a low error
rate on held-out speakers and sentences. Units are the characters of the normalised transcript
or, with a phone table, the espeak-ng phones of its words (then the error rate is a phone error
rate, free of spelling). The model is trained with CTC or, given a denominator graph of the same
phones (CTC topology), with LF-MMI.
"""

from __future__ import annotations

import logging
import math
import random
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch
from lhotse import CutSet
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.mmi import LFMMILoss, ctc_graph, occupation_posteriors
from speechkd.mmi.lexicon import EspeakPhonemizer, read_phone_table

logger = logging.getLogger(__name__)
BLANK = "<blk>"


def normalise_for_probe(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces (characters are the probe's units)."""
    kept = [ch if not unicodedata.category(ch).startswith("P") else " " for ch in text.lower()]
    return " ".join("".join(kept).split())


class Units:
    """The probe's output units: index 0 is the CTC blank, ``symbols[i]`` is unit ``i``."""

    def __init__(self, symbols: list[str], phonemizer=None, separator: str = "") -> None:
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols)}
        self.phonemizer = phonemizer
        self.separator = separator

    @classmethod
    def characters(cls, texts: list[str]) -> Units:
        return cls([BLANK, *sorted({c for t in texts for c in t})])

    @classmethod
    def character_table(cls, phones_txt: str, word_boundary: str = "|") -> Units:
        """Characters of a ``phones.txt`` made with ``--unit char`` (``word_boundary`` = space)."""
        chars = [" " if p == word_boundary else p for p in read_phone_table(phones_txt)]
        return cls([BLANK, *chars])

    @classmethod
    def espeak_phones(cls, phones_txt: str, voice: str) -> Units:
        """Phones of ``phones.txt`` (``<eps> 0``, phones from 1: pdf p = phone p, 0 = blank)."""
        phones = read_phone_table(phones_txt)
        return cls([BLANK, *phones], EspeakPhonemizer(voice), separator=" ")

    def prepare(self, texts: list[str]) -> None:
        """Phonemise every word of ``texts`` at once (one espeak-ng call per batch)."""
        if self.phonemizer is not None:
            self.phonemizer.phonemize({w for t in texts for w in t.split()})

    def reference(self, text: str) -> list[str]:
        """The unit sequence of a normalised transcript."""
        if self.phonemizer is None:
            return list(text)
        prons = self.phonemizer.phonemize(text.split())
        units = [p for word in text.split() for p in (prons[word][0] if prons[word] else ())]
        unknown = sorted({u for u in units if u not in self.index})
        if unknown:
            raise DataError(f"phones {unknown} of {text!r} are not in the phone table")
        return units

    def encode(self, units: list[str]) -> torch.Tensor:
        return torch.tensor([self.index[u] for u in units if u in self.index], dtype=torch.long)


@dataclass
class ProbeConfig:
    hidden: int = 256
    layers: int = 6
    epochs: int = 15
    lr: float = 2e-3
    max_frames: int = 20000
    seed: int = 0
    loss: str = "ctc"  # or "mmi" (needs a denominator graph)
    decode: str = "greedy"  # or "graph": frame posteriors under the denominator graph


class CtcProbe(nn.Module):
    """Convolutional CTC model: x4 subsampling, residual 1-D conv blocks, a CTC output layer.

    Convolutions keep CPU training fast (no recurrence over time); the receptive field of the
    blocks (about 0.8 s) covers several phones.
    """

    def __init__(self, feature_dim: int, vocab_size: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv1d(feature_dim, hidden, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(hidden, hidden, 5, padding=2),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Dropout(0.1),
            )
            for _ in range(layers)
        )
        self.output = nn.Linear(hidden, vocab_size)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        for _ in range(2):  # kernel 3, stride 2, padding 1
            lengths = (lengths - 1) // 2 + 1
        return lengths

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.subsample(feats.transpose(1, 2))  # B, C, T/4
        for block in self.blocks:
            x = x + block(x)
        return self.output(x.transpose(1, 2)).log_softmax(-1), self.output_lengths(lengths)


def load_examples(cuts: CutSet) -> list[tuple[str, np.ndarray, str, str | None]]:
    """(cut id, features, normalised text, language) of every cut; features must be stored."""
    examples = []
    for cut in cuts:
        if not cut.has_features:
            raise DataError(f"cut {cut.id}: no stored features (run the feature stage first)")
        text = normalise_for_probe(" ".join(s.text or "" for s in cut.supervisions))
        if not text:
            raise DataError(f"cut {cut.id}: empty transcript")
        examples.append((cut.id, cut.load_features(), text, cut.supervisions[0].language))
    return examples


def _batches(examples: list, max_frames: int, rng: random.Random | None) -> list[list]:
    order = sorted(range(len(examples)), key=lambda i: examples[i][1].shape[0])
    batches, current, longest = [], [], 0
    for i in order:
        frames = examples[i][1].shape[0]
        if current and max(longest, frames) * (len(current) + 1) > max_frames:
            batches.append(current)
            current, longest = [], 0
        current.append(examples[i])
        longest = max(longest, frames)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _collate(batch: list, mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([ex[1].shape[0] for ex in batch])
    feats = torch.zeros(len(batch), int(lengths.max()), batch[0][1].shape[1])
    for i, ex in enumerate(batch):
        feats[i, : ex[1].shape[0]] = torch.from_numpy((ex[1] - mean) / std)
    return feats, lengths


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, units: Units) -> list[str]:
    """Best-path CTC decoding: collapse repeats, drop blanks."""
    texts = []
    for row, length in zip(log_probs.argmax(-1), lengths, strict=True):
        ids = torch.unique_consecutive(row[: int(length)]).tolist()
        texts.append(units.separator.join(units.symbols[i] for i in ids if i != 0))
    return [" ".join(t.split()) for t in texts]


def _make_loss(config: ProbeConfig, den_graph):
    """A function (log_probs, out_lengths, targets) -> loss for ``config.loss``."""
    if config.loss == "ctc":
        ctc = nn.CTCLoss(blank=0, zero_infinity=True)

        def ctc_loss(log_probs, out_lengths, targets):
            target_lengths = torch.tensor([len(t) for t in targets])
            return ctc(log_probs.transpose(0, 1), torch.cat(targets), out_lengths, target_lengths)

        return ctc_loss
    if config.loss == "mmi":
        if den_graph is None:
            raise ConfigError("loss 'mmi' needs a denominator graph")
        mmi = LFMMILoss(den_graph, reduction="mean")

        def mmi_loss(log_probs, out_lengths, targets):
            out = mmi(log_probs, out_lengths, [ctc_graph(t.tolist()) for t in targets])
            return out.loss

        return mmi_loss
    raise ConfigError(f"probe loss must be 'ctc' or 'mmi', got {config.loss!r}")


def train_and_decode(
    train: CutSet,
    tests: dict[str, CutSet],
    config: ProbeConfig,
    units: Units | None = None,
    den_graph=None,
) -> dict[str, list[tuple[str, str, str, str | None]]]:
    """Train the probe on ``train``; return (id, reference, hypothesis, language) per test set.

    ``units`` defaults to the characters of the training transcripts; references and hypotheses
    are unit sequences (phones separated by spaces).
    """
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train_ex = load_examples(train)
    test_ex = {name: load_examples(cuts) for name, cuts in tests.items()}
    if units is None:
        units = Units.characters([ex[2] for ex in train_ex])
    units.prepare([ex[2] for ex in train_ex] + [ex[2] for exs in test_ex.values() for ex in exs])
    train_targets = {ex[0]: units.encode(units.reference(ex[2])) for ex in train_ex}
    stacked = np.concatenate([ex[1] for ex in train_ex])
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
    model = CtcProbe(train_ex[0][1].shape[1], len(units.symbols), config.hidden, config.layers)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    steps_per_epoch = len(_batches(train_ex, config.max_frames, None))
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / (0.1 * total)) * 0.5 * (1 + math.cos(math.pi * s / total)),
    )
    if config.decode not in ("greedy", "graph"):
        raise ConfigError(f"probe decode must be 'greedy' or 'graph', got {config.decode!r}")
    if config.decode == "graph" and den_graph is None:
        raise ConfigError("decode 'graph' needs a denominator graph")
    loss_fn = _make_loss(config, den_graph)
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for batch in _batches(train_ex, config.max_frames, rng):
            feats, lengths = _collate(batch, mean, std)
            log_probs, out_lengths = model(feats, lengths)
            loss = loss_fn(log_probs, out_lengths, [train_targets[ex[0]] for ex in batch])
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            sched.step()
            losses.append(loss.item())
        logger.info("epoch %d/%d: %s loss %.3f", epoch + 1, config.epochs, config.loss.upper(),
                    float(np.mean(losses)))  # fmt: skip
    model.eval()
    results: dict[str, list[tuple[str, str, str, str | None]]] = {}
    with torch.no_grad():
        for name, examples in test_ex.items():
            rows = []
            for batch in _batches(examples, config.max_frames, None):
                feats, lengths = _collate(batch, mean, std)
                log_probs, out_lengths = model(feats, lengths)
                if config.decode == "graph":
                    # frame posteriors under the denominator graph (unit LM x CTC topology): the
                    # decoder for LF-MMI outputs, which are pseudo log-likelihoods
                    _, log_probs = occupation_posteriors(den_graph, log_probs, out_lengths)
                hyps = greedy_decode(log_probs, out_lengths, units)
                for ex, hyp in zip(batch, hyps, strict=True):
                    ref = units.separator.join(units.reference(ex[2]))
                    rows.append((ex[0], ref, hyp, ex[3]))
            results[name] = sorted(rows)
    return results
