"""GLoRA (Chavan et al., 2023, arXiv:2306.07967) on Whisper via peft's ``GloraConfig``.

For each adapted linear layer (default: q and v projections, r = 8) with weight W0 (out × in)
and bias b0 (out):

    W = W0 + W0 ⊙ A + B,    b = b0 + b0 ⊙ D + E + W0 C

with A, B low-rank (``Xd`` out × r, ``Xu`` r × in), C low-rank (in × r, r × 1), D and E vectors
(out). Per d × d matrix with bias this is 2·r·2d + r·(d+1) + 2d parameters: 43,016 for
whisper-medium's d = 1024, ×144 q/v matrices = 6,194,304 = 0.81% of 763,857,920, the S2-LoRA
paper's Table 2 figure (peft ``config_A_B="lora"``, ``config_C="lora"``, ``config_D_E="vector"``).
Init (peft): ``Xd`` of every low-rank path and the D, E vectors are zero, so training starts from
Whisper; the update merges into W and b (``merge_and_unload``).
"""

from __future__ import annotations

from torch import nn

DEFAULT_RANK = 8
QV_TARGETS: tuple[str, ...] = ("q_proj", "v_proj")


def glora_config(rank: int = DEFAULT_RANK, target_modules: tuple[str, ...] = QV_TARGETS, **kwargs):
    """The peft ``GloraConfig`` matching the S2-LoRA paper's GLoRA baseline."""
    from peft import GloraConfig

    options = {"config_A_B": "lora", "config_C": "lora", "config_D_E": "vector"} | kwargs
    return GloraConfig(r=rank, target_modules=list(target_modules), **options)


def apply_glora(model: nn.Module, rank: int = DEFAULT_RANK, **kwargs) -> nn.Module:
    """Wrap ``model`` with GLoRA adapters (only the adapters train)."""
    from peft import get_peft_model

    return get_peft_model(model, glora_config(rank, **kwargs))
