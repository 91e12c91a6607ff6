"""Chunk-wise self-attention masks (chunk transformer with a bounded history, Transformer-XL style).

Frame ``i`` belongs to chunk ``c = i // chunk`` and may attend every frame of its own chunk (the
chunk's future frames included: the look-ahead) and the ``history`` frames before the chunk's
first frame::

    c * chunk - history <= j < (c + 1) * chunk

``chunk`` or ``history`` given as ``None`` or ``math.inf`` is unbounded: an infinite chunk is the
full context (every entry True), an infinite history lets a chunk see everything before it.
"""

from __future__ import annotations

import math
import numbers

import torch

from speechkd.errors import ConfigError


def check_context_size(name: str, value: object, minimum: int) -> int | None:
    """``value`` as an int >= ``minimum``, or None for ``None`` / ``math.inf`` (unbounded)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}: expected an integer >= {minimum}, None or inf, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, None or inf, got {value}")
    return int(value)


def chunk_bounds(
    num_frames: int,
    chunk: int | float | None,
    history: int | float | None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) LongTensors[T]: frame ``i`` may attend ``lo[i] <= j < hi[i]`` (lo clipped at 0)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral):
        raise ConfigError(f"num_frames: expected an integer >= 0, got {num_frames!r}")
    if num_frames < 0:
        raise ConfigError(f"num_frames: expected an integer >= 0, got {num_frames}")
    chunk = check_context_size("chunk", chunk, 1)
    history = check_context_size("history", history, 0)
    idx = torch.arange(int(num_frames), device=device)
    if chunk is None:
        return torch.zeros_like(idx), torch.full_like(idx, int(num_frames))
    start = torch.div(idx, chunk, rounding_mode="floor") * chunk
    hi = (start + chunk).clamp(max=int(num_frames))
    lo = torch.zeros_like(idx) if history is None else (start - history).clamp(min=0)
    return lo, hi


def chunk_mask(
    num_frames: int,
    chunk: int | float | None,
    history: int | float | None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """BoolTensor[T, T], True where frame ``i`` (row) may attend frame ``j`` (column).

    ``chunk`` (frames, int > 0) and ``history`` (frames before the chunk start, int >= 0) may be
    ``None`` or ``math.inf`` for an unbounded size; other values raise a ConfigError.
    """
    lo, hi = chunk_bounds(num_frames, chunk, history, device)
    j = torch.arange(int(num_frames), device=lo.device)
    return (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])
