"""A CTranslate2 Whisper model directory to a transformers model directory, without ctranslate2.

CTranslate2's ``model.bin`` (binary version 6, ``WhisperSpec``) is a flat list of named tensors:
``uint32`` binary version, the spec name and revision, then for each variable its name, rank,
dimensions, dtype id and raw little-endian bytes, then aliases (the output projection is an alias
of the token embedding). Strings are a ``uint16`` length (including a final NUL) and UTF-8 bytes.

The Whisper spec differs from transformers' layout in two ways that :func:`ct2_to_hf_state_dict`
undoes: the self-attention projections are fused (``linear_0`` holds q, k, v stacked along the
output dimension; cross-attention ``linear_1`` holds k, v), and the key projection has a bias
slot that Whisper leaves at zero (transformers' ``k_proj`` has no bias: a non-zero one is an
error, not dropped). :func:`import_ct2` writes ``config.json``, ``model.safetensors`` (float32),
``generation_config.json`` (with the language and task maps transformers' ``generate`` needs) and
the tokenizer built from openai-whisper's assets, checked token by token against the model's own
``vocabulary.json``.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_directory

logger = logging.getLogger(__name__)

SUPPORTED_BINARY_VERSIONS = (5, 6)
# CTranslate2's DataType enum order (append-only upstream).
CT2_DTYPES = (torch.float32, torch.int8, torch.int16, torch.int32, torch.float16, torch.bfloat16)
CT2_FILES = ("model.bin", "config.json")
LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")
TASK_TOKENS = {"translate": "<|translate|>", "transcribe": "<|transcribe|>"}


@dataclass
class Ct2Model:
    """The variables of a CTranslate2 ``model.bin`` (aliases resolved to their targets)."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]

    def get(self, name: str) -> torch.Tensor:
        if name not in self.variables:
            raise DataError(f"CTranslate2 {self.spec}: no variable {name!r}")
        return self.variables[name]

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(-1)[0])

    def num_layers(self, side: str) -> int:
        layers = {
            int(m.group(2)) for n in self.variables if (m := LAYER.match(n)) and m.group(1) == side
        }
        if layers != set(range(len(layers))) or not layers:
            raise DataError(
                f"CTranslate2 {self.spec}: {side} layers {sorted(layers)} are not 0..n-1"
            )
        return len(layers)


class _Reader:
    """Sequential reads from a ``model.bin`` buffer; truncation errors name the file and offset."""

    def __init__(self, path: Path, data: bytearray) -> None:
        self.path, self.data, self.pos = path, data, 0

    def take(self, size: int, what: str) -> int:
        start = self.pos
        if start + size > len(self.data):
            raise DataError(
                f"{self.path}: truncated or corrupt: {what} needs bytes {start}..{start + size} "
                f"but the file has {len(self.data)}"
            )
        self.pos += size
        return start

    def unpack(self, fmt: str, what: str) -> tuple:
        start = self.take(struct.calcsize("<" + fmt), what)
        return struct.unpack_from("<" + fmt, self.data, start)

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", what)
        start = self.take(length, what)
        raw = bytes(self.data[start : start + length])
        if length == 0 or raw[-1] != 0:
            raise DataError(f"{self.path}: corrupt {what} at byte {start} (no terminating NUL)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{self.path}: corrupt {what} at byte {start} (not UTF-8)") from None


def read_ct2_model(path: str | Path) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin``; a truncated or corrupt file raises ``DataError``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: CTranslate2 model.bin not found")
    data = bytearray(path.read_bytes())
    r = _Reader(path, data)
    (version,) = r.unpack("I", "binary version")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise DataError(
            f"{path}: CTranslate2 binary version {version}; this reader supports "
            f"{SUPPORTED_BINARY_VERSIONS} (a corrupt file, or a model from another release)"
        )
    spec = r.string("spec name")
    (revision,) = r.unpack("I", "spec revision")
    (count,) = r.unpack("I", "variable count")
    variables: dict[str, torch.Tensor] = {}
    for index in range(count):
        name = r.string(f"name of variable {index}")
        (rank,) = r.unpack("B", f"rank of {name}")
        shape = r.unpack("I" * rank, f"shape of {name}")
        (dtype_id,) = r.unpack("B", f"dtype of {name}")
        (num_bytes,) = r.unpack("I", f"size of {name}")
        if dtype_id >= len(CT2_DTYPES):
            raise DataError(f"{path}: variable {name} has unknown dtype id {dtype_id} (corrupt?)")
        dtype = CT2_DTYPES[dtype_id]
        numel = 1
        for dim in shape:
            numel *= dim
        if numel * dtype.itemsize != num_bytes:
            raise DataError(
                f"{path}: variable {name} of shape {tuple(shape)} and {dtype} declares "
                f"{num_bytes} bytes (corrupt)"
            )
        start = r.take(num_bytes, f"data of {name}")
        tensor = (
            torch.frombuffer(data, dtype=dtype, count=numel, offset=start)
            if numel
            else (torch.empty(0, dtype=dtype))
        )
        variables[name] = tensor.reshape(shape)
    if version >= 3:
        (num_aliases,) = r.unpack("I", "alias count")
        for _ in range(num_aliases):
            alias = r.string("alias name")
            target = r.string(f"target of alias {alias}")
            if target not in variables:
                raise DataError(f"{path}: alias {alias} names a missing variable {target}")
            variables[alias] = variables[target]
    if r.pos != len(data):
        raise DataError(f"{path}: {len(data) - r.pos} unexpected bytes after the last alias")
    return Ct2Model(spec=spec, revision=revision, variables=variables)


