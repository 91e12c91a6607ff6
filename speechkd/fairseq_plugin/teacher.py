"""A frozen distillation teacher with the student's output dict.

``FrozenTeacher(model)(source, padding_mask)`` returns ``{"logits": [B, T, V], "hidden": [[B, T, D]
per transformer block], "padding_mask": [B, T] bool (True = padding)}`` for

* fairseq's fine-tuned ``wav2vec_ctc`` (:class:`~fairseq.models.wav2vec.Wav2VecCtc`): the
  encoder's ``w2v_model.extract_features`` without masking; ``hidden[i]`` is the output of block
  ``i + 1`` (element 0 of fairseq's ``layer_results`` tuples ``(x, attn, ffn_out)``, i.e. after
  the residual and, for post-LN blocks, after ``final_layer_norm``; for pre-LN models
  (``layer_norm_first``) the encoder's final LayerNorm is applied after the last block only to
  the output used by ``proj``, not to ``hidden[-1]``); ``logits = w2v_encoder.proj(x)`` (raw,
  without Wav2VecCtc's decode-time ``blank_weight``);
* speechkd's ``speechkd_w2v2_student`` (SN as the teacher of SS), whose ``forward(source,
  padding_mask)`` already returns that dict.

The teacher is always in eval mode, has ``requires_grad=False`` and runs under ``no_grad``; it
is a plain object, not an ``nn.Module`` attribute of a criterion, so it is neither optimised nor
saved in training checkpoints.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.fairseq_plugin.checkpoints import load_fairseq_model

KINDS = ("wav2vec_ctc", "speechkd_student")


def teacher_kind(model: nn.Module) -> str:
    """``"wav2vec_ctc"`` (a model with ``w2v_encoder``) or ``"speechkd_student"``."""
    enc = getattr(model, "w2v_encoder", None)
    if enc is not None and hasattr(enc, "w2v_model"):
        if getattr(enc, "proj", None) is None:
            raise ConfigError(
                f"{type(model).__name__}: the wav2vec2 encoder has no output projection (proj); "
                "a fine-tuned wav2vec_ctc model is needed as the teacher"
            )
        return "wav2vec_ctc"
    if hasattr(model, "output_proj") and hasattr(model, "layers"):
        return "speechkd_student"
    raise ConfigError(
        f"{type(model).__name__}: not a supported teacher (expected fairseq's wav2vec_ctc or "
        "speechkd_w2v2_student)"
    )


def _bool_mask(padding_mask: torch.Tensor | None, B: int, T: int, device) -> torch.Tensor:
    if padding_mask is None:
        return torch.zeros(B, T, dtype=torch.bool, device=device)
    if padding_mask.shape != (B, T):
        raise DataError(f"teacher padding mask {tuple(padding_mask.shape)} != frames {(B, T)}")
    return padding_mask.bool()


def wav2vec_ctc_outputs(
    model: nn.Module, source: torch.Tensor, padding_mask: torch.Tensor | None
) -> dict:
    """The output dict of a fairseq ``Wav2VecCtc`` (see the module docstring)."""
    enc = model.w2v_encoder
    res = enc.w2v_model.extract_features(source=source, padding_mask=padding_mask, mask=False)
    x = res["x"]  # B x T x C
    logits = enc.proj(enc.final_dropout(x))
    hidden = [lr[0].transpose(0, 1) for lr in res["layer_results"]]
    B, T = x.shape[:2]
    return {
        "logits": logits,
        "hidden": hidden,
        "padding_mask": _bool_mask(res["padding_mask"], B, T, x.device),
    }


def student_outputs(
    model: nn.Module, source: torch.Tensor, padding_mask: torch.Tensor | None
) -> dict:
    """The output dict of a ``speechkd_w2v2_student`` (padding mask made a bool tensor)."""
    out = model(source=source, padding_mask=padding_mask)
    logits = out["logits"]
    B, T = logits.shape[:2]
    return {
        "logits": logits,
        "hidden": list(out["hidden"]),
        "padding_mask": _bool_mask(out.get("padding_mask"), B, T, logits.device),
    }


class FrozenTeacher:
    """A frozen teacher model: ``teacher(source, padding_mask) -> {"logits", "hidden", ...}``."""

    def __init__(self, model: nn.Module) -> None:
        self.kind = teacher_kind(model)
        self.model = model.eval()
        self.model.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move the teacher (in place); returns ``self``."""
        self.model.to(device=device, dtype=dtype)
        return self

    @property
    def num_layers(self) -> int:
        if self.kind == "wav2vec_ctc":
            return len(self.model.w2v_encoder.w2v_model.encoder.layers)
        return len(self.model.layers)

    @property
    def embed_dim(self) -> int:
        """Width of the transformer blocks (the hidden states)."""
        if self.kind == "wav2vec_ctc":
            return int(self.model.w2v_encoder.w2v_model.encoder.embedding_dim)
        return int(self.model.layers[0].embedding_dim)

    @property
    def output_layer(self) -> nn.Linear:
        if self.kind == "wav2vec_ctc":
            return self.model.w2v_encoder.proj
        return self.model.output_proj

    @property
    def num_outputs(self) -> int:
        return int(self.output_layer.out_features)

    @torch.no_grad()
    def __call__(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> dict:
        self.model.eval()
        if self.kind == "wav2vec_ctc":
            return wav2vec_ctc_outputs(self.model, source, padding_mask)
        return student_outputs(self.model, source, padding_mask)


def load_teacher(
    path: str | os.PathLike, trust_pickle: bool, device: torch.device | str = "cpu"
) -> FrozenTeacher:
    """Load a trusted fairseq checkpoint (wav2vec_ctc or speechkd_w2v2_student) as a teacher."""
    model, _, _ = load_fairseq_model(path, trust_pickle)
    return FrozenTeacher(model).to(device)
