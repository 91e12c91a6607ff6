"""Language modules on disk: each language's CLSR experts and gates, saved separately.

Layout of a module directory::

    <dir>/<lang>.safetensors   expert and gate tensors of every layer (language-neutral names,
                               see :func:`speechkd.whisper.clsr.language_module_tensors`)
    <dir>/<lang>.json          language, model dimensions and their hash, layer list, options

:func:`load_language_modules` puts the requested languages onto a Whisper model (installing CLSR
when the model has none) and opens only those languages' files, so a model serving {ca, th} never
reads another language's modules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_path, atomic_write_text
from speechkd.whisper.clsr import (
    CLSRFeedForward,
    CLSROptions,
    add_clsr,
    clsr_modules,
    clsr_options,
    has_clsr,
    installed_languages,
    iter_clsr_layers,
    language_module_tensors,
    remove_language,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODULE_SUFFIX = ".safetensors"
META_SUFFIX = ".json"


def model_dims(model: nn.Module, gate_dim: int | None = None) -> dict[str, Any]:
    """Dimensions that language modules must match: d_model, layer counts, FFN and gate sizes.

    Works on stock and CLSR models; ``gate_dim`` defaults to the installed one (64 without CLSR).
    """
    first_fc1: dict[str, nn.Linear] = {}
    counts = {"encoder": 0, "decoder": 0}
    for side, _, layer in iter_clsr_layers(model):
        clsr = getattr(layer, "clsr", None)
        fc1 = clsr.shared.fc1 if isinstance(clsr, CLSRFeedForward) else layer.fc1
        first_fc1.setdefault(side, fc1)
        counts[side] += 1
    if gate_dim is None:
        gate_dim = clsr_options(model).gate_dim if has_clsr(model) else CLSROptions().gate_dim
    return {
        "d_model": first_fc1["encoder"].in_features,
        "encoder_layers": counts["encoder"],
        "decoder_layers": counts["decoder"],
        "encoder_ffn_dim": first_fc1["encoder"].out_features,
        "decoder_ffn_dim": first_fc1["decoder"].out_features,
        "gate_dim": gate_dim,
    }


def dims_hash(dims: dict[str, Any]) -> str:
    """A short stable hash of the model dimensions."""
    text = json.dumps(dims, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def module_paths(directory: str | os.PathLike, language: str) -> tuple[Path, Path]:
    """(tensor file, metadata file) of ``language`` in ``directory``."""
    directory = Path(directory)
    return directory / f"{language}{MODULE_SUFFIX}", directory / f"{language}{META_SUFFIX}"


def save_language_modules(
    model: nn.Module,
    directory: str | os.PathLike,
    languages: Sequence[str] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> list[Path]:
    """Write each language's experts and gates to ``<directory>/<lang>.safetensors`` (+ json).

    ``languages`` defaults to all installed ones. ``extra_metadata`` (e.g. the base model name and
    the training config) is stored in the json. Files are written atomically. Returns the tensor
    files written.
    """
    from safetensors.torch import save_file

    if languages is None:
        languages = installed_languages(model)
    dims = model_dims(model)
    options = clsr_options(model)
    layers = [f"{m.side}.layers.{m.layer_index}" for m in clsr_modules(model)]
    written: list[Path] = []
    for language in languages:
        tensors = {
            name: parameter.detach().to("cpu").contiguous().clone()
            for name, parameter in language_module_tensors(model, language).items()
        }
        tensor_path, meta_path = module_paths(directory, language)
        metadata = {
            "format_version": FORMAT_VERSION,
            "language": language,
            "model_dims": dims,
            "dims_hash": dims_hash(dims),
            "layers": layers,
            "num_parameters": sum(t.numel() for t in tensors.values()),
            "dtype": str(next(iter(tensors.values())).dtype).replace("torch.", ""),
            "options": {
                "gate_dim": options.gate_dim,
                "gate_dropout": options.gate_dropout,
                "expert_dropout": options.expert_dropout,
            },
            "extra": extra_metadata or {},
        }
        with atomic_path(tensor_path) as tmp:
            save_file(
                tensors,
                str(tmp),
                metadata={"language": language, "dims_hash": metadata["dims_hash"]},
            )
        atomic_write_text(meta_path, json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        written.append(tensor_path)
        logger.info(
            "saved %s language modules (%d tensors) to %s", language, len(tensors), tensor_path
        )
    return written


def read_module_metadata(directory: str | os.PathLike, language: str) -> dict[str, Any]:
    """The json metadata of ``language``'s modules in ``directory``."""
    _, meta_path = module_paths(directory, language)
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: no language module metadata for {language!r}")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{meta_path}: cannot read language module metadata: {error}") from error
    if metadata.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{meta_path}: format_version {metadata.get('format_version')!r} is not "
            f"{FORMAT_VERSION}"
        )
    if metadata.get("language") != language:
        raise DataError(
            f"{meta_path}: field 'language' is {metadata.get('language')!r}, expected {language!r}"
        )
    return metadata


