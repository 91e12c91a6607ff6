"""S2-LoRA: sharing per module group, regulariser values, merge equality, rank extraction."""

from __future__ import annotations

import pytest
import torch

from speechkd.errors import ConfigError
from speechkd.whisper.data import DurationBatchSampler
from speechkd.whisper.params import build_whisper, small_whisper_config
from speechkd.whisper.peft_methods import apply_peft, merge_peft, peft_regularization
from speechkd.whisper.s2lora import (
    DEFAULT_ALPHA1,
    S2LoraLinear,
    rank_matrices,
    s2lora_layers,
    s2lora_ranks,
    s2lora_regularizer,
    shared_pairs,
)
from speechkd.whisper.trainer import TrainerConfig, WhisperTrainer
from tests.test_whisper_trainer import cuts, dataset_for, tiny_model, tokenizer  # noqa: F401

D_MODEL, FFN, LAYERS = 64, 128, 2


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and stably on a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_s2lora(seed: int = 0):
    torch.manual_seed(seed)
    model = build_whisper(small_whisper_config(), device="cpu").eval()
    return apply_peft(model, "s2lora")


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 16, 32, generator=g)
    tokens = torch.randint(0, 120, (2, 5), generator=g)
    return features, tokens


def test_one_shared_pair_per_module_group():
    model = tiny_s2lora()
    pairs = shared_pairs(model)
    assert sorted(pairs) == ["dec_cam", "dec_ffm", "dec_sam", "enc_ffm", "enc_sam"]
    layers = s2lora_layers(model)
    # q, k, v, out per attention module; fc1, fc2 per FFN module.
    assert len(layers) == LAYERS * (4 + 2) + LAYERS * (4 + 4 + 2)
    for name, layer in layers.items():
        group = ("enc_" if ".encoder." in name else "dec_") + (
            "cam" if "encoder_attn" in name else "ffm" if ".fc" in name else "sam"
        )
        assert layer.pair is pairs[group], name
        assert layer.transpose == name.endswith("fc2")
    assert pairs["enc_ffm"].B.shape == (FFN, 8) and pairs["enc_ffm"].A.shape == (8, D_MODEL)
    assert pairs["dec_sam"].B.shape == (D_MODEL, 8) and pairs["dec_sam"].A.shape == (8, D_MODEL)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    n_coeff = sum(1 for n in trainable if n.endswith("s2lora_s"))
    assert n_coeff == len(layers)
    assert len(trainable) == n_coeff + 2 * 5
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == 8 * len(layers) + 3 * 8 * 2 * D_MODEL + 2 * 8 * (D_MODEL + FFN)


def test_init_is_identity_and_shapes_follow_transpose():
    model = tiny_s2lora()
    for layer in s2lora_layers(model).values():
        assert torch.count_nonzero(layer.s2lora_s) == 0
        assert layer.delta_weight().shape == layer.base_layer.weight.shape
    # unit-norm rows of A and columns of B (std 1/sqrt(d)): the scale of singular vectors
    for pair in shared_pairs(model).values():
        assert pair.A.detach().norm(dim=1).mean() == pytest.approx(1.0, abs=0.15)
        assert pair.B.detach().norm(dim=0).mean() == pytest.approx(1.0, abs=0.15)
    assert float(shared_pairs(model)["enc_ffm"].B.detach().std()) == pytest.approx(
        FFN**-0.5, rel=0.1
    )
    torch.manual_seed(0)
    fixed = apply_peft(build_whisper(small_whisper_config(), device="cpu"), "s2lora", init_std=0.02)
    assert 0.015 < float(shared_pairs(fixed)["enc_sam"].A.detach().std()) < 0.025
    with pytest.raises(ConfigError, match="init_std"):
        apply_peft(build_whisper(small_whisper_config(), device="cpu"), "s2lora", init_std=0.0)


