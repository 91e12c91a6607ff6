"""fairseq criterion ``speechkd_w2v2_distill``: DistillW2V2's objective on untranscribed audio.

``L = (1 - alpha) * L_hidn + alpha * (beta * MMI_distill + (1 - beta) * MSE(O^S, O^T))``
(:mod:`speechkd.losses.hidden_mse`). The frozen teacher (a fine-tuned ``wav2vec_ctc`` for
T -> SN / T -> SS, a ``speechkd_w2v2_student`` SN checkpoint for SN -> SS) and the student see
the same (augmented) batch of an ``audio_pretraining`` task (``net_input`` = ``source`` and
``padding_mask``; no labels). Every term is a per-frame quantity; the returned loss is that times
the number of valid frames, which is the ``sample_size`` (fairseq divides the gradient by it).

The projections ``W_i`` of ``L_hidn`` are parameters of this criterion: fairseq 0.12's Trainer
optimises ``chain(model.parameters(), criterion.parameters())`` and saves/loads the criterion's
state in checkpoints, so they are created in ``__init__`` (before the optimizer is built) from
the teacher's and the student's depth and width, and only when ``alpha < 1`` (with ``alpha == 1``
the criterion has no parameters, so DDP has no unused ones). The teacher is loaded on the CPU in
``__init__`` (its size is needed for ``W_i``) and moved to the student's device and dtype at the
first forward; it is kept outside the module tree, so it is never optimised or checkpointed.

No ``from __future__ import annotations`` here: fairseq reads the dataclass field types at run
time (``gen_parser_from_dataclass`` rejects string annotations and parses ``Optional[...]`` only).
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from omegaconf import II

from speechkd.errors import ConfigError, DataError
from speechkd.fairseq_plugin.teacher import FrozenTeacher, load_teacher
from speechkd.losses.hidden_mse import HiddenMSE, distill_loss, parse_layer_map, w2v2_layer_map
from speechkd.mmi import Fsa, MMIDistillLoss

logger = logging.getLogger(__name__)

NUMERATOR_CHOICES = ChoiceEnum(["frame_best_path", "ctc_best_path", "mask"])
MMI_BACKEND_CHOICES = ChoiceEnum(["auto", "log", "prob", "k2"])


@dataclass
class W2v2DistillConfig(FairseqDataclass):
    teacher_path: str = field(
        default="", metadata={"help": "fairseq checkpoint of the teacher (wav2vec_ctc or SN)"}
    )
    trust_teacher_checkpoint: bool = field(
        default=False,
        metadata={"help": "the teacher checkpoint is a pickle: load it only when true"},
    )
    alpha: float = field(default=0.8, metadata={"help": "weight of L_pred (1 - alpha: L_hidn)"})
    beta: float = field(
        default=0.8, metadata={"help": "weight of MMI_distill in L_pred (1 - beta: logit MSE)"}
    )
    numerator: NUMERATOR_CHOICES = field(  # type: ignore[valid-type]
        default="mask",
        metadata={"help": "MMI numerator from the teacher: best path or pruned-lattice mask"},
    )
    mask_threshold: float = field(
        default=0.05, metadata={"help": "numerator=mask: teacher posterior threshold"}
    )
    mask_tolerance: int = field(
        default=1, metadata={"help": "numerator=mask: frames of tolerance around each posterior"}
    )
    den_graph: str = field(
        default="", metadata={"help": "den.fst.txt (speechkd.bin.make_den_graph); needed if beta>0"}
    )
    num_pdfs: Optional[int] = field(  # noqa: UP045 (fairseq parses typing.Optional only)
        default=None,
        metadata={"help": "MMI pdfs (phones.txt size); default: all outputs or the den graph's"},
    )
    blank: int = field(default=0, metadata={"help": "output column of the blank (pdf 0)"})
    pdf_offset: int = field(
        default=0, metadata={"help": "pdf p >= 1 is output column p + pdf_offset"}
    )
    leaky_hmm_coefficient: float = field(default=1e-5, metadata={"help": "denominator leaky HMM"})
    den_scale: float = field(default=1.0, metadata={"help": "scale of the denominator score"})
    mmi_backend: MMI_BACKEND_CHOICES = field(  # type: ignore[valid-type]
        default="auto", metadata={"help": "speechkd.mmi intersection backend"}
    )
    layer_map: str = field(
        default="",
        metadata={"help": "'s:t,...' (1-based) student:teacher layers; default: w2v2_layer_map"},
    )
    student_layers: int = II("model.encoder_layers")
    student_embed_dim: int = II("model.encoder_embed_dim")


def load_den_graph(path: str) -> Fsa:
    """A denominator graph written by ``speechkd.bin.make_den_graph`` (OpenFst text, pdf+1)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: denominator graph not found (criterion.den_graph)")
    return Fsa.from_openfst(p.read_text())