def _check_dims(meta_path: Path, metadata: dict[str, Any], dims: dict[str, Any]) -> None:
    stored = metadata.get("model_dims", {})
    for key, value in dims.items():
        if stored.get(key) != value:
            raise DataError(
                f"{meta_path}: field model_dims.{key} is {stored.get(key)!r} but the model has "
                f"{value!r}"
            )


def load_language_modules(
    model: nn.Module,
    directory: str | os.PathLike,
    languages: Sequence[str],
    **clsr_options_: Any,
) -> nn.Module:
    """Load ``languages``' experts and gates from ``directory`` onto a Whisper model, in place.

    A stock model gets CLSR installed first (``clsr_options_`` are passed to :func:`add_clsr`;
    the gate size is taken from the files when not given). Only ``<lang>.json`` and
    ``<lang>.safetensors`` of the requested languages are opened. A file made for a model of
    other dimensions raises DataError naming the file and the field or tensor. Returns ``model``.
    """
    if isinstance(languages, str):
        languages = [languages]
    metadata = {language: read_module_metadata(directory, language) for language in languages}
    if not has_clsr(model) and metadata and "gate_dim" not in clsr_options_:
        gate_dims = {m.get("model_dims", {}).get("gate_dim") for m in metadata.values()}
        if len(gate_dims) == 1 and None not in gate_dims:
            clsr_options_["gate_dim"] = gate_dims.pop()
    dims = model_dims(model, clsr_options_.get("gate_dim"))
    for language in languages:
        tensor_path, meta_path = module_paths(directory, language)
        _check_dims(meta_path, metadata[language], dims)
        if not tensor_path.is_file():
            raise DataError(f"{tensor_path}: language module file for {language!r} is missing")
    already = set(installed_languages(model))
    add_clsr(model, list(languages), **clsr_options_)
    try:
        for language in languages:
            _load_one(model, module_paths(directory, language)[0], language)
    except Exception:
        for language in languages:
            if language not in already:
                remove_language(model, language)
        raise
    return model


def _load_one(model: nn.Module, tensor_path: Path, language: str) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(tensor_path))
    except (OSError, SafetensorError) as error:
        raise DataError(f"{tensor_path}: cannot read language modules: {error}") from error
    targets = language_module_tensors(model, language)
    missing = sorted(set(targets) - set(stored))
    unexpected = sorted(set(stored) - set(targets))
    if missing:
        raise DataError(f"{tensor_path}: tensor {missing[0]} is missing ({len(missing)} in all)")
    if unexpected:
        raise DataError(
            f"{tensor_path}: tensor {unexpected[0]} does not exist in the model "
            f"({len(unexpected)} unexpected in all)"
        )
    for name, parameter in targets.items():
        if stored[name].shape != parameter.shape:
            raise DataError(
                f"{tensor_path}: tensor {name} has shape {tuple(stored[name].shape)} but the "
                f"model expects {tuple(parameter.shape)}"
            )
    with torch.no_grad():
        for name, parameter in targets.items():
            parameter.copy_(stored[name].to(device=parameter.device, dtype=parameter.dtype))
    logger.info("loaded %s language modules from %s", language, tensor_path)


def available_languages(directory: str | os.PathLike) -> list[str]:
    """Languages with a module file in ``directory`` (lists file names only, opens none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = (p.name for p in directory.glob(f"*{MODULE_SUFFIX}"))
    return sorted(n[: -len(MODULE_SUFFIX)] for n in names if not n.startswith(".tmp-"))
