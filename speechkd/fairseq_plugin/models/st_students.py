"""Joint speech/text translation teacher and its layer-pruned students (joint ST KD paper, §2).

The model is fairseq's dual-input ``dual_input_xm_transformer``
(``examples/speech_text_joint_to_text``) in its stacked layout: wav2vec2 (the first
``w2v_encoder_layers - drop_w2v_layers`` transformer layers and the CNN front end) → a 3-layer
stride-2 conv adaptor → the mBART encoder layers, which the text encoder shares (the same
``ModuleList``) → one mBART decoder for both modalities. Forward, batches and outputs are
fairseq's own (same modules), so the task ``speech_text_joint_to_text`` and its criteria
(``guided_label_smoothed_cross_entropy_with_accuracy`` …) work unchanged.

Registered models (use with ``--user-dir speechkd/fairseq_plugin``):

``speechkd_dual_input_xm`` (arch of the same name)
    The teacher (``SphEnc-TxtEnc-Dec`` 12-12-12). With ``--w2v-path`` /
    ``--load-pretrained-mbart-from`` (both checked by
    :func:`speechkd.fairseq_plugin.checkpoints.check_trusted`, ``--pretrained-trust-pickle``)
    it starts from wav2vec2 / mBART; without them it is built from the ``--w2v-*`` and mBART
    dimensions with random weights (tests, parameter tables). LNA fine-tuning (only LayerNorm
    and attention of the pretrained parts are trained) is fairseq's ``--finetune-w2v-params``,
    ``--finetune-mbart-encoder-params``, ``--finetune-mbart-decoder-params`` (substrings of the
    parameter names, ``all`` for everything); the random adaptor lives in the speech encoder,
    so the w2v list must name ``adaptor``.
``speechkd_dual_input_xm_student`` (arch of the same name)
    ``--student-speech-layers`` / ``--encoder-layers`` / ``--decoder-layers`` deep (6-6-6,
    8-8-2 …), initialised (``--student-init``) from the pretrained wav2vec2/mBART
    (``pretrained``), from a fine-tuned teacher checkpoint (``teacher``,
    ``--student-init-checkpoint``) or randomly (``none``), by copying maximally spaced layers
    (:func:`speechkd.layer_map`) and every non-layer tensor as is
    (:func:`init_student_from_teacher`; ``--student-layer-map`` JSON overrides parts). The
    teacher layer behind each student layer is kept in the checkpoint's model config
    (``speechkd_student_layer_map``) and on the model (``student_layer_map``), see
    :func:`student_layer_map`; :func:`layer_modules` gives each part's layers (for KD hooks).
    The recipes build students from :func:`student_init_overrides`: from the pre-trained
    wav2vec2/mBART by default (the paper), from the fine-tuned teacher as an option.

Architecture files: ``conf/st_kd/arch/*.yaml`` (``arch:`` and ``model:`` with fairseq model
options); :func:`fairseq_train_args` renders one as ``fairseq-train`` flags,
:func:`build_from_config` builds it in-process (``device="meta"`` counts parameters without
memory).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

import torch
import yaml
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, register_model, register_model_architecture
from omegaconf import OmegaConf

from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.checkpoints import (
    check_trusted,
    load_fairseq_model,
    trusted_pickle_loads,
)
from speechkd.layer_maps import layer_map

logger = logging.getLogger(__name__)

ARCH_DIR = Path(__file__).resolve().parents[3] / "conf" / "st_kd" / "arch"
JOINT_ST = "speech_text_joint_to_text"
PARTS = ("speech", "text", "decoder")
STUDENT_INITS = ("pretrained", "teacher", "none")
# the recipes' names of a student's initialisation (Table 3: C:pre-trained, C:fine-tuned) and the
# --student-init each means; "teacher" is a synonym of "finetuned"
RECIPE_STUDENT_INITS = {"pretrained": "pretrained", "finetuned": "teacher", "teacher": "teacher"}
DEFAULT_STUDENT_INIT = "pretrained"  # the paper's (Sec. 5.1: C:pre-trained beats C:fine-tuned)

# state-dict keys of the layer-indexed tensors of each part: (prefix, layer index, rest)
LAYER_KEY_PATTERNS: dict[str, re.Pattern] = {
    "speech": re.compile(
        r"^(encoder\.spch_encoder\.w2v_encoder\.w2v_model\.encoder\.layers\.)(\d+)(\..+)$"
    ),
    "text": re.compile(
        r"^(encoder\.spch_encoder\.mbart_encoder_layers\.|encoder\.text_encoder\.layers\.)"
        r"(\d+)(\..+)$"
    ),
    "decoder": re.compile(r"^(decoder\.(?:spch|text)_decoder\.layers\.)(\d+)(\..+)$"),
}


def import_joint_st(submodule: str = "") -> ModuleType:
    """fairseq's ``examples/speech_text_joint_to_text[.submodule]``, imported once.

    The example's criteria import themselves as ``examples.speech_text_joint_to_text…``, so
    ``examples`` is made an alias of ``fairseq.examples`` and every module is reachable under both
    names (``examples.…`` and ``fairseq.examples.…``) as one module object: importing it by either
    name later registers nothing twice.
    """
    name = f"{JOINT_ST}.{submodule}" if submodule else JOINT_ST
    for prefix in ("examples.", "fairseq.examples."):
        module = sys.modules.get(prefix + name)
        if module is not None:
            _alias_joint_st(name)
            return module
    import fairseq.examples

    examples = sys.modules.setdefault("examples", fairseq.examples)
    if not (Path(next(iter(examples.__path__))) / JOINT_ST).is_dir():
        raise ConfigError(
            f"the imported top-level module 'examples' ({examples.__path__}) has no {JOINT_ST}; "
            "fairseq's examples package is needed"
        )
    module = importlib.import_module("examples." + name)
    _alias_joint_st(name)
    return module


def _alias_joint_st(name: str) -> None:
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        for src, dst in (("examples.", "fairseq.examples."), ("fairseq.examples.", "examples.")):
            if src + sub in sys.modules:
                sys.modules.setdefault(dst + sub, sys.modules[src + sub])


# fairseq's --user-dir import also imports every models/*.py as
# ``fairseq_plugin.models.<name>``: that name is this module, so nothing registers twice
sys.modules.setdefault(
    f"{Path(__file__).resolve().parents[1].name}.models.{Path(__file__).stem}",
    sys.modules[__name__],
)

_xm = import_joint_st("models.s2t_dualinputxmtransformer")
import_joint_st("tasks.speech_text_joint")  # the task this model is trained with
DualInputXMTransformerModel = _xm.DualInputXMTransformerModel
StackedWav2VecEncoderWithAdaptor = _xm.StackedWav2VecEncoderWithAdaptor
dualinputxmtransformer_base = _xm.dualinputxmtransformer_base


class _SkipDuplicateOptions:
    """An argparse parser/group that ignores options already defined (fairseq's
    ``DualInputXMTransformerModel.add_args`` defines ``--encoder-embed-dim`` twice)."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser

    def add_argument(self, *names: str, **kwargs: Any) -> Any:
        if any(n in self._parser._option_string_actions for n in names if n.startswith("-")):
            return None
        return self._parser.add_argument(*names, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._parser, attr)