def _split(fused: torch.Tensor, parts: int, what: str) -> list[torch.Tensor]:
    if fused.shape[0] % parts:
        raise DataError(
            f"CTranslate2 {what}: first dimension {fused.shape[0]} not divisible by {parts}"
        )
    return list(fused.chunk(parts, dim=0))


def _zero_key_bias(bias: torch.Tensor, what: str) -> None:
    if bias.abs().max().item() != 0.0:
        raise DataError(
            f"CTranslate2 {what}: the key projection has a non-zero bias, which transformers' "
            "Whisper (k_proj without bias) cannot represent"
        )


def _attention(ct2: Ct2Model, src: str, dst: str, fused: str) -> dict[str, torch.Tensor]:
    """``q/k/v/out_proj`` of one attention block; ``fused`` is "qkv" (self) or "kv" (cross)."""
    out: dict[str, torch.Tensor] = {}
    if fused == "qkv":
        weights = _split(ct2.get(f"{src}/linear_0/weight"), 3, f"{src}/linear_0/weight")
        biases = _split(ct2.get(f"{src}/linear_0/bias"), 3, f"{src}/linear_0/bias")
        out_name = f"{src}/linear_1"
    else:
        q_w, q_b = ct2.get(f"{src}/linear_0/weight"), ct2.get(f"{src}/linear_0/bias")
        k_w, v_w = _split(ct2.get(f"{src}/linear_1/weight"), 2, f"{src}/linear_1/weight")
        k_b, v_b = _split(ct2.get(f"{src}/linear_1/bias"), 2, f"{src}/linear_1/bias")
        weights, biases = [q_w, k_w, v_w], [q_b, k_b, v_b]
        out_name = f"{src}/linear_2"
    _zero_key_bias(biases[1], src)
    for proj, weight, bias in zip(("q_proj", "k_proj", "v_proj"), weights, biases, strict=True):
        out[f"{dst}.{proj}.weight"] = weight
        if proj != "k_proj":
            out[f"{dst}.{proj}.bias"] = bias
    out[f"{dst}.out_proj.weight"] = ct2.get(f"{out_name}/weight")
    out[f"{dst}.out_proj.bias"] = ct2.get(f"{out_name}/bias")
    return out


