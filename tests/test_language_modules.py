"""Saving and loading per-language CLSR experts and gates."""

from __future__ import annotations

import copy
import json

import pytest
import safetensors.torch
import torch
from test_clsr import logits_of, perturb_gates, tiny_batch, tiny_config, tiny_model
from transformers import WhisperForConditionalGeneration

from speechkd.errors import DataError
from speechkd.whisper import (
    add_clsr,
    installed_languages,
    load_language_modules,
    save_language_modules,
    set_active_language,
)
from speechkd.whisper.language_modules import available_languages, module_paths


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest single-threaded (and do not stall on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def trained_clsr_model(stock, languages, seed: int):
    """A copy of ``stock`` with CLSR experts and gates that differ from their initialisation."""
    model = copy.deepcopy(stock)
    add_clsr(model, languages)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


def outputs_by_language(model, languages):
    features, tokens = tiny_batch()
    result = {}
    for language in [None, *languages]:
        set_active_language(model, language)
        result[language] = logits_of(model, features, tokens)
    return result


def test_round_trip_gives_identical_logits(tmp_path):
    stock = tiny_model()
    trained = trained_clsr_model(stock, ["ca", "th"], seed=1)
    written = save_language_modules(trained, tmp_path, extra_metadata={"base": "tiny"})
    assert [p.name for p in written] == ["ca.safetensors", "th.safetensors"]
    assert available_languages(tmp_path) == ["ca", "th"]
    meta = json.loads((tmp_path / "ca.json").read_text())
    assert meta["language"] == "ca" and meta["extra"] == {"base": "tiny"}
    assert meta["model_dims"]["d_model"] == 64 and meta["model_dims"]["gate_dim"] == 64
    assert meta["layers"] == [
        "encoder.layers.0",
        "encoder.layers.1",
        "decoder.layers.0",
        "decoder.layers.1",
    ]
    assert not list(tmp_path.glob(".tmp-*"))

    fresh = copy.deepcopy(stock)
    load_language_modules(fresh, tmp_path, ["ca", "th"])
    assert installed_languages(fresh) == ["ca", "th"]
    expected = outputs_by_language(trained, ["ca", "th"])
    got = outputs_by_language(fresh, ["ca", "th"])
    for language, logits in expected.items():
        assert torch.equal(got[language], logits), language
    assert not torch.allclose(expected["ca"], expected[None], atol=1e-3)
    assert not torch.allclose(expected["ca"], expected["th"], atol=1e-3)
    trainable = {n for n, p in fresh.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n in dict(fresh.named_parameters()) if ".experts." in n or ".gates." in n
    }


def test_loading_reads_only_the_requested_languages(tmp_path, monkeypatch):
    stock = tiny_model()
    save_language_modules(trained_clsr_model(stock, ["ca", "th"], seed=2), tmp_path)
    (tmp_path / "pl.safetensors").write_bytes(b"not a tensor file")
    (tmp_path / "pl.json").write_text("{broken")
    opened = []
    real_load_file = safetensors.torch.load_file
    monkeypatch.setattr(
        safetensors.torch,
        "load_file",
        lambda path, *a, **k: opened.append(path) or real_load_file(path, *a, **k),
    )
    model = copy.deepcopy(stock)
    load_language_modules(model, tmp_path, ["ca"])
    assert installed_languages(model) == ["ca"]
    assert [p.rsplit("/", 1)[-1] for p in opened] == ["ca.safetensors"]
    with pytest.raises(DataError, match="pl.json"):
        load_language_modules(model, tmp_path, ["pl"])
    assert installed_languages(model) == ["ca"]


def test_loading_one_language_changes_only_its_outputs(tmp_path):
    stock = tiny_model()
    served = trained_clsr_model(stock, ["ca", "th"], seed=3)
    before = outputs_by_language(served, ["ca", "th"])
    save_language_modules(trained_clsr_model(stock, ["ca"], seed=4), tmp_path)
    load_language_modules(served, tmp_path, ["ca"])
    after = outputs_by_language(served, ["ca", "th"])
    assert torch.equal(after[None], before[None])
    assert torch.equal(after["th"], before["th"])
    assert not torch.allclose(after["ca"], before["ca"], atol=1e-3)


def test_mismatched_model_raises_data_error_naming_file_and_tensor(tmp_path):
    stock = tiny_model()
    save_language_modules(trained_clsr_model(stock, ["ca"], seed=5), tmp_path)

    other_config = tiny_config()
    other_config.decoder_ffn_dim = 96
    torch.manual_seed(0)
    other = WhisperForConditionalGeneration(other_config).eval()
    with pytest.raises(DataError, match=r"ca\.json: field model_dims\.decoder_ffn_dim"):
        load_language_modules(other, tmp_path, ["ca"])

    tensor_path, _ = module_paths(tmp_path, "ca")
    tensors = safetensors.torch.load_file(str(tensor_path))
    tensors["decoder.layers.1.expert.fc2.weight"] = torch.zeros(64, 96)
    safetensors.torch.save_file(tensors, str(tensor_path))
    model = copy.deepcopy(stock)
    with pytest.raises(
        DataError, match=r"ca\.safetensors: tensor decoder\.layers\.1\.expert\.fc2\.weight"
    ):
        load_language_modules(model, tmp_path, ["ca"])
    assert installed_languages(model) == []  # a failed load leaves no half-installed language

    del tensors["decoder.layers.1.expert.fc2.weight"]
    safetensors.torch.save_file(tensors, str(tensor_path))
    with pytest.raises(
        DataError, match=r"tensor decoder\.layers\.1\.expert\.fc2\.weight is missing"
    ):
        load_language_modules(copy.deepcopy(stock), tmp_path, ["ca"])
    with pytest.raises(DataError, match=r"th\.json"):
        load_language_modules(copy.deepcopy(stock), tmp_path, ["th"])


def test_saved_gates_keep_their_trained_values(tmp_path):
    stock = tiny_model()
    model = copy.deepcopy(stock)
    add_clsr(model, ["uk"])
    perturb_gates(model, scale=0.5, experts=True)
    save_language_modules(model, tmp_path)
    stored = safetensors.torch.load_file(str(tmp_path / "uk.safetensors"))
    gate = model.model.decoder.layers[1].clsr.gates["uk"]
    assert torch.equal(stored["decoder.layers.1.gate.proj_in.weight"], gate.proj_in.weight)
    assert torch.equal(stored["decoder.layers.1.gate.proj_out.weight"], gate.proj_out.weight)
    assert len(stored) == 4 * (4 + 3)
