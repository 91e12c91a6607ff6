"""A Whisper encoder window shorter than 30 s: positional embeddings sliced, stored in the config.

Whisper's encoder takes ``2 * max_source_positions`` log-mel frames (3000 = 30 s at 100 frames a
second) and its cost grows with that length whatever the speech lasts. Short-utterance corpora can
use a shorter window: keep the first ``50 * seconds`` encoder positional embeddings and set
``config.max_source_positions`` to that number. The window then travels with the saved model's
``config.json``, and training and decoding (:func:`speechkd.whisper.data.encoder_num_frames`) pad
to the same length.
"""

from __future__ import annotations

import torch

from speechkd.errors import ConfigError

POSITIONS_PER_SECOND = 50  # 100 log-mel frames a second, halved by the stride-2 convolution


def window_positions(seconds: float) -> int:
    """Encoder positions of a ``seconds`` window; ``ConfigError`` unless a positive whole count."""
    positions = seconds * POSITIONS_PER_SECOND
    if not isinstance(seconds, int | float) or seconds <= 0 or positions != int(positions):
        raise ConfigError(
            f"encoder window {seconds!r} s: must be positive and a multiple of "
            f"{1 / POSITIONS_PER_SECOND} s"
        )
    return int(positions)


def encoder_window_seconds(config) -> float:
    """The encoder window of a ``WhisperConfig`` in seconds (30.0 for OpenAI's models)."""
    return int(config.max_source_positions) / POSITIONS_PER_SECOND


def set_encoder_window(model, seconds: float) -> None:
    """Shrink the encoder of ``model`` (a transformers Whisper model) to a ``seconds`` window."""
    positions = window_positions(seconds)
    whisper = model.model if hasattr(model, "model") else model
    encoder = whisper.encoder
    current = encoder.embed_positions.weight.shape[0]
    if positions > current:
        raise ConfigError(
            f"encoder window {seconds} s needs {positions} positions; the model has {current} "
            f"({current / POSITIONS_PER_SECOND} s)"
        )
    if positions == current:
        return
    old = encoder.embed_positions
    new = torch.nn.Embedding(positions, old.weight.shape[1], dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[:positions])
    new.weight.requires_grad_(old.weight.requires_grad)
    encoder.embed_positions = new
    model.config.max_source_positions = positions
    if encoder.config is not model.config:
        encoder.config.max_source_positions = positions
    if hasattr(encoder, "max_source_positions"):
        encoder.max_source_positions = positions
