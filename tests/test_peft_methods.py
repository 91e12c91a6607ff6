"""apply_peft: trainable parameter counts of the papers (whisper-medium / -large from config on the
meta device) and each method's behaviour on a tiny Whisper."""

from __future__ import annotations

import pytest
import torch

from speechkd.errors import ConfigError
from speechkd.whisper.params import build_whisper, count_parameters, small_whisper_config
from speechkd.whisper.peft_methods import (
    PEFT_METHODS,
    after_optimizer_step,
    apply_peft,
    merge_peft,
    peft_regularization,
)

MEDIUM_TOTAL = 763_857_920

# method → (exact trainable count on whisper-medium, Table 2 percentage as printed in the paper)
TABLE2 = {
    "lora": (2_359_296, "0.31"),
    "adalora": (3_540_672, "0.46"),
    "alpha_lora": (2_359_440, "0.31"),
    "bitfit": (593_920, "0.08"),
    "ia3": (196_608, "0.03"),
    "glora": (6_194_304, "0.81"),
    "s2lora": (134_144, "0.02"),
}

# peft calls a transformers attribute deprecated in v5 (not our code).
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and stably on a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", sorted(TABLE2))
def test_trainable_counts_on_whisper_medium(method):
    options = {"total_step": 100} if method == "adalora" else {}
    counts = count_parameters(apply_peft(build_whisper("medium"), method, **options))
    expected, percent = TABLE2[method]
    assert counts.total == MEDIUM_TOTAL
    assert counts.trainable == expected
    assert f"{counts.trainable_percent:.2f}" == percent


def test_full_fine_tuning_trains_all_but_fixed_positions():
    counts = count_parameters(apply_peft(build_whisper("medium"), "full"))
    assert counts.trainable == MEDIUM_TOTAL - 1500 * 1024  # sinusoidal encoder positions fixed


def test_pepsi_decoder_lora_on_whisper_large():
    model = apply_peft(build_whisper("large"), "pepsi")
    counts = count_parameters(model)
    assert counts.trainable == 2_621_440
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(".decoder." in n and "lora_" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}
    assert {n.split(".")[-5] for n in names} == {"self_attn", "encoder_attn"}
    base = apply_peft(build_whisper("large"), "pepsi", train_base=True)
    assert count_parameters(base).trainable == 2_621_440 + 1_543_304_960 - 1500 * 1280


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build_whisper(small_whisper_config(), device="cpu").eval()


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 16, 32, generator=g), torch.randint(0, 120, (2, 5), generator=g)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_each_method_starts_from_whisper_and_trains(method):
    features, tokens = inputs()
    with torch.no_grad():
        reference = tiny()(input_features=features, decoder_input_ids=tokens).logits
    options = {"total_step": 10} if method == "adalora" else {}
    model = apply_peft(tiny(), method, **options).eval()
    with torch.no_grad():
        start = model(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(start, reference)  # every update is zero at init
    model.train()
    loss = model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss
    (loss + peft_regularization(model)).backward()
    params = dict(model.named_parameters())
    grads = [n for n in trainable_names(model) if params[n].grad is not None]
    assert grads, method
    assert all(params[n].grad is None for n in params if n not in trainable_names(model))
    after_optimizer_step(model, 1)


def test_trainable_sets_per_method():
    names = trainable_names(apply_peft(tiny(), "bitfit"))
    assert names and all(n.endswith("bias") for n in names)
    assert len(names) == sum(1 for n, _ in tiny().named_parameters() if n.endswith("bias"))
    ia3 = apply_peft(tiny(), "ia3")
    vectors = {n: p for n, p in ia3.named_parameters() if p.requires_grad}
    assert {n.split(".")[-3] for n in vectors} == {"k_proj", "v_proj", "fc2"}
    assert all(p.shape == (64, 1) for p in vectors.values())  # output side, fc2 included
    adalora = apply_peft(tiny(), "adalora", total_step=10)
    assert not any("ranknum" in n for n in trainable_names(adalora))
    alpha = apply_peft(tiny(), "alpha_lora")
    scalars = [p for n, p in alpha.named_parameters() if n.endswith("alpha_lora_alpha")]
    assert len(scalars) == 2 * 2 + 2 * 4 and all(float(s.detach()) == 0.0 for s in scalars)


@pytest.mark.parametrize("method", ["lora", "alpha_lora", "glora", "ia3", "pepsi"])
def test_merge_keeps_outputs(method):
    model = apply_peft(tiny(), method).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    features, tokens = inputs()
    with torch.no_grad():
        unmerged = model(input_features=features, decoder_input_ids=tokens).logits
        merged_model = merge_peft(model)
        merged = merged_model(input_features=features, decoder_input_ids=tokens).logits
    assert type(merged_model).__name__ == "WhisperForConditionalGeneration"
    assert count_parameters(merged_model).adapter == 0
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)


def test_bad_method_or_option():
    with pytest.raises(ConfigError, match="unknown"):
        apply_peft(tiny(), "prefix")
    with pytest.raises(ConfigError, match="rank"):
        apply_peft(tiny(), "lora", rank=4)