def test_regularizer_value():
    model = tiny_s2lora()
    layers = list(s2lora_layers(model).values())
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.s2lora_s.fill_(0.01 * (i + 1))
            layer.s2lora_s[0] = -0.5
    l1 = sum(float(layer.s2lora_s.detach().abs().sum()) for layer in layers) / len(layers)
    l2 = 0.0
    for pair in shared_pairs(model).values():
        col = sum(float(pair.B[:, k].detach().norm()) for k in range(8))
        row = sum(float(pair.A[k, :].detach().norm()) for k in range(8))
        l2 += (col + row) / 16
    expected = 0.05 * l1 + 0.1 * l2
    assert float(s2lora_regularizer(model).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(peft_regularization(model).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(s2lora_regularizer(model, alpha1=1.0, alpha2=0.0).detach()) == pytest.approx(
        l1, rel=1e-5
    )


def test_merged_and_unmerged_outputs_equal():
    model = tiny_s2lora()
    with torch.no_grad():
        for layer in s2lora_layers(model).values():
            layer.s2lora_s.normal_(0.0, 1.0)
    features, tokens = inputs()
    with torch.no_grad():
        unmerged = model(input_features=features, decoder_input_ids=tokens).logits
    merged_model = merge_peft(model)
    assert not any(isinstance(m, S2LoraLinear) for m in merged_model.modules())
    assert not any("s2lora" in n for n, _ in merged_model.named_parameters())
    with torch.no_grad():
        merged = merged_model(input_features=features, decoder_input_ids=tokens).logits
    torch.manual_seed(0)
    base = build_whisper(small_whisper_config(), device="cpu").eval()
    with torch.no_grad():
        plain = base(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    assert (merged - plain).abs().max() > 1e-3  # the update is not trivially zero


def test_gradient_reaches_shared_pair_and_coefficients():
    model = tiny_s2lora()
    model.train()
    features, tokens = inputs()
    out = model(input_features=features, decoder_input_ids=tokens, labels=tokens)
    (out.loss + peft_regularization(model)).backward()
    layer = next(iter(s2lora_layers(model).values()))
    assert layer.s2lora_s.grad is not None and layer.s2lora_s.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_rank_distribution():
    model = tiny_s2lora()
    layers = s2lora_layers(model)
    with torch.no_grad():
        for name, layer in layers.items():
            if name.endswith("v_proj"):
                layer.s2lora_s.copy_(torch.tensor([1.0, -2e-4, 5e-5, 0, 0, 0, 0, 0.3]))
    ranks = s2lora_ranks(model)
    assert all(ranks[n] == (3 if n.endswith("v_proj") else 0) for n in layers)
    matrices = rank_matrices(ranks)
    assert matrices["enc_sam"] == [[0, 0], [3, 3], [0, 0], [0, 0]]  # rows q, v, k, o
    assert matrices["dec_ffm"] == [[0, 0], [0, 0]]


def _coefficient_gradients(model, tok, cut_set) -> tuple[torch.Tensor, float]:
    """|dCE/ds| of every coefficient on the synthetic batch, and the L1 weight alpha1/N."""
    layers = s2lora_layers(model)
    batch = dataset_for(model, tok)[cut_set]
    model.train()
    inputs = {k: batch[k] for k in ("input_features", "decoder_input_ids", "labels")}
    model(**inputs).loss.backward()
    for pair in shared_pairs(model).values():  # dW is linear in s: no CE gradient at s = 0
        assert pair.A.grad is None or not pair.A.grad.any()
        assert pair.B.grad is None or not pair.B.grad.any()
    grads = torch.cat([layer.s2lora_s.grad.abs() for layer in layers.values()])
    model.zero_grad()
    return grads, DEFAULT_ALPHA1 / len(layers)


def test_coefficient_gradient_against_the_l1_weight(tokenizer, cuts) -> None:  # noqa: F811
    """Why a fixed N(0, 0.02^2) init collapsed on small models: at s = 0 every |dCE/ds_k| is
    below the L1 weight alpha1/N, so s = 0 is the optimum of CE + L1; unit-norm factors give
    gradients above it."""
    fixed, lam = _coefficient_gradients(
        apply_peft(tiny_model(tokenizer), "s2lora", init_std=0.02), tokenizer, cuts
    )
    assert float(fixed.max()) < lam
    unit, lam = _coefficient_gradients(apply_peft(tiny_model(tokenizer), "s2lora"), tokenizer, cuts)
    assert float((unit > lam).float().mean()) > 0.1
    assert float(unit.mean()) > 10 * float(fixed.mean())


def _train(model, tok, cut_set, exp_dir, epochs: int) -> None:
    config = TrainerConfig(
        exp_dir=str(exp_dir), epochs=epochs, lr=1e-3, progress=False, log_interval=1000
    )
    sampler = DurationBatchSampler(cut_set, max_duration=100.0, max_cuts=1, seed=0)
    trainer = WhisperTrainer(
        model,
        config,
        dataset_for(model, tok),
        sampler,
        extra_loss=lambda m, batch, outputs: {"s2lora_reg": peft_regularization(m)},
    )
    trainer.fit()


def _relative_change(model, start) -> float:
    """Largest change of an adapted Whisper weight after merging, relative to its largest entry."""
    merged = dict(merge_peft(model).named_parameters())
    with torch.no_grad():
        return max(
            float((merged[n] - p).abs().max() / p.abs().max())
            for n, p in start.items()
            if n.endswith(("_proj.weight", "fc1.weight", "fc2.weight"))
        )


def test_short_training_learns_a_nonzero_update(tokenizer, cuts, tmp_path) -> None:  # noqa: F811
    """A few steps (lr 1e-3, alpha1 = 0.05, alpha2 = 0.1) give S2-LoRA non-zero ranks and a
    merged model that differs from the starting one; with the fixed 0.02 init the coefficients
    only jitter around zero (an update orders of magnitude smaller)."""
    start = dict(tiny_model(tokenizer).named_parameters())
    model = apply_peft(tiny_model(tokenizer), "s2lora")
    _train(model, tokenizer, cuts, tmp_path / "unit", epochs=6)
    ranks = s2lora_ranks(model)
    assert sum(ranks.values()) > 0 and max(ranks.values()) > 1
    change = _relative_change(model, start)
    assert change > 1e-3
    fixed = apply_peft(tiny_model(tokenizer), "s2lora", init_std=0.02)
    _train(fixed, tokenizer, cuts, tmp_path / "fixed", epochs=6)
    assert _relative_change(fixed, start) < change / 100
