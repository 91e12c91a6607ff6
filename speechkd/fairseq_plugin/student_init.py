"""Initialising DistillW2V2 students: SN from the teacher T, SS from SN.

* :func:`init_from_teacher` — "T and SN share the CNN feature encoder (except its first two
  layers when their widths differ) and the prediction layer": every convolutional block of the
  feature encoder whose tensors all have the teacher's shapes is copied (all seven for equal
  widths; with narrower first two layers, block 3 also reads a narrower input and cannot be
  shared, so blocks 4..7 are), and the teacher's output layer (``w2v_encoder.proj`` of a
  ``wav2vec_ctc`` model, ``output_proj`` of a speechkd student) is copied into the student's
  ``output_proj`` (which reads the teacher's width through ``pred_adapter`` when the encoder
  widths differ). ``freeze=True`` marks the copied parameters ``requires_grad=False``.
* :func:`init_from_student` — "initialise SS from SN": a strict full state copy (or, with
  ``strict=False``, every tensor of equal name and shape).
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.checkpoints import load_fairseq_model
from speechkd.fairseq_plugin.teacher import FrozenTeacher, teacher_kind

logger = logging.getLogger(__name__)


def _teacher_conv_layers(teacher: nn.Module) -> nn.ModuleList:
    if teacher_kind(teacher) == "wav2vec_ctc":
        return teacher.w2v_encoder.w2v_model.feature_extractor.conv_layers
    return teacher.feature_extractor.conv_layers


def _same_shapes(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


@torch.no_grad()
def _copy(dst: nn.Module, src: nn.Module, freeze: bool) -> None:
    dst.load_state_dict(src.state_dict(), strict=True)
    if freeze:
        dst.requires_grad_(False)


def init_from_teacher(
    student: nn.Module,
    teacher: nn.Module | FrozenTeacher,
    freeze: bool = False,
    share_conv: bool = True,
    share_output: bool = True,
) -> dict[str, list[str]]:
    """Copy the shareable CNN blocks and the output layer of ``teacher`` into ``student``.

    Returns ``{"conv": [copied block indices as str], "skipped_conv": [...], "output": [...]}``
    (1-based block numbers). Raises :class:`ConfigError` when the output layers do not match
    or when no CNN block could be shared although ``share_conv`` asks for it.
    """
    if isinstance(teacher, FrozenTeacher):
        teacher = teacher.model
    report: dict[str, list[str]] = {"conv": [], "skipped_conv": [], "output": []}
    if share_conv:
        t_convs = _teacher_conv_layers(teacher)
        s_convs = student.feature_extractor.conv_layers
        if len(t_convs) != len(s_convs):
            raise ConfigError(
                f"student init: the student has {len(s_convs)} CNN blocks, the teacher "
                f"{len(t_convs)}; the feature encoders must have the same depth to be shared"
            )
        for i, (s, t) in enumerate(zip(s_convs, t_convs, strict=True), 1):
            if _same_shapes(s, t):
                _copy(s, t, freeze)
                report["conv"].append(str(i))
            elif _same_shapes(s[0], t[0]):
                # same convolution, other normalisation (a streamable per-frame LayerNorm CNN
                # learning from a GroupNorm one): the convolution is shared, the norm is new
                _copy(s[0], t[0], freeze)
                report["conv"].append(f"{i} (convolution only)")
            else:
                report["skipped_conv"].append(str(i))
        if not report["conv"]:
            raise ConfigError("student init: no CNN block of the student matches the teacher's")
    if share_output:
        t_out = teacher.w2v_encoder.proj if hasattr(teacher, "w2v_encoder") else teacher.output_proj
        s_out = student.output_proj
        if not _same_shapes(s_out, t_out):
            raise ConfigError(
                f"student init: output layer {tuple(s_out.weight.shape)} cannot take the "
                f"teacher's {tuple(t_out.weight.shape)} (the student's output_proj must read "
                "the teacher's width: give it a pred_adapter)"
            )
        _copy(s_out, t_out, freeze)
        report["output"] = [name for name, _ in s_out.named_parameters()]
    logger.info(
        "student init from teacher: CNN blocks %s copied, %s skipped; output layer %s%s",
        ",".join(report["conv"]) or "-",
        ",".join(report["skipped_conv"]) or "-",
        "copied" if report["output"] else "not copied",
        " (frozen)" if freeze else "",
    )
    return report


@torch.no_grad()
def init_from_student(
    target: nn.Module, source: nn.Module | FrozenTeacher, strict: bool = True
) -> list[str]:
    """Initialise SS (``target``) with SN (``source``); returns the copied keys.

    ``strict=True`` (the paper's "initialise SS with SN"): the full state, every key and shape
    equal, else :class:`ConfigError`. ``strict=False`` copies every tensor whose name and shape
    match (e.g. SN with a GroupNorm CNN into SS with per-frame LayerNorms) and logs the rest.
    """
    if isinstance(source, FrozenTeacher):
        source = source.model
    state = source.state_dict()
    if strict:
        try:
            target.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"student init: SN and SS states do not match: {exc}") from exc
        return list(state)
    own = target.state_dict()
    copied = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not copied:
        raise ConfigError("student init: no tensor of SS matches SN's by name and shape")
    target.load_state_dict(copied, strict=False)
    left = sorted(set(own) - set(copied))
    if left:
        logger.info("student init from SN: %d tensors not copied: %s", len(left), ", ".join(left))
    return list(copied)


def init_from_checkpoint(
    student: nn.Module,
    path: str | os.PathLike,
    trust_pickle: bool,
    mode: str = "teacher",
    freeze: bool = False,
    strict: bool = True,
) -> dict[str, list[str]] | list[str]:
    """Initialise ``student`` from a trusted fairseq checkpoint: ``mode`` = ``"teacher"``
    (:func:`init_from_teacher`, ``freeze``) or ``"student"`` (:func:`init_from_student`,
    ``strict``)."""
    if mode not in ("teacher", "student"):
        raise ConfigError(f"student init mode={mode!r}: expected 'teacher' or 'student'")
    model, _, _ = load_fairseq_model(path, trust_pickle)
    if mode == "teacher":
        return init_from_teacher(student, model, freeze=freeze)
    return init_from_student(student, model, strict=strict)
