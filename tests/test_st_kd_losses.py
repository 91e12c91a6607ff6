"""Joint ST KD losses: DDSD (fixed and dynamic β) and feature / relation cosine KD."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.losses import (
    DynamicDDSDController,
    ddsd,
    ddsd_terms,
    feature_cosine_loss,
    relation_cosine_loss,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def logits(*shape: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=gen(seed))


def random_mask(batch: int, time: int, seed: int) -> torch.Tensor:
    lengths = torch.randint(1, time + 1, (batch,), generator=gen(seed))
    lengths[0] = time
    lengths[-1] = max(1, time // 2)  # at least one padded sequence
    return torch.arange(time)[None, :] < lengths[:, None]


# ---------------------------------------------------------------- numpy / float64 references


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_kl(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.sum(p * (np.log(p) - np.log(r)), axis=-1)


def np_ddsd_terms(t_logits, s_logits, alpha):
    t = np_softmax(t_logits.double().numpy())
    s = np_softmax(s_logits.double().numpy())
    d_ts = np_kl(t, alpha * t + (1 - alpha) * s)
    d_st = np_kl(s, alpha * s + (1 - alpha) * t)
    return d_ts, d_st


def np_masked_mean(values: np.ndarray, mask: torch.Tensor | None) -> float:
    if mask is None:
        return float(values.mean())
    keep = mask.numpy().astype(bool)
    return float(values[keep].mean())


def np_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(-1)
    den = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-8)
    return num / den


# ---------------------------------------------------------------------------------- DDSD


@pytest.mark.parametrize(("alpha", "beta"), [(0.01, 0.5), (0.2, 0.3), (0.0, 0.7), (0.5, 0.9)])
def test_ddsd_equals_the_formula_in_float64(alpha, beta):
    teacher, student = logits(3, 5, 11, seed=1), logits(3, 5, 11, seed=2)
    mask = random_mask(3, 5, seed=3)
    d_ts, d_st = np_ddsd_terms(teacher, student, alpha)
    per_position = beta * d_st + (1 - beta) * d_ts
    got = ddsd(teacher, student, alpha=alpha, beta=beta, mask=mask)
    assert got.item() == pytest.approx(np_masked_mean(per_position, mask), rel=1e-5)
    unmasked = ddsd(teacher, student, alpha=alpha, beta=beta)
    assert unmasked.item() == pytest.approx(np_masked_mean(per_position, None), rel=1e-5)


def test_ddsd_defaults_are_the_papers():
    teacher, student = logits(2, 4, 9, seed=4), logits(2, 4, 9, seed=5)
    d_ts, d_st = np_ddsd_terms(teacher, student, 0.01)
    expected = float((0.5 * d_st + 0.5 * d_ts).mean())
    assert ddsd(teacher, student).item() == pytest.approx(expected, rel=1e-5)


def test_ddsd_is_zero_for_identical_distributions():
    teacher = logits(2, 6, 13, seed=6)
    assert ddsd(teacher, teacher.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # a constant shift of the logits is the same distribution
    assert ddsd(teacher, teacher + 3.0, beta=0.2).item() == pytest.approx(0.0, abs=1e-6)
    assert ddsd(teacher, logits(2, 6, 13, seed=7)).item() > 0.05


def test_ddsd_skew_terms_separately():
    teacher, student = logits(4, 3, 7, seed=8, scale=3.0), logits(4, 3, 7, seed=9, scale=3.0)
    d_ts, d_st = np_ddsd_terms(teacher, student, 0.01)
    forward = ddsd(teacher, student, beta=0.0).item()
    reverse = ddsd(teacher, student, beta=1.0).item()
    assert forward == pytest.approx(float(d_ts.mean()), rel=1e-5)
    assert reverse == pytest.approx(float(d_st.mean()), rel=1e-5)
    assert abs(forward - reverse) > 1e-3  # the two directions really differ
    # swapping teacher and student swaps the skew terms
    assert ddsd(student, teacher, beta=1.0).item() == pytest.approx(forward, rel=1e-5)
    # the skew keeps each term below -log(alpha) even for disjoint supports
    disjoint_t, disjoint_s = torch.tensor([[0.0, -1e4]]), torch.tensor([[-1e4, 0.0]])
    for beta in (0.0, 1.0):
        value = ddsd(disjoint_t, disjoint_s, alpha=0.01, beta=beta).item()
        assert value == pytest.approx(-math.log(0.01), rel=1e-4)
    # ddsd_terms returns the same two terms, and ddsd is linear in beta
    t_term, s_term = ddsd_terms(teacher, student)
    assert t_term.item() == pytest.approx(forward, rel=1e-6)
    assert s_term.item() == pytest.approx(reverse, rel=1e-6)
    assert ddsd(teacher, student, beta=0.3).item() == pytest.approx(
        0.3 * reverse + 0.7 * forward, rel=1e-5
    )


def test_ddsd_masked_positions_do_not_matter():
    teacher, student = logits(3, 6, 8, seed=10), logits(3, 6, 8, seed=11)
    mask = random_mask(3, 6, seed=12)
    assert not mask.all()
    before = ddsd(teacher, student, mask=mask)
    garbage_t, garbage_s = teacher.clone(), student.clone()
    garbage_t[~mask] = logits(int((~mask).sum()), 8, seed=13, scale=50.0)
    garbage_s[~mask] = logits(int((~mask).sum()), 8, seed=14, scale=50.0)
    after = ddsd(garbage_t, garbage_s, mask=mask)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    assert ddsd(garbage_t, garbage_s).item() != pytest.approx(before.item(), rel=1e-3)
    all_true = torch.ones(3, 6, dtype=torch.bool)
    assert ddsd(teacher, student, mask=all_true).item() == pytest.approx(
        ddsd(teacher, student).item(), rel=1e-6
    )
    t_term, s_term = ddsd_terms(garbage_t, garbage_s, mask=mask)
    d_ts, d_st = np_ddsd_terms(teacher, student, 0.01)
    assert t_term.item() == pytest.approx(np_masked_mean(d_ts, mask), rel=1e-5)
    assert s_term.item() == pytest.approx(np_masked_mean(d_st, mask), rel=1e-5)


def test_ddsd_gradient_reaches_only_the_student_when_the_teacher_is_detached():
    teacher = logits(2, 5, 6, seed=15).requires_grad_(True)
    student = logits(2, 5, 6, seed=16).requires_grad_(True)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    ddsd(teacher.detach(), student, mask=mask).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad[mask].abs().sum() > 0
    assert torch.equal(student.grad[~mask], torch.zeros_like(student.grad[~mask]))
    # without detaching, both sides receive a gradient
    student.grad = None
    ddsd(teacher, student, mask=mask).backward()
    assert teacher.grad is not None and teacher.grad[mask].abs().sum() > 0


@pytest.mark.parametrize(
    ("alpha", "beta", "fragment"),
    [
        (-0.1, 0.5, "alpha"),
        (1.0, 0.5, "alpha"),
        (1.5, 0.5, "alpha"),
        (float("nan"), 0.5, "alpha"),
        (0.01, -0.01, "beta"),
        (0.01, 1.01, "beta"),
        (0.01, float("nan"), "beta"),
        (True, 0.5, "alpha"),
    ],
)
def test_ddsd_rejects_out_of_range_alpha_and_beta(alpha, beta, fragment):
    teacher, student = logits(1, 2, 3, seed=17), logits(1, 2, 3, seed=18)
    with pytest.raises(ConfigError, match=fragment):
        ddsd(teacher, student, alpha=alpha, beta=beta)


def test_ddsd_shape_errors():
    with pytest.raises(DataError, match="differ in shape"):
        ddsd(logits(2, 3, 5, seed=19), logits(2, 3, 6, seed=20))
    with pytest.raises(DataError, match="mask shape"):
        ddsd(logits(2, 3, 5, seed=19), logits(2, 3, 5, seed=20), mask=torch.ones(2, 4).bool())


# ------------------------------------------------------------------- dynamic DDSD controller


def test_controller_moves_beta_towards_the_larger_term():
    up = DynamicDDSDController()
    assert up.step(d_ts=1.0, d_st=3.0) > 0.5  # reverse term dominates: weight it more
    down = DynamicDDSDController()
    assert down.step(d_ts=3.0, d_st=1.0) < 0.5
    balanced = DynamicDDSDController(beta_init=0.4)
    for _ in range(5):
        assert balanced.step(2.0, 2.0) == pytest.approx(0.4)
    idle = DynamicDDSDController(beta_init=0.3)
    assert idle.step(0.0, 0.0) == 0.3 and idle.steps == 1


def test_controller_step_is_the_documented_pi_rule():
    c = DynamicDDSDController(beta_init=0.5, target=0.5, kp=0.2, ki=0.1)
    errors, betas = [], []
    for d_ts, d_st in [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (1.0, 4.0)]:
        errors.append(d_st / (d_ts + d_st) - 0.5)
        betas.append(c.step(d_ts, d_st))
    for t, beta in enumerate(betas):
        assert beta == pytest.approx(0.5 + 0.2 * errors[t] + 0.1 * sum(errors[: t + 1]))
    assert c.integral == pytest.approx(sum(errors))


def test_controller_closes_the_loop_on_a_simulated_plant():
    """Share of the reverse term falls as beta rises: r(beta) = 0.9 - 0.8*beta, target 0.5."""

    def run(ki: float) -> float:
        c = DynamicDDSDController(beta_init=0.2, target=0.5, kp=0.5, ki=ki)
        beta = c.beta
        for _ in range(400):
            share = 0.9 - 0.8 * beta
            beta = c.step(d_ts=1.0 - share, d_st=share)
        return beta

    assert run(ki=0.05) == pytest.approx(0.5, abs=1e-4)  # integral action: no offset
    assert abs(run(ki=0.0) - 0.5) > 0.05  # proportional only: steady-state offset


def test_controller_clamps_and_does_not_wind_up():
    c = DynamicDDSDController(beta_init=0.5, kp=0.5, ki=0.05, beta_min=0.1, beta_max=0.8)
    for _ in range(1000):
        beta = c.step(d_ts=0.1, d_st=10.0)
    assert beta == pytest.approx(0.8)
    assert c.integral < 10.0  # stopped integrating once saturated
    recovered = [c.step(d_ts=10.0, d_st=0.1) for _ in range(3)]
    assert recovered[0] < 0.8  # leaves the bound at once
    for _ in range(1000):
        beta = c.step(d_ts=10.0, d_st=0.1)
    assert beta == pytest.approx(0.1)


def test_controller_smoothing_damps_a_single_spike():
    plain, smooth = DynamicDDSDController(), DynamicDDSDController(smoothing=0.9)
    for c in (plain, smooth):
        for _ in range(10):
            c.step(1.0, 1.0)
    assert smooth.step(1.0, 9.0) - 0.5 < plain.step(1.0, 9.0) - 0.5


def test_controller_accepts_tensors_and_returns_a_float():
    c = DynamicDDSDController()
    d_ts, d_st = ddsd_terms(logits(2, 3, 5, seed=21), logits(2, 3, 5, seed=22).requires_grad_())
    beta = c.step(d_ts, d_st)
    assert isinstance(beta, float) and 0.0 <= beta <= 1.0


def test_controller_state_dict_resumes_the_same_trajectory():
    rng = np.random.default_rng(0)
    inputs = rng.uniform(0.01, 5.0, size=(30, 2)).tolist()
    original = DynamicDDSDController(beta_init=0.3, kp=0.3, ki=0.02, smoothing=0.5)
    for d_ts, d_st in inputs[:10]:
        original.step(d_ts, d_st)
    state = json.loads(json.dumps(original.state_dict()))  # survives a text checkpoint
    resumed = DynamicDDSDController(beta_init=0.3, kp=0.3, ki=0.02, smoothing=0.5)
    resumed.load_state_dict(copy.deepcopy(state))
    assert resumed.steps == 10 and resumed.beta == original.beta
    tail_original = [original.step(*x) for x in inputs[10:]]
    tail_resumed = [resumed.step(*x) for x in inputs[10:]]
    assert tail_resumed == tail_original
    fresh = DynamicDDSDController(beta_init=0.3, kp=0.3, ki=0.02, smoothing=0.5)
    assert [fresh.step(*x) for x in inputs[10:]] != tail_original


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta_init": 1.2},
        {"beta_init": 0.05, "beta_min": 0.1},
        {"beta_min": 0.6, "beta_max": 0.4},
        {"target": 0.0},
        {"target": 1.0},
        {"kp": -1.0},
        {"ki": -0.1},
        {"smoothing": 1.0},
    ],
)
def test_controller_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError):
        DynamicDDSDController(**kwargs)


def test_controller_rejects_bad_measurements_and_states():
    c = DynamicDDSDController()
    with pytest.raises(DataError, match="d_ts"):
        c.step(-1.0, 1.0)
    with pytest.raises(DataError, match="d_st"):
        c.step(1.0, float("nan"))
    with pytest.raises(ConfigError, match="integral"):
        c.load_state_dict({"beta": 0.5, "ratio": None, "steps": 0})
    with pytest.raises(ConfigError, match="beta"):
        DynamicDDSDController(beta_max=0.6).load_state_dict(
            {"beta": 0.9, "integral": 0.0, "ratio": None, "steps": 3}
        )


# ---------------------------------------------------------------------- feature cosine KD


def test_feature_cosine_is_zero_for_identical_and_positively_scaled_states():
    states = [logits(2, 5, 8, seed=s) for s in (30, 31, 32)]
    assert feature_cosine_loss(states, [s.clone() for s in states]).item() == pytest.approx(
        0.0, abs=1e-6
    )
    assert feature_cosine_loss(states, [3.0 * s for s in states]).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_feature_cosine_known_values_for_hand_made_vectors():
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    student = torch.tensor([[[0.0, 1.0], [-2.0, 0.0], [1.0, 1.0], [0.0, 5.0]]])
    # 1 - cos per position: 1, 2, 1 - 1/sqrt(2), 0
    per_position = [1.0, 2.0, 1.0 - 1.0 / math.sqrt(2.0), 0.0]
    one_layer = feature_cosine_loss([teacher], [student])
    assert one_layer.item() == pytest.approx(sum(per_position) / 4, rel=1e-6)
    # sum over layers, not mean
    two_layers = feature_cosine_loss([teacher, teacher], [student, teacher])
    assert two_layers.item() == pytest.approx(sum(per_position) / 4, rel=1e-6)
    three = feature_cosine_loss([teacher] * 3, [student] * 3)
    assert three.item() == pytest.approx(3 * sum(per_position) / 4, rel=1e-6)
    mask = torch.tensor([[True, True, False, False]])
    assert feature_cosine_loss([teacher], [student], mask).item() == pytest.approx(1.5)


def test_feature_cosine_matches_numpy_and_ignores_padding():
    teacher = [logits(3, 7, 16, seed=s) for s in (33, 34)]
    student = [logits(3, 7, 16, seed=s) for s in (35, 36)]
    mask = random_mask(3, 7, seed=37)
    assert not mask.all()
    keep = mask.numpy()
    expected = sum(
        float((1.0 - np_cos(t.double().numpy(), s.double().numpy()))[keep].mean())
        for t, s in zip(teacher, student, strict=True)
    )
    value = feature_cosine_loss(teacher, student, mask)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    noisy_s = [s.clone() for s in student]
    for i, s in enumerate(noisy_s):
        s[~mask] = logits(int((~mask).sum()), 16, seed=40 + i, scale=100.0)
    assert feature_cosine_loss(teacher, noisy_s, mask).item() == pytest.approx(
        value.item(), rel=1e-6
    )
    assert feature_cosine_loss(teacher, noisy_s).item() != pytest.approx(value.item(), rel=1e-3)


def test_feature_cosine_gradient_reaches_the_student():
    teacher = [logits(2, 4, 6, seed=50)]
    student = [logits(2, 4, 6, seed=51).requires_grad_(True)]
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    feature_cosine_loss(teacher, student, mask).backward()
    grad = student[0].grad
    assert grad is not None and grad[mask].abs().sum() > 0
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))


def test_feature_cosine_shape_errors_name_the_layer():
    good = logits(2, 4, 6, seed=52)
    with pytest.raises(DataError, match="layer 1"):
        feature_cosine_loss([good, good], [good, logits(2, 4, 5, seed=53)])
    with pytest.raises(DataError, match="layer 0"):
        feature_cosine_loss([good[0]], [good[0]])
    with pytest.raises(DataError, match="layer 0.*mask"):
        feature_cosine_loss([good], [good], torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(DataError, match="2 teacher layers but 1 student"):
        feature_cosine_loss([good, good], [good])
    with pytest.raises(DataError, match="no layer pairs"):
        feature_cosine_loss([], [])


# --------------------------------------------------------------------- relation cosine KD


def attention(batch: int, heads: int, time: int, seed: int) -> torch.Tensor:
    return torch.softmax(logits(batch, heads, time, time, seed=seed), dim=-1)


def np_relation(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> float:
    t, s, m = teacher.double().numpy().copy(), student.double().numpy().copy(), mask.numpy()
    t[~np.broadcast_to(m[:, None, None, :], t.shape)] = 0.0
    s[~np.broadcast_to(m[:, None, None, :], s.shape)] = 0.0
    one_minus_cos = 1.0 - np_cos(t, s)  # [B, H, T]
    rows = np.broadcast_to(m[:, None, :], one_minus_cos.shape)
    return float(one_minus_cos[rows].mean())


def test_relation_cosine_is_zero_for_identical_maps():
    maps = [attention(2, 4, 6, seed=s) for s in (60, 61)]
    assert relation_cosine_loss(maps, [m.clone() for m in maps]).item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_relation_cosine_known_values_for_hand_made_maps():
    teacher = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    swapped = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    assert relation_cosine_loss([teacher], [swapped]).item() == pytest.approx(1.0)
    teacher = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])
    uniform = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]])
    # row 0 identical (0), row 1: 1 - 0.5/(1*sqrt(0.5)) = 1 - 1/sqrt(2); mean over rows
    expected = (1.0 - 1.0 / math.sqrt(2.0)) / 2
    assert relation_cosine_loss([teacher], [uniform]).item() == pytest.approx(expected, rel=1e-6)
    # summed over layers
    assert relation_cosine_loss([teacher, teacher], [uniform, swapped]).item() == pytest.approx(
        expected + relation_cosine_loss([teacher], [swapped]).item(), rel=1e-6
    )
    # masking the second position: row 1 drops out and key 1 is zeroed -> rows (0.5,0) vs (0.5,0)
    mask = torch.tensor([[True, False]])
    assert relation_cosine_loss([teacher], [uniform], mask).item() == pytest.approx(0.0, abs=1e-7)


def test_relation_cosine_matches_numpy_and_ignores_padded_rows_and_keys():
    teacher = [attention(3, 4, 7, seed=62), attention(3, 4, 7, seed=63)]
    student = [attention(3, 4, 7, seed=64), attention(3, 4, 7, seed=65)]
    mask = random_mask(3, 7, seed=66)
    assert not mask.all()
    expected = sum(np_relation(t, s, mask) for t, s in zip(teacher, student, strict=True))
    value = relation_cosine_loss(teacher, student, mask)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    pad_rows = ~mask[:, None, :, None]
    pad_keys = ~mask[:, None, None, :]
    noisy = []
    for i, s in enumerate(student):
        junk = 10.0 * torch.rand(s.shape, generator=gen(70 + i))
        noisy.append(torch.where(pad_rows | pad_keys, junk, s))
    assert relation_cosine_loss(teacher, noisy, mask).item() == pytest.approx(
        value.item(), rel=1e-6
    )
    assert relation_cosine_loss(teacher, noisy).item() != pytest.approx(value.item(), rel=1e-3)


def test_relation_cosine_averages_heads_first_when_head_counts_differ():
    teacher = attention(2, 4, 5, seed=80)
    student = attention(2, 2, 5, seed=81)
    mask = random_mask(2, 5, seed=82)
    expected = np_relation(teacher.mean(1, keepdim=True), student.mean(1, keepdim=True), mask)
    assert relation_cosine_loss([teacher], [student], mask).item() == pytest.approx(
        expected, rel=1e-5
    )
    # a student whose heads differ from the teacher's but whose head mean matches scores 0
    mean = teacher.mean(1, keepdim=True)
    offset = 0.1 * (attention(2, 1, 5, seed=83) - attention(2, 1, 5, seed=84))
    split = torch.cat([mean + offset, mean - offset], dim=1)
    assert relation_cosine_loss([teacher], [split]).item() == pytest.approx(0.0, abs=1e-6)
    # a head-averaged [B, T, T] map is accepted as one head
    assert relation_cosine_loss([teacher], [mean[:, 0]]).item() == pytest.approx(0.0, abs=1e-6)
    # with equal head counts heads are paired, so permuting heads is penalised
    permuted = teacher[:, [1, 0, 3, 2]]
    assert relation_cosine_loss([teacher], [permuted]).item() > 0.01


def test_relation_cosine_gradient_reaches_the_student():
    teacher = [attention(1, 2, 4, seed=85)]
    student = [attention(1, 2, 4, seed=86).requires_grad_(True)]
    relation_cosine_loss(teacher, student).backward()
    assert student[0].grad is not None and student[0].grad.abs().sum() > 0


def test_relation_cosine_shape_errors_name_the_layer():
    good = attention(2, 2, 4, seed=87)
    with pytest.raises(DataError, match="layer 1.*student"):
        relation_cosine_loss([good, good], [good, torch.rand(2, 2, 4, 3)])
    with pytest.raises(DataError, match="layer 0.*batch or length"):
        relation_cosine_loss([good], [attention(2, 2, 5, seed=88)])
    with pytest.raises(DataError, match="layer 2.*teacher"):
        relation_cosine_loss([good, good, torch.rand(2, 4)], [good, good, good])
    with pytest.raises(DataError, match="layer 0.*mask"):
        relation_cosine_loss([good], [good], torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(DataError, match="3 teacher layers but 2 student"):
        relation_cosine_loss([good] * 3, [good] * 2)
