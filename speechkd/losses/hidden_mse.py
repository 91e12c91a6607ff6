"""DistillW2V2's distillation objective: hidden-layer MSE and the prediction-layer loss.

``L = (1 - alpha) * L_hidn + alpha * L_pred`` with

* ``L_hidn = sum_i MSE(H_i^S W_i, H_g(i)^T)`` over the mapped student layers ``i`` (1-based; layer
  ``i`` is the output of transformer block ``i``), ``W_i`` a trainable ``Linear(d_S -> d_T)``
  (:class:`HiddenMSE`, layer map :func:`w2v2_layer_map`);
* ``L_pred = beta * MMI_distill + (1 - beta) * MSE(O^S, O^T)`` on the prediction-layer outputs
  (logits), the MMI term computed by :class:`speechkd.mmi.MMIDistillLoss` (:func:`prediction_loss`).

Normalisation, so that alpha/beta mix terms of comparable scale: every MSE is the mean over the
valid (non-padding) frames and the feature dimensions (one number per layer, summed over layers as
in the paper); the MMI term is the negated MMI objective summed over utterances and divided by the
number of valid frames (nats per frame), whatever the ``reduction`` of the MMI module. All terms
are therefore per-frame quantities; a fairseq criterion multiplies the total by the frame count
and reports that count as its ``sample_size``.

Masks are boolean ``[B, T]`` tensors, ``True`` on valid frames (the negation of fairseq's
``padding_mask``); padding frames never contribute to a loss or its gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from speechkd.errors import ConfigError, DataError

# student layers of the 12-layer base map whose mapping is dropped for 10-block students
# (the paper's S4/S5: "we just remove the 4th and 8th layers' mapping")
DROPPED_FOR_10 = (4, 8)
BASE_LAYERS = 12


def w2v2_layer_map(n_teacher: int, n_student: int) -> dict[int, int]:
    """``{student layer i: teacher layer g(i)}`` (1-based), every student layer mapped.

    * ``n_teacher % n_student == 0``: ``g(i) = i * n_teacher / n_student`` (24 -> 12: ``2i``;
      tiny 4 -> 2: ``2i``; equal depths: identity);
    * ``n_student == 10`` and ``n_teacher % 12 == 0``: the 12-layer map ``g(j) = j * n_teacher/12``
      without its student layers 4 and 8, so student layers 1..10 learn from teacher layers
      ``g(1), g(2), g(3), g(5), g(6), g(7), g(9), g(10), g(11), g(12)`` (24 -> 10:
      2, 4, 6, 10, 12, 14, 18, 20, 22, 24);
    * anything else raises :class:`ConfigError` (give an explicit map, :func:`parse_layer_map`).
    """
    if n_teacher < 1 or n_student < 1:
        raise ConfigError(f"layer map: n_teacher={n_teacher}, n_student={n_student}; expected >= 1")
    if n_student > n_teacher:
        raise ConfigError(
            f"layer map: the student has more layers ({n_student}) than the teacher ({n_teacher})"
        )
    if n_teacher % n_student == 0:
        step = n_teacher // n_student
        return {i: i * step for i in range(1, n_student + 1)}
    if n_student == BASE_LAYERS - len(DROPPED_FOR_10) and n_teacher % BASE_LAYERS == 0:
        step = n_teacher // BASE_LAYERS
        kept = [j for j in range(1, BASE_LAYERS + 1) if j not in DROPPED_FOR_10]
        return {i: j * step for i, j in enumerate(kept, 1)}
    raise ConfigError(
        f"layer map: no rule for a {n_student}-layer student of a {n_teacher}-layer teacher "
        "(the teacher depth must be a multiple of the student's, or of 12 for a 10-layer "
        "student); give an explicit map such as '1:2,2:4'"
    )


def parse_layer_map(spec: str) -> dict[int, int]:
    """Parse ``"1:2,2:4,..."`` (student:teacher, 1-based) into a layer map."""
    out: dict[int, int] = {}
    for item in spec.replace(" ", "").split(","):
        if not item:
            continue
        try:
            s, t = (int(x) for x in item.split(":"))
        except ValueError:
            raise ConfigError(
                f"layer map {spec!r}: cannot parse {item!r}; expected 'student:teacher'"
            ) from None
        if s < 1 or t < 1:
            raise ConfigError(f"layer map {spec!r}: layers are 1-based, got {item!r}")
        if s in out:
            raise ConfigError(f"layer map {spec!r}: student layer {s} mapped twice")
        out[s] = t
    if not out:
        raise ConfigError(f"layer map {spec!r}: empty")
    return out


def masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``(x - y)^2`` over valid frames (``mask [B, T]`` True) and the feature dim."""
    if x.shape != y.shape:
        raise DataError(f"MSE: shapes {tuple(x.shape)} and {tuple(y.shape)} differ")
    if mask.shape != x.shape[:2]:
        raise DataError(f"MSE: mask shape {tuple(mask.shape)} != frames {tuple(x.shape[:2])}")
    m = mask.to(x.dtype)[..., None]
    denom = m.sum().clamp(min=1.0) * x.shape[-1]
    return (((x - y) ** 2) * m).sum() / denom