def _str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def _set_default(args: Any, name: str, value: Any) -> None:
    if getattr(args, name, None) is None:
        setattr(args, name, value)


# ---------------------------------------------------------------------------------------------
# the teacher: fairseq's model, buildable without checkpoints


@register_model("speechkd_dual_input_xm")
class DualInputXMModel(DualInputXMTransformerModel):
    """fairseq's stacked wav2vec2 + adaptor + mBART dual-input model (see the module docstring)."""

    @staticmethod
    def add_args(parser: Any) -> None:
        DualInputXMTransformerModel.add_args(_SkipDuplicateOptions(parser))
        parser.add_argument(
            "--pretrained-trust-pickle",
            type=_str2bool,
            metavar="BOOL",
            help="the --w2v-path / --load-pretrained-mbart-from checkpoints are trusted pickles",
        )
        # wav2vec2 dimensions, used when --w2v-path is not given (random initialisation)
        parser.add_argument(
            "--w2v-encoder-layers",
            type=int,
            metavar="N",
            help="wav2vec2 transformer layers (before --drop-w2v-layers)",
        )
        parser.add_argument("--w2v-embed-dim", type=int, metavar="N")
        parser.add_argument("--w2v-ffn-embed-dim", type=int, metavar="N")
        parser.add_argument("--w2v-attention-heads", type=int, metavar="N")
        parser.add_argument(
            "--w2v-conv-feature-layers",
            type=str,
            metavar="EXPR",
            help="wav2vec2 CNN: list of (dim, kernel, stride)",
        )
        parser.add_argument("--w2v-extractor-mode", choices=["default", "layer_norm"])
        parser.add_argument("--w2v-layer-norm-first", type=_str2bool, metavar="BOOL")
        parser.add_argument("--w2v-conv-bias", type=_str2bool, metavar="BOOL")
        parser.add_argument(
            "--w2v-conv-pos",
            type=int,
            metavar="N",
            help="kernel of the convolutional positional embedding",
        )
        parser.add_argument("--w2v-conv-pos-groups", type=int, metavar="N")

    @classmethod
    def build_model(cls, args: Any, task: Any) -> DualInputXMModel:
        """Build (loading wav2vec2 / mBART only on a first build with their paths)."""
        speechkd_dual_input_xm(args)
        _check_layout(args)
        loads = False
        if getattr(args, "w2v_args", None) is None:
            if args.w2v_path:
                check_trusted(args.w2v_path, bool(args.pretrained_trust_pickle))
                loads = True
            else:
                args.w2v_args = w2v_config_from_dims(args, args.w2v_encoder_layers)
        mbart = args.load_pretrained_mbart_from
        if getattr(args, "speechkd_pretrained_loaded", False):
            mbart = None  # rebuilt from its own checkpoint: the weights come from there
        elif mbart:
            check_trusted(mbart, bool(args.pretrained_trust_pickle))
            loads = True
        given = args.load_pretrained_mbart_from
        args.load_pretrained_mbart_from = mbart
        try:
            with trusted_pickle_loads(loads):
                model = super().build_model(args, task)
        finally:
            args.load_pretrained_mbart_from = given
        if args.w2v_path or mbart:
            args.speechkd_pretrained_loaded = True
        model.speechkd_w2v_args = args.w2v_args
        return model


