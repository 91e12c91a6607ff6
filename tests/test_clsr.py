"""CLSR experts and gates on transformers Whisper (DistilWhisper)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from speechkd.errors import ConfigError
from speechkd.whisper import (
    GateNoiseSchedule,
    active_language,
    add_clsr,
    clsr_gate_budget_loss,
    clsr_gates,
    clsr_noise_schedule,
    encoder_token_mask,
    gate_usage,
    installed_languages,
    language_parameter_count,
    set_active_language,
)
from speechkd.whisper.clsr import clsr_modules

SMALL_FFN = 2 * 768 * 3072 + 3072 + 768  # fc1 + fc2 weights and biases: 4,722,432
SMALL_GATE = 768 * 64 + 64 + 64  # Linear 768→64 (bias) + Linear 64→1 (no bias): 49,280


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest single-threaded (and do not stall on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config() -> WhisperConfig:
    return WhisperConfig(
        vocab_size=100,
        num_mel_bins=8,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=16,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )


def tiny_model() -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(tiny_config()).eval()


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 8, 32, generator=generator)
    tokens = torch.randint(3, 100, (2, 5), generator=generator)
    return features, tokens


def logits_of(model, features, tokens) -> torch.Tensor:
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


def perturb_gates(model, scale: float = 1.0, experts: bool = False) -> None:
    """Random gate weights (and, with ``experts``, experts that differ from the shared FFN)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for clsr in clsr_modules(model):
            for gate in clsr.gates.values():
                for parameter in gate.parameters():
                    parameter.copy_(scale * torch.randn(parameter.shape, generator=generator))
            if experts:
                for parameter in clsr.experts.parameters():
                    parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def test_whisper_small_one_language_adds_exactly_the_expert_and_gate_parameters():
    from speechkd.whisper.params import whisper_config

    config = whisper_config("small")
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (768, 12, 12)
    assert (config.encoder_ffn_dim, config.vocab_size) == (3072, 51865)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    base = sum(p.numel() for p in model.parameters())
    add_clsr(model, ["ca"])
    added = sum(p.numel() for p in model.parameters()) - base
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert SMALL_FFN == 4_722_432 and SMALL_GATE == 49_280
    assert added == 24 * (SMALL_FFN + SMALL_GATE) == 114_521_088
    assert sum(p.numel() for p in trainable.values()) == 114_521_088
    assert language_parameter_count(model, "ca") == 114_521_088
    assert all(".clsr.experts.ca." in n or ".clsr.gates.ca." in n for n in trainable)
    assert len(clsr_modules(model)) == 24

    add_clsr(model, ["th"])
    added_two = sum(p.numel() for p in model.parameters()) - base
    assert added_two == 2 * 114_521_088
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * 114_521_088


def test_stock_behaviour_without_language_and_at_initialisation():
    model = tiny_model()
    features, tokens = tiny_batch()
    stock = logits_of(model, features, tokens)
    add_clsr(model, ["ca", "th"])
    assert installed_languages(model) == ["ca", "th"]
    assert torch.equal(logits_of(model, features, tokens), stock)  # no active language
    assert gate_usage(model)["all"] == 0.0
    set_active_language(model, "ca")
    # Experts start as copies of the shared FFN and G = 0 → hard gate 1 → same output.
    assert torch.allclose(logits_of(model, features, tokens), stock, atol=1e-6)
    assert gate_usage(model) == {"encoder": 1.0, "decoder": 1.0, "all": 1.0}


def test_hard_gates_at_eval_follow_the_sign_of_the_gate_logits():
    model = tiny_model()
    add_clsr(model, ["ca"])
    perturb_gates(model, scale=0.3)
    set_active_language(model, "ca")
    clsr_noise_schedule(model).set_step(10**6)  # full noise: must not matter at eval
    features, tokens = tiny_batch()
    captured = {}
    clsr = clsr_modules(model)[1]
    hook = clsr.register_forward_hook(lambda m, args, out: captured.update(x=args[0], y=out))
    first = logits_of(model, features, tokens)
    hook.remove()
    second = logits_of(model, features, tokens)
    assert torch.equal(first, second)
    gates = clsr.last_gates
    assert set(gates.unique().tolist()) == {0.0, 1.0}
    with torch.no_grad():
        logits = clsr.gates["ca"](captured["x"])
        assert torch.equal(gates, (logits >= 0).float())
        g = gates.unsqueeze(-1)
        expected = g * clsr.experts["ca"](captured["x"]) + (1 - g) * clsr.shared(captured["x"])
    assert torch.allclose(captured["y"], expected, atol=1e-6)


