"""Token-level divergences (KL, JS, skew KL, DDSD) and the gate budget loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from speechkd.errors import ConfigError
from speechkd.losses import (
    ddsd_divergence,
    forward_kl,
    gate_budget_loss,
    get_divergence,
    js_divergence,
    kl_divergence,
    mean_gate_activation,
    reverse_kl,
    skew_kl_divergence,
)

LOG2 = math.log(2.0)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest single-threaded (and do not stall on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_logits(*shape: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def numpy_kl(p: np.ndarray, r: np.ndarray) -> float:
    support = p > 0
    return float(np.sum(p[support] * np.log(p[support] / r[support])))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_js_matches_the_definition_per_position():
    teacher = random_logits(3, 4, 7, seed=1)
    student = random_logits(3, 4, 7, seed=2)
    values = []
    for t, s in zip(
        teacher.reshape(-1, 7).double().numpy(),
        student.reshape(-1, 7).double().numpy(),
        strict=True,
    ):
        p, q = softmax(t), softmax(s)
        m = 0.5 * (p + q)
        values.append(0.5 * numpy_kl(p, m) + 0.5 * numpy_kl(q, m))
    assert js_divergence(teacher, student).item() == pytest.approx(np.mean(values), rel=1e-5)


def test_js_is_symmetric_zero_on_identity_and_bounded_by_log2():
    teacher = random_logits(2, 5, 11, seed=3)
    student = random_logits(2, 5, 11, seed=4)
    forward = js_divergence(teacher, student)
    assert forward.item() == pytest.approx(js_divergence(student, teacher).item(), rel=1e-6)
    assert forward.item() > 0.01
    assert js_divergence(teacher, teacher.clone()).item() == pytest.approx(0.0, abs=1e-6)
    sharp_t = random_logits(4, 6, 11, seed=5, scale=50.0)
    sharp_s = random_logits(4, 6, 11, seed=6, scale=50.0)
    assert js_divergence(sharp_t, sharp_s).item() <= LOG2 + 1e-6
    disjoint_t = torch.tensor([[0.0, -1e4]])
    disjoint_s = torch.tensor([[-1e4, 0.0]])
    assert js_divergence(disjoint_t, disjoint_s).item() == pytest.approx(LOG2, rel=1e-6)
    exact_zero = torch.tensor([[0.0, float("-inf")]])
    assert js_divergence(exact_zero, disjoint_s).item() == pytest.approx(LOG2, rel=1e-6)


def test_js_is_padding_masked():
    teacher = random_logits(2, 6, 9, seed=7)
    student = random_logits(2, 6, 9, seed=8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    loss = js_divergence(teacher, student, mask)
    real = torch.stack([js_divergence(teacher[b, t], student[b, t]) for b, t in mask.nonzero()])
    assert loss.item() == pytest.approx(real.mean().item(), rel=1e-5)
    garbage = student.clone()
    garbage[~mask] = 1e3 * torch.randn_like(garbage[~mask])
    assert js_divergence(teacher, garbage, mask).item() == pytest.approx(loss.item(), rel=1e-6)
    assert js_divergence(teacher, garbage).item() != pytest.approx(loss.item(), rel=1e-3)
    assert js_divergence(teacher, student, torch.zeros_like(mask)).item() == 0.0
    with pytest.raises(ConfigError, match="mask shape"):
        js_divergence(teacher, student, mask[:, :3])


def test_temperature_scaling_convention_is_tau_squared():
    teacher = random_logits(3, 10, seed=9)
    student = random_logits(3, 10, seed=10)
    for loss in (js_divergence, forward_kl, reverse_kl, skew_kl_divergence, ddsd_divergence):
        plain = loss(teacher / 3.0, student / 3.0, temperature=1.0).item()
        assert loss(teacher, student, temperature=3.0).item() == pytest.approx(9 * plain, rel=1e-5)
        unscaled = loss(teacher, student, temperature=3.0, scale_by_temperature=False).item()
        assert unscaled == pytest.approx(plain, rel=1e-5)
    with pytest.raises(ConfigError, match="temperature"):
        js_divergence(teacher, student, temperature=0.0)


def test_kl_forward_and_reverse_match_torch():
    teacher = random_logits(4, 8, seed=11)
    student = random_logits(4, 8, seed=12)
    log_t, log_s = F.log_softmax(teacher, -1), F.log_softmax(student, -1)
    expected_forward = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
    expected_reverse = F.kl_div(log_t, log_s, reduction="batchmean", log_target=True)
    assert forward_kl(teacher, student).item() == pytest.approx(expected_forward.item(), rel=1e-5)
    assert reverse_kl(teacher, student).item() == pytest.approx(expected_reverse.item(), rel=1e-5)
    assert kl_divergence(teacher, student, reverse=True).item() == pytest.approx(
        forward_kl(student, teacher).item(), rel=1e-6
    )
    assert get_divergence("kl") is forward_kl and get_divergence("js") is js_divergence
    with pytest.raises(ConfigError, match="unknown divergence"):
        get_divergence("wasserstein")


def test_skew_kl_and_ddsd_match_their_definitions():
    teacher = random_logits(5, 6, seed=13)
    student = random_logits(5, 6, seed=14)
    assert skew_kl_divergence(teacher, student, alpha=0.0).item() == pytest.approx(
        forward_kl(teacher, student).item(), rel=1e-5
    )
    assert skew_kl_divergence(teacher, student, alpha=1.0).item() == pytest.approx(0.0, abs=1e-7)
    d_ts, d_st = [], []
    for t, s in zip(teacher.double().numpy(), student.double().numpy(), strict=True):
        p, q = softmax(t), softmax(s)
        d_ts.append(numpy_kl(p, 0.01 * p + 0.99 * q))
        d_st.append(numpy_kl(q, 0.01 * q + 0.99 * p))
    expected = 0.5 * np.mean(d_st) + 0.5 * np.mean(d_ts)
    assert ddsd_divergence(teacher, student).item() == pytest.approx(expected, rel=1e-5)
    assert ddsd_divergence(teacher, student, beta=0.0).item() == pytest.approx(
        np.mean(d_ts), rel=1e-5
    )
    assert ddsd_divergence(teacher, student, beta=1.0).item() == pytest.approx(
        skew_kl_divergence(teacher, student, alpha=0.01, reverse=True).item(), rel=1e-5
    )
    assert skew_kl_divergence(teacher, student, alpha=0.1).item() <= -math.log(0.1)


def test_zero_probability_teacher_entries_give_finite_values_and_gradients():
    teacher = random_logits(3, 12, seed=15)
    teacher[:, 6:] = float("-inf")
    student = random_logits(3, 12, seed=16).requires_grad_()
    for loss in (js_divergence, forward_kl, skew_kl_divergence, ddsd_divergence):
        value = loss(teacher, student)
        (grad,) = torch.autograd.grad(value, student)
        assert torch.isfinite(value) and torch.isfinite(grad).all(), loss.__name__


def test_gate_budget_loss_over_real_encoder_and_decoder_tokens():
    encoder = [torch.tensor([[1.0, 0.0, 1.0, 0.9]]), torch.tensor([[1.0, 1.0, 0.0, 0.9]])]
    decoder = [torch.tensor([[0.0, 1.0, 0.7]])]
    enc_mask = torch.tensor([[True, True, True, False]])
    dec_mask = torch.tensor([[True, True, False]])
    # Real gates: encoder 1,0,1 + 1,1,0; decoder 0,1 → 5 / 8.
    mean = mean_gate_activation(encoder, decoder, enc_mask, dec_mask)
    assert mean.item() == pytest.approx(5 / 8)
    loss = gate_budget_loss(encoder, decoder, enc_mask, dec_mask)
    assert loss.item() == pytest.approx(abs(5 / 8 - 0.5))
    assert gate_budget_loss(encoder, decoder, enc_mask, dec_mask, budget=0.9).item() == (
        pytest.approx(0.9 - 5 / 8)
    )
    unmasked = gate_budget_loss(encoder, decoder).item()
    assert unmasked == pytest.approx(abs((2.9 + 2.9 + 1.7) / 11 - 0.5))
    gates = torch.tensor([[0.2, 0.4]], requires_grad=True)
    gate_budget_loss([gates], budget=0.5).backward()
    assert torch.allclose(gates.grad, torch.tensor([[-0.5, -0.5]]))
    with pytest.raises(ConfigError, match="budget"):
        gate_budget_loss(encoder, budget=1.5)
