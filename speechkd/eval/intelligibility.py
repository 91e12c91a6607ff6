"""Intelligibility probe: a small CTC recogniser trained from scratch on a corpus's fbank cuts.

If synthetic speech is intelligible, a small model trained on some speakers reaches a low error
rate on held-out speakers and sentences. Characters of the normalised transcript are the units,
so no lexicon or tokenizer is involved.
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

from speechkd.errors import DataError

logger = logging.getLogger(__name__)
BLANK = "<blk>"


def normalise_for_probe(text: str) -> str:
    """Lower-case, drop punctuation, collapse spaces (characters are the probe's units)."""
    kept = [ch if not unicodedata.category(ch).startswith("P") else " " for ch in text.lower()]
    return " ".join("".join(kept).split())


@dataclass
class ProbeConfig:
    hidden: int = 160
    layers: int = 2
    epochs: int = 15
    lr: float = 2e-3
    max_frames: int = 20000
    seed: int = 0


class CtcProbe(nn.Module):
    """Conv2d subsampling (x4) followed by a bidirectional LSTM and a CTC output layer."""

    def __init__(self, feature_dim: int, vocab_size: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.subsample = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2), nn.ReLU()
        )
        sub_dim = 32 * (((feature_dim - 1) // 2 - 1) // 2)
        self.rnn = nn.LSTM(
            sub_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True, dropout=0.1
        )
        self.output = nn.Linear(2 * hidden, vocab_size)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return ((lengths - 1) // 2 - 1) // 2

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.subsample(feats.unsqueeze(1))  # B, C, T', F'
        x = x.permute(0, 2, 1, 3).flatten(2)
        out_lengths = self.output_lengths(lengths)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, out_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True)
        return self.output(y).log_softmax(-1), out_lengths


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


def _collate(batch: list, vocab: dict[str, int], mean: np.ndarray, std: np.ndarray):
    lengths = torch.tensor([ex[1].shape[0] for ex in batch])
    feats = torch.zeros(len(batch), int(lengths.max()), batch[0][1].shape[1])
    for i, ex in enumerate(batch):
        feats[i, : ex[1].shape[0]] = torch.from_numpy((ex[1] - mean) / std)
    targets = [torch.tensor([vocab[c] for c in ex[2] if c in vocab]) for ex in batch]
    return feats, lengths, targets


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, symbols: list[str]) -> list[str]:
    """Best-path CTC decoding: collapse repeats, drop blanks."""
    texts = []
    for row, length in zip(log_probs.argmax(-1), lengths, strict=True):
        ids = torch.unique_consecutive(row[: int(length)]).tolist()
        texts.append("".join(symbols[i] for i in ids if i != 0))
    return [" ".join(t.split()) for t in texts]


def train_and_decode(
    train: CutSet, tests: dict[str, CutSet], config: ProbeConfig
) -> dict[str, list[tuple[str, str, str]]]:
    """Train the probe on ``train``; return (id, reference, hypothesis) per test set."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    train_ex = load_examples(train)
    symbols = [BLANK, *sorted({c for _, _, t, _ in train_ex for c in t})]
    vocab = {s: i for i, s in enumerate(symbols)}
    stacked = np.concatenate([ex[1] for ex in train_ex])
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
    model = CtcProbe(train_ex[0][1].shape[1], len(symbols), config.hidden, config.layers)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    steps_per_epoch = len(_batches(train_ex, config.max_frames, None))
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / (0.1 * total)) * 0.5 * (1 + math.cos(math.pi * s / total)),
    )
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for batch in _batches(train_ex, config.max_frames, rng):
            feats, lengths, targets = _collate(batch, vocab, mean, std)
            log_probs, out_lengths = model(feats, lengths)
            loss = ctc(
                log_probs.transpose(0, 1),
                torch.cat(targets),
                out_lengths,
                torch.tensor([len(t) for t in targets]),
            )
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            sched.step()
            losses.append(loss.item())
        logger.info("epoch %d/%d: CTC loss %.3f", epoch + 1, config.epochs, float(np.mean(losses)))
    model.eval()
    results: dict[str, list[tuple[str, str, str, str | None]]] = {}
    with torch.no_grad():
        for name, cuts in tests.items():
            rows = []
            for batch in _batches(load_examples(cuts), config.max_frames, None):
                feats, lengths, _ = _collate(batch, vocab, mean, std)
                log_probs, out_lengths = model(feats, lengths)
                hyps = greedy_decode(log_probs, out_lengths, symbols)
                rows.extend((ex[0], ex[2], hyp, ex[3]) for ex, hyp in zip(batch, hyps, strict=True))
            results[name] = sorted(rows)
    return results