def _training_layer(**options):
    model = tiny_model()
    add_clsr(model, ["ca"], **options)
    perturb_gates(model, scale=0.3, experts=True)
    set_active_language(model, "ca")
    model.train()
    return model, clsr_modules(model)[0]


def test_noise_only_in_training_with_the_scheduled_std():
    model, clsr = _training_layer(skip_gate_prob=0.0, gate_dropout=0.0, expert_dropout=0.0)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = clsr.gates["ca"](x)
        schedule = clsr_noise_schedule(model)
        assert schedule.std == 0.0
        clsr(x)
        assert torch.equal(clsr.last_gates, torch.sigmoid(logits))  # no noise at step 0

        schedule.set_step(schedule.ramp_steps // 2)
        assert schedule.std == pytest.approx(2.5)
        torch.manual_seed(11)
        clsr(x)
        torch.manual_seed(11)
        noise = torch.randn_like(logits)
        assert torch.allclose(clsr.last_gates, torch.sigmoid(logits + 2.5 * noise))
        assert not torch.allclose(clsr.last_gates, torch.sigmoid(logits), atol=1e-3)

        clsr.eval()
        clsr(x)
        hard = clsr.last_gates.clone()
        clsr(x)
        assert torch.equal(clsr.last_gates, hard)
        assert torch.equal(hard, (logits >= 0).float())


def test_noise_schedule_is_a_linear_ramp_to_the_maximum():
    schedule = GateNoiseSchedule(max_std=5.0, ramp_steps=100)
    assert schedule.std == 0.0
    assert schedule.step(25) == pytest.approx(1.25)
    schedule.step()
    assert schedule.std == pytest.approx(1.3)
    schedule.set_step(100)
    assert schedule.std == pytest.approx(5.0)
    schedule.set_step(400)
    assert schedule.std == pytest.approx(5.0)
    restored = GateNoiseSchedule()
    restored.load_state_dict(schedule.state_dict())
    assert (restored.current_step, restored.std) == (400, 5.0)
    assert GateNoiseSchedule(max_std=3.0, ramp_steps=0).std == 3.0
    model = tiny_model()
    add_clsr(model, ["ca"], max_noise_std=2.0, noise_ramp_steps=10)
    shared = clsr_noise_schedule(model)
    assert all(m.noise_schedule is shared for m in clsr_modules(model))
    shared.step(5)
    assert clsr_modules(model)[-1].noise_schedule.std == pytest.approx(1.0)


def test_skip_gate_uses_only_the_shared_path_with_probability_s():
    _, always = _training_layer(skip_gate_prob=1.0, expert_dropout=0.0)
    x = torch.randn(2, 5, 64, requires_grad=True)
    out = always(x)
    assert torch.equal(out, always.shared(x))
    out.sum().backward()
    assert all(p.grad is None for p in always.experts["ca"].parameters())

    _, never = _training_layer(skip_gate_prob=0.0)
    torch.manual_seed(0)
    x = x.detach()
    for _ in range(50):
        never(x)
        assert never.last_skipped is None

    _, sometimes = _training_layer(skip_gate_prob=0.2)
    torch.manual_seed(0)
    skipped = 0
    with torch.no_grad():
        for _ in range(2000):
            sometimes(x)
            skipped += sometimes.last_skipped is not None
    assert abs(skipped / 2000 - 0.2) < 0.03

    sometimes.eval()
    with torch.no_grad():
        for _ in range(20):
            sometimes(x)
            assert sometimes.last_skipped is None


def test_token_level_skip_gate_routes_skipped_tokens_to_the_shared_path():
    _, clsr = _training_layer(skip_gate_prob=0.2, skip_gate_unit="token", expert_dropout=0.0)
    clsr.gates["ca"].dropout = 0.0
    x = torch.randn(4, 500, 64, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    with torch.no_grad():
        out = clsr(x)
        skipped = clsr.last_skipped
        shared = clsr.shared(x)
    assert abs(skipped.float().mean().item() - 0.2) < 0.02
    assert torch.allclose(out[skipped], shared[skipped], atol=1e-6)
    assert not torch.allclose(out[~skipped], shared[~skipped], atol=1e-3)


def test_only_the_active_language_receives_gradient():
    model = tiny_model()
    add_clsr(model, ["ca", "th"], skip_gate_prob=0.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n in dict(model.named_parameters()) if ".experts." in n or ".gates." in n}
    assert trainable == expected
    model.train()
    features, tokens = tiny_batch()
    with active_language(model, "ca"):
        model(input_features=features, decoder_input_ids=tokens).logits.logsumexp(
            -1
        ).sum().backward()
    assert all(m.active_language is None for m in clsr_modules(model))
    for name, parameter in model.named_parameters():
        if ".experts.ca." in name or ".gates.ca." in name:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name
    expert_grads = [p.grad.abs().sum() for n, p in model.named_parameters() if ".experts.ca." in n]
    assert all(g > 0 for g in expert_grads)


def test_options_and_languages_are_validated():
    model = tiny_model()
    with pytest.raises(ConfigError, match="unknown CLSR option"):
        add_clsr(model, ["ca"], gate_size=3)
    with pytest.raises(ConfigError, match="skip_gate_prob"):
        add_clsr(model, ["ca"], skip_gate_prob=1.5)
    with pytest.raises(ConfigError, match="language code"):
        add_clsr(model, ["c.a"])
    add_clsr(model, ["ca"], skip_gate_prob=0.1)
    with pytest.raises(ConfigError, match="skip_gate_prob"):
        add_clsr(model, ["th"], skip_gate_prob=0.2)
    with pytest.raises(ConfigError, match="no CLSR experts"):
        set_active_language(model, "th")
    add_clsr(model, ["th"])
    assert installed_languages(model) == ["ca", "th"]
    with pytest.raises(ConfigError, match="not a transformers Whisper"):
        add_clsr(torch.nn.Linear(2, 2), ["ca"])


def test_gate_budget_loss_of_the_last_forward_excludes_padding():
    model = tiny_model()
    add_clsr(model, ["ca"])
    perturb_gates(model, scale=0.3)
    set_active_language(model, "ca")
    model.train()
    features, tokens = tiny_batch()
    model(input_features=features, decoder_input_ids=tokens)
    encoder, decoder = clsr_gates(model)
    assert [g.shape for g in encoder] == [(2, 16)] * 2
    assert [g.shape for g in decoder] == [(2, 5)] * 2
    enc_mask = encoder_token_mask(torch.tensor([32, 10]), 16)
    dec_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    real = [g[enc_mask] for g in encoder] + [g[dec_mask] for g in decoder]
    expected = abs(torch.cat(real).mean().item() - 0.5)
    loss = clsr_gate_budget_loss(model, enc_mask, dec_mask, budget=0.5)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert loss.requires_grad
    with torch.no_grad():
        for gates in decoder:
            gates[~dec_mask] = 1.0
        for gates in encoder:
            gates[~enc_mask] = 1.0
    assert clsr_gate_budget_loss(model, enc_mask, dec_mask).item() == pytest.approx(expected)
    assert clsr_gate_budget_loss(model).item() != pytest.approx(expected)


def test_encoder_token_mask_halves_the_feature_frames():
    mask = encoder_token_mask(torch.tensor([32, 5, 0]), 16)
    assert mask.sum(1).tolist() == [16, 3, 0]
    assert mask[1].tolist() == [True] * 3 + [False] * 13
    assert math.ceil(5 / 2) == 3


def test_generation_runs_with_clsr():
    model = tiny_model()
    add_clsr(model, ["ca"])
    perturb_gates(model, scale=0.3)
    set_active_language(model, "ca")
    features, _ = tiny_batch()
    start = torch.ones(2, 1, dtype=torch.long)
    out = model.generate(input_features=features, decoder_input_ids=start, max_new_tokens=3)
    assert out.shape[0] == 2 and out.shape[1] >= 2