@register_criterion("speechkd_w2v2_distill", dataclass=W2v2DistillConfig)
class W2v2DistillCriterion(FairseqCriterion):
    """DistillW2V2 distillation of a ``speechkd_w2v2_student`` from a frozen teacher."""

    def __init__(self, cfg: W2v2DistillConfig, task, teacher: FrozenTeacher | None = None):
        super().__init__(task)
        for name in ("alpha", "beta"):
            value = getattr(cfg, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"criterion.{name}={value}: expected a weight in [0, 1]")
        self.alpha = float(cfg.alpha)
        self.beta = float(cfg.beta)
        self.blank = int(cfg.blank)
        self.pdf_offset = int(cfg.pdf_offset)
        self.num_pdfs = cfg.num_pdfs
        if teacher is None:
            if not cfg.teacher_path:
                raise ConfigError("criterion.teacher_path: a teacher checkpoint is required")
            teacher = load_teacher(cfg.teacher_path, bool(cfg.trust_teacher_checkpoint))
        # a plain attribute (FrozenTeacher is no nn.Module): never optimised nor saved
        self.teacher = teacher
        self.hidden_mse: HiddenMSE | None = None
        self.layer_map: dict[int, int] = {}
        if self.alpha < 1.0:
            n_s, d_s = int(cfg.student_layers), int(cfg.student_embed_dim)
            n_t, d_t = teacher.num_layers, teacher.embed_dim
            lmap = parse_layer_map(cfg.layer_map) if cfg.layer_map else w2v2_layer_map(n_t, n_s)
            for s, t in lmap.items():
                if s > n_s or t > n_t:
                    raise ConfigError(
                        f"criterion.layer_map: {s}:{t} outside a {n_s}-layer student / "
                        f"{n_t}-layer teacher"
                    )
            self.layer_map = lmap
            self.hidden_mse = HiddenMSE(lmap, d_s, d_t)
            logger.info("hidden-layer distillation, student:teacher layers %s", lmap)
        self.mmi: MMIDistillLoss | None = None
        if self.alpha > 0.0 and self.beta > 0.0:
            if not cfg.den_graph:
                raise ConfigError(
                    f"criterion.den_graph: beta={self.beta} > 0 needs a denominator graph"
                )
            self.mmi = MMIDistillLoss(
                load_den_graph(cfg.den_graph),
                numerator=str(cfg.numerator),
                threshold=cfg.mask_threshold,
                tolerance=cfg.mask_tolerance,
                blank=0,  # pdf 0 after select_pdfs
                den_scale=cfg.den_scale,
                leaky_hmm_coefficient=cfg.leaky_hmm_coefficient,
                num_backend=str(cfg.mmi_backend),
                den_backend=str(cfg.mmi_backend),
                reduction="sum",
            )

    def _place_teacher(self, like: torch.Tensor) -> None:
        dtype = like.dtype if like.is_floating_point() else None
        if self.teacher.device != like.device or (dtype and self.teacher.dtype != dtype):
            self.teacher.to(device=like.device, dtype=dtype)
        if self.mmi is not None and self.mmi.den_graph.device != like.device:
            self.mmi.den_graph = self.mmi.den_graph.to(like.device)

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        source = net_input["source"]
        padding_mask = net_input.get("padding_mask")
        self._place_teacher(next(model.parameters()))
        teacher_out = self.teacher(source, padding_mask)
        student_out = model(source=source, padding_mask=padding_mask)
        logits = student_out["logits"]
        B, T = logits.shape[:2]
        if teacher_out["logits"].shape[:2] != (B, T):
            raise DataError(
                f"student frames {(B, T)} != teacher frames "
                f"{tuple(teacher_out['logits'].shape[:2])}: the feature encoders must have the "
                "same strides"
            )
        s_pad = student_out.get("padding_mask")
        s_pad = (
            torch.zeros(B, T, dtype=torch.bool, device=logits.device) if s_pad is None else s_pad
        )
        valid = ~(s_pad.bool() | teacher_out["padding_mask"])
        loss, parts = distill_loss(
            student_out,
            teacher_out,
            valid,
            self.alpha,
            self.beta,
            hidden_mse=self.hidden_mse,
            mmi_distill=self.mmi,
            num_pdfs=self.num_pdfs,
            blank=self.blank,
            pdf_offset=self.pdf_offset,
        )
        n_frames = int(valid.sum())
        loss = loss * n_frames
        logging_output = {
            "loss": float(loss.detach()),
            "ntokens": n_frames,
            "nsentences": B,
            "sample_size": n_frames,
        }
        for key in ("hidn", "pred", "pred_mse", "mmi"):
            if key in parts:
                logging_output[key] = float(parts[key]) * n_frames
        if "mmi_failed" in parts:
            logging_output["mmi_failed"] = int(parts["mmi_failed"])
        return loss, n_frames, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        denom = max(sample_size, 1)
        loss = sum(log.get("loss", 0.0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / denom, sample_size, round=4)
        for key in ("hidn", "pred", "pred_mse", "mmi"):
            if any(key in log for log in logging_outputs):
                value = sum(log.get(key, 0.0) for log in logging_outputs)
                metrics.log_scalar(key, value / denom, sample_size, round=4)
        if any("mmi_failed" in log for log in logging_outputs):
            # a sum, as the LF-MMI criterion logs it (one meter type per key in fairseq's
            # process-wide aggregators)
            metrics.log_scalar_sum(
                "mmi_failed", sum(log.get("mmi_failed", 0) for log in logging_outputs)
            )
        metrics.log_scalar("frames", sample_size, round=0)
        if not math.isfinite(loss):
            logger.warning("non-finite distillation loss %s", loss)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