def _norm(ct2: Ct2Model, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": ct2.get(f"{src}/gamma"), f"{dst}.bias": ct2.get(f"{src}/beta")}


def _linear(ct2: Ct2Model, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": ct2.get(f"{src}/weight"), f"{dst}.bias": ct2.get(f"{src}/bias")}


def ct2_to_hf_state_dict(ct2: Ct2Model) -> dict[str, torch.Tensor]:
    """The transformers ``WhisperForConditionalGeneration`` state dict (float32) of ``ct2``."""
    if ct2.spec != "WhisperSpec":
        raise DataError(f"CTranslate2 model is a {ct2.spec}, not a WhisperSpec")
    sd: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        sd.update(_linear(ct2, f"encoder/{conv}", f"model.encoder.{conv}"))
    sd["model.encoder.embed_positions.weight"] = ct2.get("encoder/position_encodings/encodings")
    sd.update(_norm(ct2, "encoder/layer_norm", "model.encoder.layer_norm"))
    sd["model.decoder.embed_tokens.weight"] = ct2.get("decoder/embeddings/weight")
    sd["model.decoder.embed_positions.weight"] = ct2.get("decoder/position_encodings/encodings")
    sd.update(_norm(ct2, "decoder/layer_norm", "model.decoder.layer_norm"))
    for side in ("encoder", "decoder"):
        for i in range(ct2.num_layers(side)):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            sd.update(_attention(ct2, f"{src}/self_attention", f"{dst}.self_attn", "qkv"))
            sd.update(_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"))
            if side == "decoder":
                sd.update(_attention(ct2, f"{src}/attention", f"{dst}.encoder_attn", "kv"))
                sd.update(
                    _norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                )
            sd.update(_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"))
            sd.update(_linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1"))
            sd.update(_linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2"))
    projection = ct2.variables.get("decoder/projection/weight")
    if projection is not None and not torch.equal(
        projection, sd["model.decoder.embed_tokens.weight"]
    ):
        raise DataError(
            "CTranslate2 model: the output projection is not tied to the token embedding"
        )
    return {name: t.to(torch.float32).contiguous() for name, t in sd.items()}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: not found (a CTranslate2 Whisper directory has {CT2_FILES})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def whisper_config_from_ct2(ct2: Ct2Model, ct2_config: dict, special: dict[str, int]):
    """A ``WhisperConfig`` with the sizes of ``ct2`` and Whisper's special token ids."""
    from transformers import WhisperConfig

    vocab_size, d_model = ct2.get("decoder/embeddings/weight").shape
    eot = special["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(ct2.get("encoder/conv1/weight").shape[1]),
        d_model=int(d_model),
        encoder_layers=ct2.num_layers("encoder"),
        decoder_layers=ct2.num_layers("decoder"),
        encoder_attention_heads=ct2.scalar("encoder/num_heads"),
        decoder_attention_heads=ct2.scalar("decoder/num_heads"),
        encoder_ffn_dim=int(ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        activation_function="gelu",
        decoder_start_token_id=special["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        tie_word_embeddings=True,
    )


def whisper_generation_config(config, ct2_config: dict, tokenizer):
    """Generation config with what ``generate(language=..., task=...)`` needs offline."""
    from transformers import GenerationConfig

    vocab = tokenizer.get_vocab()
    lang_ids = list(ct2_config.get("lang_ids", []))
    by_id = {i: t for t, i in vocab.items()}
    lang_to_id = {by_id[i]: i for i in lang_ids if i in by_id}
    if len(lang_to_id) != len(lang_ids):
        raise DataError("config.json: lang_ids name tokens the tokenizer does not have")
    heads = [list(map(int, h)) for h in ct2_config.get("alignment_heads", [])]
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        alignment_heads=heads or None,
        lang_to_id=lang_to_id,
        task_to_id={task: vocab[token] for task, token in TASK_TOKENS.items()},
        no_timestamps_token_id=vocab["<|notimestamps|>"],
        prev_sot_token_id=vocab["<|startofprev|>"],
        is_multilingual=bool(lang_to_id),
        max_initial_timestamp_index=50,
    )


def _check_vocabulary(tokenizer, ct2_dir: Path) -> None:
    """Every token of the CTranslate2 ``vocabulary.json`` (when present) equals ours by id."""
    path = ct2_dir / "vocabulary.json"
    if not path.is_file():
        logger.warning("%s: absent; the tokenizer is checked by size only", path)
        return
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    if len(tokens) != len(ours):
        raise DataError(f"{path}: {len(tokens)} tokens, the Whisper tokenizer has {len(ours)}")
    for i, (theirs, mine) in enumerate(zip(tokens, ours, strict=True)):
        if theirs != mine:
            raise DataError(f"{path}: token {i} is {theirs!r}, the Whisper tokenizer's is {mine!r}")


def _write_tokenizer(tmp: Path, vocab_size: int) -> object:
    """Build Whisper's tokenizer (+ normaliser, feature extractor) into ``tmp``; return it."""
    from transformers import WhisperTokenizer

    from speechkd.data.whisper_tokenizer import build_whisper_tokenizer, variant_of_vocab_size

    variant = variant_of_vocab_size(vocab_size)
    if variant is None:
        raise DataError(
            f"CTranslate2 model: vocabulary of {vocab_size} tokens is not a Whisper one"
        )
    staging = tmp / "tokenizer"
    build_whisper_tokenizer(staging, multilingual=variant[0], num_languages=variant[1])
    for item in staging.iterdir():
        item.rename(tmp / item.name)
    staging.rmdir()
    return WhisperTokenizer.from_pretrained(tmp)


def import_ct2(ct2_dir: str | Path, out_dir: str | Path) -> Path:
    """Convert a CTranslate2 Whisper directory (``model.bin`` joined, ``config.json``) to
    a transformers model directory at ``out_dir`` (written atomically; replaced if it exists)."""
    from safetensors.torch import save_file
    from transformers import WhisperForConditionalGeneration

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    ct2_config = _read_json(ct2_dir / "config.json")
    ct2 = read_ct2_model(ct2_dir / "model.bin")
    state = ct2_to_hf_state_dict(ct2)
    with atomic_directory(out_dir) as tmp:
        tokenizer = _write_tokenizer(tmp, int(state["model.decoder.embed_tokens.weight"].shape[0]))
        _check_vocabulary(tokenizer, ct2_dir)
        special = {
            t: tokenizer.convert_tokens_to_ids(t)
            for t in ("<|endoftext|>", "<|startoftranscript|>")
        }
        config = whisper_config_from_ct2(ct2, ct2_config, special)
        with torch.device("meta"):
            model = WhisperForConditionalGeneration(config)
        expected = set(model.state_dict()) - {"proj_out.weight"}
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise DataError(
                f"{ct2_dir}: does not map onto transformers' Whisper (missing "
                f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
        config.save_pretrained(tmp)
        whisper_generation_config(config, ct2_config, tokenizer).save_pretrained(tmp)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    logger.info(
        "imported %s (%s rev %d, %d parameters) into %s",
        ct2_dir,
        ct2.spec,
        ct2.revision,
        sum(t.numel() for t in state.values()),
        out_dir,
    )
    return out_dir
