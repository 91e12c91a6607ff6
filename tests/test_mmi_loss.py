"""LFMMILoss and MMIDistillLoss: objective values, regularisers, failures, teacher numerators."""

from __future__ import annotations

import math

import pytest
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.mmi import (
    Fsa,
    LFMMILoss,
    MMIDistillLoss,
    compose_lm_topology,
    ctc_best_path_graphs,
    ctc_graph,
    ctc_topo,
    frame_best_path_graphs,
    occupation_posteriors,
    posterior_mask,
    total_scores,
)

NEG_INF = float("-inf")


def bigram_lm(num_phones: int) -> Fsa:
    """A stochastic phone bigram: state p = last phone, uniform transitions and end."""
    arcs, scores = [], []
    for s in range(num_phones + 1):
        for p in range(1, num_phones + 1):
            arcs.append((s, p, p))
            scores.append(-math.log(num_phones + 1))
    final = [-math.log(num_phones + 1)] * (num_phones + 1)
    return Fsa(arcs, scores, final)


@pytest.fixture
def problem():
    den = compose_lm_topology(bigram_lm(4), ctc_topo(4))
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 5, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([10, 7, 9])
    nums = [ctc_graph(y) for y in ([1, 2, 2], [4], [3, 1])]
    return den, logits, lengths, nums


def test_lfmmi_value_and_gradient(problem):
    den, logits, lengths, nums = problem
    loss_fn = LFMMILoss(den, den_scale=0.5, leaky_hmm_coefficient=1e-3)
    x = logits.log_softmax(-1).requires_grad_(True)
    out = loss_fn(x, lengths, nums)
    num = total_scores(nums, x.detach(), lengths, backend="log")
    den_tot = total_scores(den, x.detach(), lengths, backend="log", leaky_hmm_coefficient=1e-3)
    torch.testing.assert_close(out.loss, -(num - 0.5 * den_tot).sum(), rtol=0, atol=1e-9)
    assert out.num_failed == 0 and out.num_frames == 26
    out.loss.backward()
    _, g_num = occupation_posteriors(nums, x.detach(), lengths, backend="log")
    _, g_den = occupation_posteriors(den, x.detach(), lengths, "log", 1e-3)
    torch.testing.assert_close(x.grad, -(g_num - 0.5 * g_den), rtol=0, atol=1e-9)


def test_regularisers(problem):
    den, logits, lengths, nums = problem
    x = logits.log_softmax(-1)
    xent_head = torch.randn(3, 10, 5, dtype=torch.float64).log_softmax(-1)
    plain = LFMMILoss(den, reduction="none")(x, lengths, nums)
    reg = LFMMILoss(den, xent_regularize=0.1, output_l2_regularize=0.01, reduction="none")(
        x, lengths, nums, xent_log_probs=xent_head
    )
    _, gamma = occupation_posteriors(nums, x, lengths)
    xent = (gamma * xent_head).sum((1, 2))
    valid = (torch.arange(10)[None, :] < lengths[:, None])[..., None]
    l2 = 0.5 * ((x * valid) ** 2).sum((1, 2))
    torch.testing.assert_close(reg.loss, plain.loss - 0.1 * xent + 0.01 * l2, rtol=0, atol=1e-9)
    torch.testing.assert_close(reg.xent, xent.sum())
    mean = LFMMILoss(den, reduction="mean")(x, lengths, nums)
    torch.testing.assert_close(mean.loss, plain.loss.sum() / 26)


def test_failed_utterance_is_reported_not_nan(problem, caplog):
    den, logits, lengths, nums = problem
    nums = [nums[0], ctc_graph([1, 1, 1, 1, 1]), nums[2]]  # needs 9 frames, utterance 1 has 7
    x = logits.log_softmax(-1).requires_grad_(True)
    out = LFMMILoss(den)(x, lengths, nums)
    assert out.failed == [1] and out.num_failed == 1 and out.num_frames == 19
    assert math.isfinite(out.loss.item())
    out.loss.backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all() and (x.grad[0] != 0).any()
    assert "left out of the loss" in caplog.text and "[1]" in caplog.text