def _check_layout(args: Any) -> None:
    if getattr(args, "share_w2v_text_encoder", False) or getattr(
        args, "stack_w2v_mbart_nonorm_encoder", False
    ):
        raise ConfigError(
            "speechkd_dual_input_xm: only the stacked layout (--stack-w2v-mbart-encoder) is "
            "supported; unset share_w2v_text_encoder / stack_w2v_mbart_nonorm_encoder"
        )


def _w2v_defaults(args: Any) -> None:
    """wav2vec2-large (LV-60 / XLS-R layout) dimensions and what fairseq's Wav2VecEncoder reads."""
    _set_default(args, "w2v_encoder_layers", 12)
    _set_default(args, "w2v_embed_dim", 1024)
    _set_default(args, "w2v_ffn_embed_dim", 4096)
    _set_default(args, "w2v_attention_heads", 16)
    _set_default(
        args, "w2v_conv_feature_layers", "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
    )
    _set_default(args, "w2v_extractor_mode", "layer_norm")
    _set_default(args, "w2v_layer_norm_first", True)
    _set_default(args, "w2v_conv_bias", True)
    _set_default(args, "w2v_conv_pos", 128)
    _set_default(args, "w2v_conv_pos_groups", 16)
    _set_default(args, "pretrained_trust_pickle", False)
    _set_default(args, "w2v_path", None)
    _set_default(args, "load_pretrained_mbart_from", None)
    # read by fairseq's Wav2VecEncoder, not declared by the dual-input model's add_args
    for name, value in (
        ("freeze_regex", None),
        ("load_ema", False),
        ("checkpoint_activations", False),
        ("offload_activations", False),
        ("min_params_to_wrap", 100_000_000),
        ("ddp_backend", "pytorch_ddp"),
        ("data", ""),
    ):
        _set_default(args, name, value)


