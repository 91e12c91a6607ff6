"""speechkd: compressing and adapting speech foundation models (recipes and toolkit)."""

from typing import TYPE_CHECKING

from speechkd.layer_maps import layer_map, supervision_map

if TYPE_CHECKING:
    from speechkd.chunking import chunk_mask

__all__ = ["chunk_mask", "layer_map", "supervision_map"]


def __getattr__(name: str):
    # ``chunk_mask`` (speechkd.chunking) is imported on first use: importing torch on every
    # ``import speechkd.<module>`` would slow down the light command-line tools.
    if name == "chunk_mask":
        from speechkd.chunking import chunk_mask

        return chunk_mask
    raise AttributeError(f"module 'speechkd' has no attribute {name!r}")
