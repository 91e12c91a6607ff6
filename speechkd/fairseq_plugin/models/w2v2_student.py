"""DistillW2V2 student: a wav2vec2-style encoder and prediction layer, optionally chunk-streaming.

CNN feature encoder (7 conv layers, the first two with ``conv_first_channels`` channels) ->
LayerNorm -> feature projection -> convolutional positional embedding (optionally causal) ->
transformer blocks (self-attention limited by :func:`speechkd.chunking.chunk_mask` when
``chunk_size`` is set) -> prediction layer (``pred_adapter`` when ``pred_dim`` differs from the
encoder dim, then ``output_proj``: the layer shared with / copied from the teacher).

The CNN (fairseq ``ConvFeatureExtractionModel``), the blocks (fairseq
``TransformerSentenceEncoderLayer``) and the positional convolution keep fairseq wav2vec2's
parameter names, so teacher weights copy over by name. Streaming inference with the same output
as :meth:`W2V2Student.forward`: :mod:`speechkd.fairseq_plugin.models.streaming_encoder`.

Variants (paper Sec. 3): SN = ``extractor_mode: group_norm`` + ``causal_pos_conv: true``, full
context; SS = ``layer_norm`` extractor (every normalisation per frame) + causal positional
convolution + ``history_size: 600``, ``chunk_size: 48`` (frames of 20 ms).

No ``from __future__ import annotations`` here: fairseq's argparse bridge
(``gen_parser_from_dataclass``) needs real types in the config dataclass, hence ``Optional``.
"""

import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
import yaml
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model
from fairseq.models.wav2vec.wav2vec2 import (
    ConvFeatureExtractionModel,
    TransformerSentenceEncoderLayer,
)
from fairseq.modules import GradMultiply, LayerNorm, SamePad
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from torch import nn

from speechkd.chunking import check_context_size, chunk_mask
from speechkd.errors import ConfigError

logger = logging.getLogger(__name__)

ARCH_DIR = Path(__file__).resolve().parents[3] / "conf" / "distill_w2v2" / "arch"
EXTRACTOR_MODES = ChoiceEnum(["group_norm", "layer_norm"])

# SN / SS settings of the paper (Sec. 3, 5.2) on top of an architecture file.
VARIANTS: dict[str, dict[str, Any]] = {
    "teacher": {},
    "sn": {"extractor_mode": "group_norm", "causal_pos_conv": True},
    "ss": {
        "extractor_mode": "layer_norm",
        "causal_pos_conv": True,
        "chunk_size": 48,
        "history_size": 600,
    },
}


INIT_MODES = ChoiceEnum(["teacher", "student"])