@register_model_architecture("speechkd_dual_input_xm", "speechkd_dual_input_xm")
def speechkd_dual_input_xm(args: Any) -> None:
    """Teacher defaults: 12 wav2vec2-large layers, mBART-large 12/12, stacked encoder.

    fairseq's own argparse defaults stay: ``drop_w2v_layers`` 0 (a 24-layer checkpoint needs
    12) and ``activation_fn`` relu (mBART needs gelu); the architecture files set both.
    """
    _w2v_defaults(args)
    args.stack_w2v_mbart_encoder = True
    dualinputxmtransformer_base(args)


def w2v_config_from_dims(args: Any, n_layers: int) -> Any:
    """The ``w2v_args`` (model + task config) fairseq's Wav2VecEncoder builds a random wav2vec2
    from, with the fine-tuning overrides it would apply to a loaded checkpoint's config."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config

    model = Wav2Vec2Config(
        extractor_mode=args.w2v_extractor_mode,
        encoder_layers=int(n_layers),
        encoder_embed_dim=args.w2v_embed_dim,
        encoder_ffn_embed_dim=args.w2v_ffn_embed_dim,
        encoder_attention_heads=args.w2v_attention_heads,
        conv_feature_layers=args.w2v_conv_feature_layers,
        conv_bias=bool(args.w2v_conv_bias),
        layer_norm_first=bool(args.w2v_layer_norm_first),
        conv_pos=args.w2v_conv_pos,
        conv_pos_groups=args.w2v_conv_pos_groups,
        # Wav2VecEncoder's arg_overrides for a loaded checkpoint
        dropout=args.dropout,
        attention_dropout=args.attention_dropout,
        activation_dropout=args.activation_dropout,
        dropout_input=args.dropout_input,
        encoder_layerdrop=args.layerdrop,
        feature_grad_mult=args.feature_grad_mult,
        mask_length=args.mask_length,
        mask_prob=args.mask_prob,
        mask_selection=args.mask_selection,
        mask_other=args.mask_other,
        no_mask_overlap=args.no_mask_overlap,
        mask_channel_length=args.mask_channel_length,
        mask_channel_prob=args.mask_channel_prob,
        mask_channel_before=args.mask_channel_before,
        mask_channel_selection=args.mask_channel_selection,
        mask_channel_other=args.mask_channel_other,
        no_mask_channel_overlap=args.no_mask_channel_overlap,
    )
    model_dict = OmegaConf.to_container(OmegaConf.structured(model), enum_to_str=True)
    model_dict["_name"] = "wav2vec2"
    task = {"_name": "audio_pretraining", "data": "", "normalize": bool(args.normalize)}
    return OmegaConf.create({"model": model_dict, "task": task})


# ---------------------------------------------------------------------------------------------
# layer depths, maps and the copy


def layer_modules(model: Any) -> dict[str, torch.nn.ModuleList]:
    """The transformer layers of each part: ``speech`` (wav2vec2), ``text`` (the mBART encoder
    layers, shared by both modalities) and ``decoder`` (shared by both)."""
    encoder = model.encoder
    if not isinstance(encoder.spch_encoder, StackedWav2VecEncoderWithAdaptor):
        raise ConfigError(
            f"{type(model).__name__}: expected the stacked wav2vec2+mBART speech encoder, got "
            f"{type(encoder.spch_encoder).__name__}"
        )
    return {
        "speech": encoder.spch_encoder.w2v_encoder.w2v_model.encoder.layers,
        "text": encoder.text_encoder.layers,
        "decoder": model.decoder.text_decoder.layers,
    }


def layer_depths(model: Any) -> dict[str, int]:
    """Number of transformer layers of each part (see :func:`layer_modules`)."""
    return {part: len(layers) for part, layers in layer_modules(model).items()}


def default_layer_maps(
    teacher_depths: Mapping[str, int], student_depths: Mapping[str, int]
) -> dict[str, list[int]]:
    """Maximally spaced teacher layers for each part (:func:`speechkd.layer_map`)."""
    return {p: layer_map(int(teacher_depths[p]), int(student_depths[p])) for p in PARTS}


def _check_maps(
    maps: Mapping[str, Sequence[int]],
    teacher_depths: Mapping[str, int],
    student_depths: Mapping[str, int],
) -> dict[str, list[int]]:
    unknown = sorted(set(maps) - set(PARTS))
    if unknown:
        raise ConfigError(f"layer map: unknown part(s) {unknown}, expected {list(PARTS)}")
    checked = default_layer_maps(teacher_depths, student_depths)
    for part, layers in maps.items():
        layers = [int(x) for x in layers]
        if len(layers) != student_depths[part]:
            raise ConfigError(
                f"layer map[{part}]: {len(layers)} entries for {student_depths[part]} student "
                "layers"
            )
        last = teacher_depths[part] - 1
        bad = [x for x in layers if not 0 <= x <= last]
        if bad:
            raise ConfigError(f"layer map[{part}]: teacher layers {bad} out of range 0..{last}")
        checked[part] = layers
    return checked


def _teacher_key(key: str, maps: Mapping[str, Sequence[int]]) -> tuple[str, str | None]:
    """(teacher state-dict key, part or None) of a student key."""
    for part, pattern in LAYER_KEY_PATTERNS.items():
        match = pattern.match(key)
        if match:
            return f"{match[1]}{maps[part][int(match[2])]}{match[3]}", part
    return key, None


@torch.no_grad()
def init_student_from_teacher(
    student: Any, teacher: Any, maps: Mapping[str, Sequence[int]] | None = None
) -> dict[str, list[int]]:
    """Copy teacher weights into ``student``: student layer ``l`` of each part from teacher layer
    ``maps[part][l]`` (default :func:`default_layer_maps`), every other tensor (CNN front end,
    adaptor, embeddings, layer norms, output projection) as is.

    Returns ``{"speech": [...], "text": [...], "decoder": [...]}``: the teacher layer each student
    layer came from. Raises :class:`ConfigError` on a missing tensor or a shape mismatch.
    """
    t_depths, s_depths = layer_depths(teacher), layer_depths(student)
    maps = _check_maps(maps or {}, t_depths, s_depths)
    t_state = teacher.state_dict()
    used: set[str] = set()
    for key, value in student.state_dict().items():
        t_key, _ = _teacher_key(key, maps)
        source = t_state.get(t_key)
        if source is None:
            raise ConfigError(f"student tensor {key}: the teacher has no {t_key}")
        if source.shape != value.shape:
            raise ConfigError(
                f"student tensor {key} {tuple(value.shape)} vs teacher {t_key} "
                f"{tuple(source.shape)}: the student's dimensions must be the teacher's"
            )
        value.copy_(source)
        used.add(t_key)
    patterns = LAYER_KEY_PATTERNS.values()
    left = sorted(k for k in t_state if k not in used and not any(p.match(k) for p in patterns))
    if left:
        raise ConfigError(f"teacher tensors without a student counterpart: {left[:5]}")
    return {part: list(maps[part]) for part in PARTS}


def student_layer_map(model_or_args: Any) -> dict[str, list[int]] | None:
    """The stored ``{"speech"|"text"|"decoder": teacher layers}`` of a student model or its
    fairseq model config (``cfg.model``); None when it was not initialised from a source."""
    if isinstance(model_or_args, torch.nn.Module):
        stored = getattr(model_or_args, "student_layer_map", None)
    else:  # cfg.model: its student_layer_map is the --student-layer-map request
        stored = getattr(model_or_args, "speechkd_student_layer_map", None)
    if stored is None:
        return None
    return json.loads(stored) if isinstance(stored, str) else dict(stored)


# ---------------------------------------------------------------------------------------------
# the students


@register_model("speechkd_dual_input_xm_student")
class DualInputXMStudent(DualInputXMModel):
    """A layer-pruned :class:`DualInputXMModel` initialised from a source (module docstring)."""

    student_layer_map: dict[str, list[int]] | None = None

    @staticmethod
    def add_args(parser: Any) -> None:
        DualInputXMModel.add_args(parser)
        parser.add_argument(
            "--student-speech-layers",
            type=int,
            metavar="N",
            help="wav2vec2 layers of the student (its text encoder and decoder: "
            "--encoder-layers, --decoder-layers)",
        )
        parser.add_argument(
            "--student-init",
            choices=STUDENT_INITS,
            help="copy layers from the pretrained wav2vec2/mBART, from a "
            "fine-tuned teacher checkpoint, or none (random)",
        )
        parser.add_argument(
            "--student-init-checkpoint",
            type=str,
            metavar="PATH",
            help="teacher checkpoint for --student-init teacher",
        )
        parser.add_argument(
            "--student-init-trust-pickle",
            type=_str2bool,
            metavar="BOOL",
            help="--student-init-checkpoint is a trusted pickle",
        )
        parser.add_argument(
            "--student-source-encoder-layers",
            type=int,
            metavar="N",
            help="mBART encoder layers of --load-pretrained-mbart-from",
        )
        parser.add_argument(
            "--student-source-decoder-layers",
            type=int,
            metavar="N",
            help="mBART decoder layers of --load-pretrained-mbart-from",
        )
        parser.add_argument(
            "--student-layer-map",
            type=str,
            metavar="JSON",
            help='teacher layers per part, e.g. {"decoder": [0, 11]} (default: maximally spaced)',
        )

    @classmethod
    def build_model(cls, args: Any, task: Any, source: Any = None) -> DualInputXMStudent:
        """Build the student; initialise it from ``source`` (a teacher model) when given, else as
        ``--student-init`` says. A model config that already carries the layer map (a student
        checkpoint being loaded) only builds the architecture."""
        speechkd_dual_input_xm_student(args)
        stored = student_layer_map(args)
        if stored is not None and source is None:
            model = cls._build_skeleton(args, task, args.w2v_args)
            model.student_layer_map = stored
            return model
        init = "teacher" if source is not None else args.student_init
        if init == "none":
            if args.w2v_path or args.load_pretrained_mbart_from:
                raise ConfigError(
                    "student_init none builds a random student: drop w2v_path / "
                    "load_pretrained_mbart_from or choose student_init pretrained"
                )
            model = cls._build_skeleton(args, task, None)
            model.student_layer_map = None
            return model
        if init == "teacher" and source is None:
            if not args.student_init_checkpoint:
                raise ConfigError("student_init teacher needs student_init_checkpoint")
            overrides = {"data": args.data} if args.data else None
            trust = bool(args.student_init_trust_pickle)
            with trusted_pickle_loads(trust):
                source, cfg, _ = load_fairseq_model(args.student_init_checkpoint, trust, overrides)
            w2v_args = getattr(cfg.model, "w2v_args", None)
        elif init == "teacher":
            w2v_args = getattr(source, "speechkd_w2v_args", None)
        else:  # pretrained
            if not (args.w2v_path and args.load_pretrained_mbart_from):
                raise ConfigError(
                    "student_init pretrained needs w2v_path and load_pretrained_mbart_from "
                    "(or student_init none for a random student)"
                )
            source_args = argparse.Namespace(**vars(args))
            source_args.arch = "speechkd_dual_input_xm"
            source_args.encoder_layers = args.student_source_encoder_layers
            source_args.decoder_layers = args.student_source_decoder_layers
            source_args.w2v_args = None
            source_args.speechkd_pretrained_loaded = False
            source = DualInputXMModel.build_model(source_args, task)
            w2v_args = source_args.w2v_args
        if w2v_args is None:
            raise ConfigError("the source model's config has no w2v_args (wav2vec2 config)")
        model = cls._build_skeleton(args, task, w2v_args)
        explicit = json.loads(args.student_layer_map) if args.student_layer_map else {}
        maps = init_student_from_teacher(model, source, explicit)
        logger.info("student initialised (%s) from teacher layers %s", init, maps)
        args.speechkd_student_layer_map = json.dumps(maps)
        model.student_layer_map = maps
        return model

    @classmethod
    def _build_skeleton(cls, args: Any, task: Any, w2v_args: Any) -> DualInputXMStudent:
        """The student architecture with random weights; its wav2vec2 config goes to ``args``."""
        skel = argparse.Namespace(**vars(args))
        skel.arch = "speechkd_dual_input_xm_student"
        skel.w2v_path = None
        skel.load_pretrained_mbart_from = None
        skel.drop_w2v_layers = 0
        skel.speechkd_pretrained_loaded = False
        if w2v_args is None:
            skel.w2v_args = w2v_config_from_dims(args, args.student_speech_layers)
        else:
            skel.w2v_args = copy.deepcopy(w2v_args)
            skel.w2v_args.model.encoder_layers = int(args.student_speech_layers)
        model = DualInputXMModel.build_model.__func__(cls, skel, task)
        args.w2v_args = skel.w2v_args
        return model


def student_init_kind(init: str) -> str:
    """``--student-init`` of a recipe's initialisation name (:data:`RECIPE_STUDENT_INITS`)."""
    try:
        return RECIPE_STUDENT_INITS[init]
    except KeyError:
        known = ", ".join(RECIPE_STUDENT_INITS)
        raise ConfigError(f"student init {init!r}: expected one of {known}") from None