class HiddenMSE(nn.Module):
    """``L_hidn = sum_i MSE(H_i^S W_i, H_g(i)^T)`` with one trainable ``W_i`` per mapped layer.

    ``forward(student_hidden, teacher_hidden, mask)``: lists of ``[B, T, D]`` block outputs
    (index ``i - 1`` holds layer ``i``) and the valid-frame mask; returns ``(loss, per_layer)``
    with ``per_layer[i]`` the (detached) MSE of student layer ``i``.
    """

    def __init__(self, layer_map: dict[int, int], d_student: int, d_teacher: int) -> None:
        super().__init__()
        if not layer_map:
            raise ConfigError("HiddenMSE: empty layer map")
        self.layer_map = dict(sorted(layer_map.items()))
        self.d_student = d_student
        self.d_teacher = d_teacher
        self.proj = nn.ModuleDict({str(i): nn.Linear(d_student, d_teacher) for i in self.layer_map})

    def forward(
        self,
        student_hidden: list[torch.Tensor],
        teacher_hidden: list[torch.Tensor],
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        total = None
        per_layer: dict[int, torch.Tensor] = {}
        for i, g in self.layer_map.items():
            if i > len(student_hidden):
                raise DataError(
                    f"HiddenMSE: student layer {i} is mapped but the student returned "
                    f"{len(student_hidden)} hidden states"
                )
            if g > len(teacher_hidden):
                raise DataError(
                    f"HiddenMSE: teacher layer {g} is mapped but the teacher returned "
                    f"{len(teacher_hidden)} hidden states"
                )
            hs, ht = student_hidden[i - 1], teacher_hidden[g - 1]
            if hs.shape[-1] != self.d_student or ht.shape[-1] != self.d_teacher:
                raise DataError(
                    f"HiddenMSE: layer {i}->{g} widths {hs.shape[-1]}->{ht.shape[-1]}, expected "
                    f"{self.d_student}->{self.d_teacher}"
                )
            proj = self.proj[str(i)]
            loss = masked_mse(
                proj(hs.to(proj.weight.dtype)), ht.detach().to(proj.weight.dtype), mask
            )
            per_layer[i] = loss.detach()
            total = loss if total is None else total + loss
        assert total is not None
        return total, per_layer


def select_pdfs(
    x: torch.Tensor, num_pdfs: int, blank: int = 0, pdf_offset: int = 0
) -> torch.Tensor:
    """Columns of ``x [B, T, V]`` that are the MMI pdfs: pdf 0 = column ``blank``, pdf ``p >= 1``
    = column ``p + pdf_offset`` (e.g. ``pdf_offset=3`` for a fairseq dictionary whose symbols,
    after ``<s>`` (blank) ``<pad> </s> <unk>``, are the phones of ``phones.txt`` in order)."""
    if blank == 0 and pdf_offset == 0 and x.shape[-1] == num_pdfs:
        return x
    cols = [blank] + [p + pdf_offset for p in range(1, num_pdfs)]
    if max(cols) >= x.shape[-1] or min(cols) < 0:
        raise ConfigError(
            f"MMI pdfs: {num_pdfs} pdfs with blank={blank}, pdf_offset={pdf_offset} need output "
            f"columns up to {max(cols)}, but the output has {x.shape[-1]}"
        )
    return x[..., torch.tensor(cols, device=x.device)]


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def prediction_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    mmi_distill: nn.Module | None = None,
    lengths: torch.Tensor | None = None,
    num_pdfs: int | None = None,
    blank: int = 0,
    pdf_offset: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L_pred = beta * MMI_distill + (1 - beta) * MSE(O^S, O^T)``: ``(loss, parts)``.

    ``mmi_distill`` is a :class:`speechkd.mmi.MMIDistillLoss` (needed when ``beta > 0``); it gets
    the student's log-softmax output as pdf log-likelihoods and the teacher's log-softmax as
    posteriors, restricted to the pdf columns (:func:`select_pdfs`; ``num_pdfs`` defaults to
    all columns when ``blank == pdf_offset == 0``, else to the den graph's largest label + 1).
    ``lengths`` default to the mask's valid-frame counts (valid frames must be a prefix). A term
    whose weight is 0 is not computed. ``parts`` holds detached ``pred``, ``pred_mse`` and
    ``mmi`` (per frame) and ``mmi_failed`` (utterances without a numerator/denominator path,
    left out of the MMI sum).
    """
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(f"beta={beta}: expected a weight in [0, 1]")
    if student_logits.shape != teacher_logits.shape:
        raise DataError(
            f"prediction loss: student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ (same output units and frame rate expected)"
        )
    zero = student_logits.new_zeros(())
    loss = zero
    parts: dict[str, torch.Tensor] = {}
    if beta < 1.0:
        mse = masked_mse(student_logits, teacher_logits.detach(), mask)
        loss = loss + (1.0 - beta) * mse
        parts["pred_mse"] = mse.detach()
    if beta > 0.0:
        if mmi_distill is None:
            raise ConfigError(f"beta={beta} > 0 needs an MMI distillation loss (a den graph)")
        if lengths is None:
            lengths = mask.long().sum(1)
        n_frames = float(lengths.sum().clamp(min=1))
        if num_pdfs is None:
            plain = blank == 0 and pdf_offset == 0
            num_pdfs = student_logits.shape[-1] if plain else mmi_distill.den_graph.max_label + 1
        s = select_pdfs(_at_least_fp32(student_logits).log_softmax(-1), num_pdfs, blank, pdf_offset)
        t = select_pdfs(
            _at_least_fp32(teacher_logits.detach()).log_softmax(-1), num_pdfs, blank, pdf_offset
        )
        out = mmi_distill(s, lengths, t)
        mmi = out.loss.sum() if out.loss.dim() else out.loss
        if getattr(mmi_distill, "reduction", "sum") == "mean":
            mmi = mmi * max(out.num_frames, 1)
        mmi = (mmi / n_frames).to(loss.dtype)
        loss = loss + beta * mmi
        parts["mmi"] = mmi.detach()
        parts["mmi_failed"] = torch.tensor(float(out.num_failed))
    parts["pred"] = loss.detach()
    return loss, parts


def distill_loss(
    student: dict,
    teacher: dict,
    mask: torch.Tensor,
    alpha: float,
    beta: float,
    hidden_mse: HiddenMSE | None = None,
    mmi_distill: nn.Module | None = None,
    num_pdfs: int | None = None,
    blank: int = 0,
    pdf_offset: int = 0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L = (1 - alpha) * L_hidn + alpha * L_pred`` on ``{"logits", "hidden"}`` dicts.

    ``mask [B, T]`` is True on valid frames. ``hidden_mse`` is needed when ``alpha < 1``; a term
    whose weight is 0 is not computed. Returns ``(loss, parts)`` with detached ``loss``,
    ``hidn`` (and ``hidn_<i>`` per student layer) and the parts of :func:`prediction_loss`.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha={alpha}: expected a weight in [0, 1]")
    logits = student["logits"]
    loss = logits.new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    if alpha < 1.0:
        if hidden_mse is None:
            raise ConfigError(f"alpha={alpha} < 1 needs a HiddenMSE (the W_i projections)")
        hidn, per_layer = hidden_mse(student["hidden"], teacher["hidden"], mask)
        loss = loss + (1.0 - alpha) * hidn.to(loss.dtype)
        parts["hidn"] = hidn.detach()
        parts.update({f"hidn_{i}": v for i, v in per_layer.items()})
    if alpha > 0.0:
        pred, pred_parts = prediction_loss(
            logits,
            teacher["logits"],
            mask,
            beta,
            mmi_distill,
            num_pdfs=num_pdfs,
            blank=blank,
            pdf_offset=pdf_offset,
        )
        loss = loss + alpha * pred
        parts.update(pred_parts)
    parts["loss"] = loss.detach()
    return loss, parts