def test_training_steps_decrease_the_loss(problem):
    den, logits, lengths, nums = problem
    params = logits.clone().requires_grad_(True)
    opt = torch.optim.SGD([params], lr=3.0)
    loss_fn = LFMMILoss(den, reduction="mean")
    losses = []
    for _ in range(15):
        opt.zero_grad()
        out = loss_fn(params.log_softmax(-1), lengths, nums)
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_teacher_best_paths():
    teacher = torch.full((2, 6, 4), -5.0, dtype=torch.float64)
    best = [[0, 2, 2, 0, 2, 3], [1, 1, 0, 1, 3, 3]]
    for b, seq in enumerate(best):
        teacher[b, torch.arange(6), torch.tensor(seq)] = -0.1
    lengths = torch.tensor([6, 4])
    frame = frame_best_path_graphs(teacher, lengths)
    assert [g.labels.tolist() for g in frame] == [best[0], best[1][:4]]
    ctc = ctc_best_path_graphs(teacher, lengths)
    expected = [ctc_graph([2, 2, 3]), ctc_graph([1, 1])]
    for g, e in zip(ctc, expected, strict=True):
        assert g.arcs.tolist() == e.arcs.tolist()
    student = torch.randn(2, 6, 4, dtype=torch.float64)
    tot = total_scores(frame, student, lengths)
    torch.testing.assert_close(tot[1], student[1, torch.arange(4), torch.tensor(best[1][:4])].sum())


def test_posterior_mask_tolerance():
    teacher = torch.full((1, 5, 3), math.log(0.01), dtype=torch.float64)
    teacher[0, :, 0] = math.log(0.98)
    teacher[0, 2, 1] = math.log(0.5)  # pdf 1 likely at frame 2 only
    mask0 = posterior_mask(teacher, torch.tensor([5]), threshold=0.3, tolerance=0)
    assert mask0[0, :, 1].tolist() == [False, False, True, False, False]
    assert mask0[0, :, 0].all() and not mask0[0, :, 2].any()
    mask1 = posterior_mask(teacher, torch.tensor([4]), threshold=0.3, tolerance=1)
    assert mask1[0, :, 1].tolist() == [False, True, True, True, False]
    assert not mask1[0, 4].any()  # padded frame
    with pytest.raises(ConfigError, match="threshold"):
        posterior_mask(teacher, torch.tensor([5]), threshold=0.0)


@pytest.mark.parametrize("numerator", ["frame_best_path", "ctc_best_path", "mask"])
def test_distill_loss(problem, numerator):
    den, logits, lengths, _ = problem
    teacher = (3 * torch.randn(3, 10, 5, dtype=torch.float64)).log_softmax(-1)
    x = logits.log_softmax(-1).requires_grad_(True)
    loss_fn = MMIDistillLoss(den, numerator=numerator, threshold=0.2, tolerance=1)
    out = loss_fn(x, lengths, teacher)
    assert math.isfinite(out.loss.item()) and out.num_failed == 0
    if numerator == "mask":  # the numerator paths are a subset of the denominator's
        assert (out.num <= out.den + 1e-9).all()
    out.loss.backward()
    assert torch.isfinite(x.grad).all()


def test_distill_mask_everything_allowed_gives_zero_loss(problem):
    den, logits, lengths, _ = problem
    flat = torch.full((3, 10, 5), math.log(0.2), dtype=torch.float64)  # every pdf >= threshold
    x = logits.log_softmax(-1)
    out = MMIDistillLoss(
        den, numerator="mask", threshold=0.1, leaky_hmm_coefficient=0.0, reduction="none"
    )(x, lengths, flat)
    torch.testing.assert_close(out.loss, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-9)


def test_loss_config_errors(problem):
    den, logits, lengths, nums = problem
    with pytest.raises(ConfigError, match="den_scale"):
        LFMMILoss(den, den_scale=-1.0)
    with pytest.raises(ConfigError, match="reduction"):
        LFMMILoss(den, reduction="avg")
    with pytest.raises(ConfigError, match="numerator"):
        MMIDistillLoss(den, numerator="lattice")
    with pytest.raises(DataError, match="teacher_log_probs shape"):
        MMIDistillLoss(den)(logits, lengths, logits[:, :5])