def student_init_overrides(
    init: str = DEFAULT_STUDENT_INIT,
    *,
    teacher: str | Path | None = None,
    w2v: str | Path | None = None,
    mbart: str | Path | None = None,
    trust: bool = False,
) -> dict[str, Any]:
    """Architecture-file overrides of a student initialised as ``init``.

    ``pretrained`` (the default, as the paper): its layers are pruned from the pre-trained
    wav2vec 2.0 ``w2v`` and mBART ``mbart``; ``finetuned`` (or ``teacher``): from the fine-tuned
    teacher checkpoint ``teacher``. Both use the same maximally spaced layers. ``trust``: the
    checkpoints are trusted pickles.
    """
    if student_init_kind(init) == "pretrained":
        if not (w2v and mbart):
            raise ConfigError(f"student init {init}: give the wav2vec 2.0 and mBART checkpoints")
        return {
            "student_init": "pretrained",
            "student_init_checkpoint": None,
            "w2v_path": str(w2v),
            "load_pretrained_mbart_from": str(mbart),
            "pretrained_trust_pickle": trust,
        }
    if not teacher:
        raise ConfigError(f"student init {init}: give the fine-tuned teacher checkpoint")
    return {
        "student_init": "teacher",
        "student_init_checkpoint": str(teacher),
        "student_init_trust_pickle": trust,
        "w2v_path": None,
        "load_pretrained_mbart_from": None,
    }


