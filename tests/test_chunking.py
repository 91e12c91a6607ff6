"""speechkd.chunk_mask: the chunk-transformer attention mask with a bounded history."""

from __future__ import annotations

import math

import pytest
import torch

import speechkd
from speechkd.chunking import chunk_mask
from speechkd.errors import ConfigError


def brute_force(num_frames: int, chunk: float, history: float) -> torch.Tensor:
    out = torch.zeros(num_frames, num_frames, dtype=torch.bool)
    for i in range(num_frames):
        start = math.floor(i / chunk) * chunk if chunk != math.inf else 0
        end = start + chunk
        for j in range(num_frames):
            out[i, j] = start - history <= j < end
    return out


@pytest.mark.parametrize("num_frames", [0, 1, 5, 12, 13, 50])
@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 48])
@pytest.mark.parametrize("history", [0, 1, 4, 5, 9, 600])
def test_matches_brute_force(num_frames: int, chunk: int, history: int) -> None:
    got = chunk_mask(num_frames, chunk, history)
    assert got.dtype == torch.bool and got.shape == (num_frames, num_frames)
    assert torch.equal(got, brute_force(num_frames, chunk, history))


def test_public_api_and_example() -> None:
    assert speechkd.chunk_mask is chunk_mask and "chunk_mask" in speechkd.__all__
    # chunk 3, history 2: frame 4 is in chunk [3, 6) and sees 2 frames before it
    expected = [
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1],
    ]
    assert chunk_mask(7, 3, 2).int().tolist() == expected


def test_paper_setting_history_600_chunk_48() -> None:
    mask = chunk_mask(1000, 48, 600)
    row = mask[700]  # chunk [672, 720): keys 72 .. 719
    assert row.nonzero().flatten().tolist() == list(range(72, 720))
    assert mask[100].nonzero().flatten().tolist() == list(range(0, 144))
    # a partial last chunk [960, 1000) looks ahead only to the end
    assert mask[999].nonzero().flatten().tolist() == list(range(360, 1000))


def test_history_zero_is_block_diagonal() -> None:
    mask = chunk_mask(10, 4, 0)
    blocks = torch.block_diag(torch.ones(4, 4), torch.ones(4, 4), torch.ones(2, 2)).bool()
    assert torch.equal(mask, blocks)


@pytest.mark.parametrize("full", [None, math.inf])
def test_infinite_chunk_is_full_context(full) -> None:
    assert chunk_mask(9, full, 3).all()
    assert chunk_mask(9, full, full).all()


@pytest.mark.parametrize("unbounded", [None, math.inf])
def test_infinite_history_sees_everything_before(unbounded) -> None:
    mask = chunk_mask(10, 4, unbounded)
    assert torch.equal(mask, brute_force(10, 4, math.inf))
    assert mask[9].all() and not mask[0, 4:].any()


@pytest.mark.parametrize(
    ("chunk", "history", "name"),
    [
        (0, 4, "chunk"),
        (-2, 4, "chunk"),
        (2.5, 4, "chunk"),
        (True, 4, "chunk"),
        ("4", 4, "chunk"),
        (-math.inf, 4, "chunk"),
        (4, -1, "history"),
        (4, 1.5, "history"),
        (4, math.nan, "history"),
    ],
)
def test_invalid_sizes_name_the_argument(chunk, history, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        chunk_mask(8, chunk, history)


def test_invalid_num_frames() -> None:
    with pytest.raises(ConfigError, match="num_frames"):
        chunk_mask(-1, 4, 2)