@dataclass
class W2V2StudentConfig(FairseqDataclass):
    num_outputs: int = field(
        default=32, metadata={"help": "output units when the task has no target dictionary"}
    )
    conv_first_channels: int = field(
        default=512, metadata={"help": "channels of the first two CNN feature-encoder layers"}
    )
    conv_channels: int = field(default=512, metadata={"help": "channels of CNN layers 3-7"})
    conv_bias: bool = field(default=False, metadata={"help": "bias in the CNN convolutions"})
    extractor_mode: EXTRACTOR_MODES = field(  # type: ignore[valid-type]
        default="group_norm",
        metadata={
            "help": "group_norm: GroupNorm over time after the first conv (wav2vec2 'default', "
            "not streamable); layer_norm: per-frame LayerNorm after every conv (streamable)"
        },
    )
    encoder_embed_dim: int = field(default=768, metadata={"help": "encoder dimension"})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "FFN dimension"})
    encoder_layers: int = field(default=12, metadata={"help": "transformer blocks"})
    encoder_attention_heads: int = field(
        default=0, metadata={"help": "attention heads; 0: encoder_embed_dim / 64"}
    )
    activation_fn: str = field(default="gelu", metadata={"help": "FFN activation"})
    layer_norm_first: bool = field(default=False, metadata={"help": "pre-LN blocks"})
    conv_pos: int = field(default=128, metadata={"help": "positional convolution kernel"})
    conv_pos_groups: int = field(default=16, metadata={"help": "positional convolution groups"})
    causal_pos_conv: bool = field(
        default=False,
        metadata={"help": "left-pad the positional convolution: frame t sees frames <= t"},
    )
    chunk_size: Optional[int] = field(  # noqa: UP045
        default=None, metadata={"help": "attention chunk in frames; None: full context"}
    )
    history_size: Optional[int] = field(  # noqa: UP045
        default=None,
        metadata={"help": "frames before a chunk's start it may attend; None: unbounded"},
    )
    pred_dim: int = field(
        default=0,
        metadata={
            "help": "input dim of the prediction layer (the teacher's encoder dim when it is "
            "shared); 0: encoder_embed_dim. A Linear adapter is added when it differs"
        },
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout in the transformer"})
    attention_dropout: float = field(default=0.1, metadata={"help": "attention-weight dropout"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN act"})
    dropout_input: float = field(default=0.0, metadata={"help": "dropout on the CNN features"})
    feature_grad_mult: float = field(
        default=1.0, metadata={"help": "gradient scale into the CNN; 0 freezes it"}
    )
    init_from: Optional[str] = field(  # noqa: UP045
        default=None,
        metadata={
            "help": "fairseq checkpoint initialising the new model (speechkd.fairseq_plugin."
            "student_init): a teacher (init_mode=teacher: shared CNN blocks and prediction "
            "layer; num_outputs taken from it) or a student (init_mode=student: SN -> SS)"
        },
    )
    init_mode: INIT_MODES = field(  # type: ignore[valid-type]
        default="teacher", metadata={"help": "how init_from is used: teacher | student"}
    )
    init_strict: bool = field(
        default=False,
        metadata={
            "help": "init_mode=student: every tensor must match (SN -> SS with the same CNN)"
        },
    )
    trust_init_checkpoint: bool = field(
        default=False,
        metadata={"help": "init_from is a pickle: load it only when this is true"},
    )


def _set_config(cfg: Any, key: str, value: Any) -> None:
    """Set ``cfg.key`` on a dataclass or an OmegaConf DictConfig (struct mode or not)."""
    from omegaconf import DictConfig, open_dict

    if isinstance(cfg, DictConfig):
        with open_dict(cfg):
            cfg[key] = value
    else:
        setattr(cfg, key, value)


def conv_feature_layers(first_channels: int, channels: int) -> list[tuple[int, int, int]]:
    """wav2vec2's 7 CNN layers (dim, kernel, stride): receptive field 400, stride 320 samples."""
    return (
        [(first_channels, 10, 5), (first_channels, 3, 2)]
        + [(channels, 3, 2)] * 3
        + [(channels, 2, 2)] * 2
    )


def receptive_field(layers: Iterable[tuple[int, int, int]]) -> tuple[int, int]:
    """(window, stride) in samples of one output frame of a stack of convolutions."""
    window, stride = 1, 1
    for _, k, s in layers:
        window += (k - 1) * stride
        stride *= s
    return window, stride


def conv_output_lengths(lengths: torch.Tensor, layers: Iterable[tuple[int, int, int]]):
    """Frames produced from ``lengths`` samples (fairseq's per-layer formula), at least 0."""
    for _, k, s in layers:
        lengths = torch.div(lengths - k, s, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def build_pos_conv(dim: int, kernel: int, groups: int, causal: bool) -> nn.Sequential:
    """fairseq's weight-normed positional convolution (same parameter names), optionally causal."""
    conv = nn.Conv1d(dim, dim, kernel, padding=kernel - 1 if causal else kernel // 2, groups=groups)
    nn.init.normal_(conv.weight, mean=0, std=math.sqrt(4.0 / (kernel * dim)))
    nn.init.constant_(conv.bias, 0)
    with warnings.catch_warnings():  # the parametrizations API would rename weight_g/weight_v
        warnings.simplefilter("ignore", FutureWarning)
        conv = nn.utils.weight_norm(conv, name="weight", dim=2)
    return nn.Sequential(conv, SamePad(kernel, causal=causal), nn.GELU())


class StudentEncoderLayer(TransformerSentenceEncoderLayer):
    """fairseq's wav2vec2 block (same submodules) on batch-first input, with a boolean attention
    mask in both LayerNorm orders and optional cached keys/values of earlier frames."""

    def self_attention(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Attention output [B,T,D] and this call's (keys, values) [B,H,T_past+T,D/H].

        ``attn_mask``: Bool [T, T_past+T] or [B, 1, T, T_past+T], True = may attend.
        """
        attn = self.self_attn
        bsz, length, dim = x.shape
        heads, head_dim = attn.num_heads, attn.head_dim

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(bsz, length, heads, head_dim).transpose(1, 2)

        q, k, v = split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        p = attn.dropout_module.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        out = out.transpose(1, 2).reshape(bsz, length, dim)
        return attn.out_proj(out), (k, v)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(block output [B,T,D], (keys, values) for a streaming cache)."""
        residual = x
        if self.layer_norm_first:
            h, kv = self.self_attention(self.self_attn_layer_norm(x), attn_mask, past)
            x = residual + self.dropout1(h)
            residual = x
            h = self.activation_fn(self.fc1(self.final_layer_norm(x)))
            x = residual + self.dropout3(self.fc2(self.dropout2(h)))
        else:
            h, kv = self.self_attention(x, attn_mask, past)
            x = self.self_attn_layer_norm(residual + self.dropout1(h))
            residual = x
            h = self.activation_fn(self.fc1(x))
            x = self.final_layer_norm(residual + self.dropout3(self.fc2(self.dropout2(h))))
        return x, kv


@register_model("speechkd_w2v2_student", dataclass=W2V2StudentConfig)
class W2V2Student(BaseFairseqModel):
    """wav2vec2-style encoder + prediction layer; ``forward`` gives logits, hidden states and the
    frame padding mask (see module docstring)."""

    def __init__(self, cfg: W2V2StudentConfig, num_outputs: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dim = int(cfg.encoder_embed_dim)
        heads = int(cfg.encoder_attention_heads) or dim // 64
        if heads < 1 or dim % heads:
            raise ConfigError(
                f"encoder_attention_heads: {heads} heads do not divide encoder_embed_dim {dim}"
            )
        if cfg.extractor_mode not in ("group_norm", "layer_norm"):
            raise ConfigError(f"extractor_mode: group_norm or layer_norm, got {cfg.extractor_mode}")
        num_outputs = int(cfg.num_outputs if num_outputs is None else num_outputs)
        if num_outputs < 1:
            raise ConfigError(f"num_outputs: expected >= 1, got {num_outputs}")
        self.chunk_size = check_context_size("chunk_size", cfg.chunk_size, 1)
        self.history_size = check_context_size("history_size", cfg.history_size, 0)
        self.num_heads = heads

        self.conv_layers_spec = conv_feature_layers(cfg.conv_first_channels, cfg.conv_channels)
        self.feature_extractor = ConvFeatureExtractionModel(
            conv_layers=self.conv_layers_spec,
            dropout=0.0,
            mode="default" if cfg.extractor_mode == "group_norm" else "layer_norm",
            conv_bias=cfg.conv_bias,
        )
        embed = int(cfg.conv_channels)
        self.layer_norm = LayerNorm(embed)
        self.post_extract_proj = nn.Linear(embed, dim) if embed != dim else None
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.feature_grad_mult = float(cfg.feature_grad_mult)

        self.pos_conv = build_pos_conv(dim, cfg.conv_pos, cfg.conv_pos_groups, cfg.causal_pos_conv)
        self.encoder_layer_norm = LayerNorm(dim)
        self.layer_norm_first = bool(cfg.layer_norm_first)
        self.dropout = float(cfg.dropout)
        self.layers = nn.ModuleList(
            StudentEncoderLayer(
                embedding_dim=dim,
                ffn_embedding_dim=cfg.encoder_ffn_embed_dim,
                num_attention_heads=heads,
                dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout,
                activation_dropout=cfg.activation_dropout,
                activation_fn=cfg.activation_fn,
                layer_norm_first=cfg.layer_norm_first,
            )
            for _ in range(cfg.encoder_layers)
        )
        self.layers.apply(init_bert_params)

        pred_dim = int(cfg.pred_dim) or dim
        self.pred_adapter = nn.Linear(dim, pred_dim) if pred_dim != dim else None
        self.output_proj = nn.Linear(pred_dim, num_outputs)

    @classmethod
    def build_model(cls, cfg: W2V2StudentConfig, task: Any = None) -> "W2V2Student":
        """The model; its output size is the task's target dictionary size when it has one."""
        dictionary = None
        if task is not None:
            try:
                dictionary = task.target_dictionary
            except (AttributeError, NotImplementedError):
                dictionary = None
        num_outputs = len(dictionary) if dictionary is not None else None
        if not cfg.init_from:
            return cls(cfg, num_outputs)
        return cls.build_initialised(cfg, num_outputs)

    @classmethod
    def build_initialised(cls, cfg: W2V2StudentConfig, num_outputs: int | None) -> "W2V2Student":
        """A new model initialised from ``cfg.init_from`` (its teacher or its SN student).

        Only a model being created is initialised: a saved model is reloaded with
        ``init_from=None`` (speechkd.fairseq_plugin.checkpoints.load_fairseq_model).
        """
        from speechkd.fairseq_plugin.checkpoints import load_fairseq_model
        from speechkd.fairseq_plugin.student_init import init_from_student, init_from_teacher
        from speechkd.fairseq_plugin.teacher import FrozenTeacher

        source, _, _ = load_fairseq_model(cfg.init_from, cfg.trust_init_checkpoint)
        source = FrozenTeacher(source)
        if num_outputs is None:
            num_outputs = source.num_outputs
        elif num_outputs != source.num_outputs:
            raise ConfigError(
                f"init_from={cfg.init_from}: {source.num_outputs} outputs, the task's "
                f"dictionary has {num_outputs}"
            )
        if cfg.init_mode == "teacher" and not cfg.pred_dim:
            # share the teacher's prediction layer: an adapter to its input width (the value is
            # kept in the saved config, so the model is rebuilt without the teacher)
            _set_config(cfg, "pred_dim", source.output_layer.in_features)
        model = cls(cfg, num_outputs)
        if cfg.init_mode == "teacher":
            copied = init_from_teacher(model, source)
        else:
            copied = init_from_student(model, source, strict=cfg.init_strict)
        logger.info("initialised from %s (%s): %s", cfg.init_from, cfg.init_mode, copied)
        return model

    # -- pieces shared by the full-utterance and the streaming forward --------------------------
    def cnn_features(self, source: torch.Tensor) -> torch.Tensor:
        """Raw audio [B,S] -> projected frame features [B,T,D] (before the positional conv)."""
        if self.feature_grad_mult > 0:
            features = self.feature_extractor(source)
            if self.feature_grad_mult != 1.0:
                features = GradMultiply.apply(features, self.feature_grad_mult)
        else:
            with torch.no_grad():
                features = self.feature_extractor(source)
        x = self.layer_norm(features.transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.dropout_input(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction layer: encoder output [B,T,D] -> logits [B,T,V]."""
        if self.pred_adapter is not None:
            x = self.pred_adapter(x)
        return self.output_proj(x)

    def causal_pos_embedding(self, context: torch.Tensor) -> torch.Tensor:
        """The causal positional convolution [B,k-1+n,D] -> [B,n,D]: output frame t reads
        ``context[t : t+k]`` (no padding computed; the caller supplies the k-1 left frames)."""
        conv = self.pos_conv[0]
        if hasattr(conv, "weight_v"):  # weight norm over every dim but the kernel position
            v, g = conv.weight_v, conv.weight_g
            weight = v * (g / v.norm(dim=(0, 1), keepdim=True))
        else:
            weight = conv.weight
        out = F.conv1d(context.transpose(1, 2), weight, conv.bias, groups=conv.groups)
        return self.pos_conv[2](out).transpose(1, 2)

    def frame_padding_mask(
        self, padding_mask: torch.Tensor | None, num_frames: int, bsz: int
    ) -> torch.Tensor:
        """Bool [B,T], True = padding, from the sample padding mask (fairseq's length rule)."""
        if padding_mask is None:
            device = self.output_proj.weight.device
            return torch.zeros(bsz, num_frames, dtype=torch.bool, device=device)
        lengths = conv_output_lengths((~padding_mask).long().sum(-1), self.conv_layers_spec)
        frames = torch.arange(num_frames, device=padding_mask.device)
        return frames[None, :] >= lengths[:, None]

    def attention_mask(self, num_frames: int, frame_pad: torch.Tensor) -> torch.Tensor | None:
        """Bool self-attention mask (True = may attend): chunk mask and key padding, or None."""
        mask = None
        if self.chunk_size is not None:
            mask = chunk_mask(num_frames, self.chunk_size, self.history_size, frame_pad.device)
        if not frame_pad.any():
            return mask
        allowed = ~frame_pad[:, None, None, :]
        allowed = allowed.expand(-1, 1, num_frames, -1) if mask is None else allowed & mask
        # a padded query whose keys are all masked attends to itself (finite, ignored values)
        eye = torch.eye(num_frames, dtype=torch.bool, device=frame_pad.device)
        return allowed | (eye & ~allowed.any(-1, keepdim=True))

    def forward(
        self, source: torch.Tensor, padding_mask: torch.Tensor | None = None, **unused: Any
    ) -> dict[str, Any]:
        """Raw 16 kHz audio [B,S] (padding_mask [B,S], True = pad) -> dict with ``logits``
        [B,T,V], ``hidden`` (every block's output [B,T,D]) and ``padding_mask`` [B,T]."""
        x = self.cnn_features(source)
        bsz, num_frames, _ = x.shape
        frame_pad = self.frame_padding_mask(padding_mask, num_frames, bsz)
        if frame_pad.any():
            x = x.masked_fill(frame_pad[..., None], 0.0)
        if self.cfg.causal_pos_conv:
            pad = x.new_zeros(bsz, self.pos_conv[0].kernel_size[0] - 1, x.shape[2])
            x = x + self.causal_pos_embedding(torch.cat([pad, x], dim=1))
        else:
            x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.encoder_layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        attn_mask = self.attention_mask(num_frames, frame_pad)
        hidden = []
        for layer in self.layers:
            x, _ = layer(x, attn_mask=attn_mask)
            hidden.append(x)
        if self.layer_norm_first:
            x = self.encoder_layer_norm(x)
        return {"logits": self.predict(x), "hidden": hidden, "padding_mask": frame_pad}

    def get_logits(self, net_output: dict[str, Any]) -> torch.Tensor:
        """Logits time-first [T,B,V], fairseq's CTC convention (Wav2VecCtc, ctc criterion)."""
        return net_output["logits"].transpose(0, 1)

    def get_normalized_probs(
        self, net_output: dict[str, Any], log_probs: bool, sample: Any = None
    ) -> torch.Tensor:
        """(Log-)softmax of the logits, time-first [T,B,V] as fairseq's CTC criterion expects."""
        logits = self.get_logits(net_output).float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def stream(self, audio: torch.Tensor | Iterable[torch.Tensor]) -> torch.Tensor:
        """Chunk-streaming inference (see :class:`StreamingEncoder`): logits [B,T,V].

        ``audio`` is [B,S] (fed in pieces of ``chunk_size`` frames) or an iterable of [B,n]
        pieces as they arrive.
        """
        from speechkd.fairseq_plugin.models.streaming_encoder import StreamingEncoder

        return StreamingEncoder(self).stream(audio)


def load_arch(arch: str | Path, variant: str | None = None, **overrides: Any) -> W2V2StudentConfig:
    """Config of an architecture file (``T1``, ``S5``, ``tiny_student`` … or a YAML path) with a
    variant's settings (``teacher``, ``sn``, ``ss``) and explicit overrides on top."""
    path = Path(arch)
    if not path.suffix:
        path = ARCH_DIR / f"{arch}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in ARCH_DIR.glob("*.yaml"))
        raise ConfigError(f"{arch}: no architecture file {path} (known: {', '.join(known)})")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of model options")
    values.pop("_name", None)
    if variant is not None:
        if variant not in VARIANTS:
            raise ConfigError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
        values.update(VARIANTS[variant])
    values.update(overrides)
    names = {f.name for f in fields(W2V2StudentConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown model option(s) {', '.join(unknown)}")
    return W2V2StudentConfig(**values)


def build_student(
    arch: str | Path, variant: str | None = None, num_outputs: int | None = None, **overrides: Any
) -> W2V2Student:
    """A randomly initialised model of an architecture file (see :func:`load_arch`)."""
    return W2V2Student(load_arch(arch, variant, **overrides), num_outputs)