@register_model_architecture("speechkd_dual_input_xm_student", "speechkd_dual_input_xm_student")
def speechkd_dual_input_xm_student(args: Any) -> None:
    """Student defaults: 6-6-6 from the pretrained wav2vec2-large (first 12 layers) / mBART."""
    _w2v_defaults(args)
    _set_default(args, "student_speech_layers", 6)
    _set_default(args, "encoder_layers", 6)
    _set_default(args, "decoder_layers", 6)
    _set_default(args, "student_init", "pretrained")
    _set_default(args, "student_init_checkpoint", None)
    _set_default(args, "student_init_trust_pickle", False)
    _set_default(args, "student_source_encoder_layers", 12)
    _set_default(args, "student_source_decoder_layers", 12)
    _set_default(args, "student_layer_map", None)
    args.stack_w2v_mbart_encoder = True
    dualinputxmtransformer_base(args)


MODEL_CLASSES: dict[str, type] = {
    "speechkd_dual_input_xm": DualInputXMModel,
    "speechkd_dual_input_xm_student": DualInputXMStudent,
}


# ---------------------------------------------------------------------------------------------
# architecture files


def load_arch_config(arch: str | Path) -> dict[str, Any]:
    """``{"arch": ..., "model": {...}}`` of ``conf/st_kd/arch/<arch>.yaml`` or a YAML path."""
    path = Path(arch)
    if not path.suffix:
        path = ARCH_DIR / f"{arch}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in ARCH_DIR.glob("*.yaml"))
        raise ConfigError(f"{arch}: no architecture file {path} (known: {', '.join(known)})")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict) or not isinstance(config.get("model", {}), dict):
        raise ConfigError(f"{path}: expected a mapping with 'arch' and a 'model' mapping")
    if config.get("arch") not in MODEL_CLASSES:
        raise ConfigError(
            f"{path}: arch must be one of {sorted(MODEL_CLASSES)}, got {config.get('arch')!r}"
        )
    config.setdefault("model", {})
    config["path"] = str(path)
    return config


