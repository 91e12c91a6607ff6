"""speechkd: compressing and adapting speech foundation models (recipes and toolkit)."""

from speechkd.chunking import chunk_mask
from speechkd.layer_maps import layer_map, supervision_map

__all__ = ["chunk_mask", "layer_map", "supervision_map"]