def _model_parser(arch: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(argument_default=argparse.SUPPRESS, allow_abbrev=False)
    MODEL_CLASSES[arch].add_args(parser)
    return parser


def fairseq_train_args(arch: str | Path | Mapping[str, Any], **overrides: Any) -> list[str]:
    """``["--arch", NAME, --option value …]`` of an architecture file (``overrides`` on top;
    a None value drops an option, a boolean store-true option is a bare flag)."""
    config = arch if isinstance(arch, Mapping) else load_arch_config(arch)
    name = config["arch"]
    values = {**config.get("model", {}), **overrides}
    actions = {a.dest: a for a in _model_parser(name)._actions}
    flags = ["--arch", name]
    for key, value in values.items():
        action = actions.get(key)
        if action is None:
            raise ConfigError(f"{config.get('path', name)}: unknown model option {key!r}")
        if value is None:
            continue
        option = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ConfigError(f"{config.get('path', name)}: {key} must be true/false")
            if value:
                flags.append(option)
        elif isinstance(value, bool):
            flags += [option, "true" if value else "false"]
        else:
            flags += [option, str(value)]
    return flags


def config_to_args(arch: str | Path | Mapping[str, Any], **overrides: Any) -> argparse.Namespace:
    """The fairseq model config (``cfg.model`` Namespace) of an architecture file, as
    ``fairseq-train`` would parse :func:`fairseq_train_args`, with the arch defaults applied."""
    flags = fairseq_train_args(arch, **overrides)
    name = flags[1]
    args = _model_parser(name).parse_args(flags[2:])
    args.arch = name
    ARCH_CONFIG_REGISTRY[name](args)
    return args


def make_dictionary(size: int) -> Dictionary:
    """A fairseq Dictionary of ``size`` entries (the 4 specials, then placeholder symbols)."""
    dictionary = Dictionary()
    if size < len(dictionary):
        raise ConfigError(f"vocabulary size {size} < {len(dictionary)} special symbols")
    for i in range(size - len(dictionary)):
        dictionary.add_symbol(f"tok{i}")
    return dictionary


def _skip_init(module: torch.nn.Module) -> None:
    """init_bert_params for meta tensors (which hold no values)."""


@contextmanager
def _device(device: str | torch.device) -> Iterator[None]:
    with ExitStack() as stack:
        if torch.device(device).type == "meta":
            from fairseq.models.wav2vec import wav2vec2

            # fairseq's init_bert_params copies through .cpu(), impossible for meta tensors
            stack.enter_context(mock.patch.object(wav2vec2, "init_bert_params", _skip_init))
        if torch.device(device).type != "cpu":
            stack.enter_context(torch.device(device))
        yield


def build_from_config(
    arch: str | Path | Mapping[str, Any],
    src_dict: Dictionary | int,
    tgt_dict: Dictionary | int | None = None,
    device: str | torch.device = "cpu",
    source: Any = None,
    **overrides: Any,
) -> Any:
    """The model of an architecture file, outside fairseq-train.

    ``src_dict`` / ``tgt_dict``: dictionaries or vocabulary sizes (``tgt_dict`` defaults to
    ``src_dict``). ``device="meta"`` builds without allocating (parameter counts). ``source``: a
    teacher model to initialise a student from (``student_init`` is then implied).
    """
    args = config_to_args(arch, **overrides)
    src = make_dictionary(src_dict) if isinstance(src_dict, int) else src_dict
    tgt = src if tgt_dict is None else tgt_dict
    tgt = make_dictionary(tgt) if isinstance(tgt, int) else tgt
    task = SimpleNamespace(src_dict=src, tgt_dict=tgt, source_dictionary=src, target_dictionary=tgt)
    cls = MODEL_CLASSES[args.arch]
    with _device(device):
        if source is not None:
            if cls is not DualInputXMStudent:
                raise ConfigError(f"{args.arch}: only a student is initialised from a source")
            return cls.build_model(args, task, source=source)
        return cls.build_model(args, task)
