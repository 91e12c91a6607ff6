"""DistillW2V2 objective: layer maps, hidden MSE with projections, prediction loss, the mix."""

from __future__ import annotations

import math

import pytest
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.losses.hidden_mse import (
    HiddenMSE,
    distill_loss,
    masked_mse,
    parse_layer_map,
    prediction_loss,
    select_pdfs,
    w2v2_layer_map,
)
from speechkd.mmi import Fsa, MMIDistillLoss, compose_lm_topology, ctc_topo, total_scores

V = 5  # blank + 4 phones


def bigram_lm(num_phones: int) -> Fsa:
    arcs, scores = [], []
    for s in range(num_phones + 1):
        for p in range(1, num_phones + 1):
            arcs.append((s, p, p))
            scores.append(-math.log(num_phones + 1))
    return Fsa(arcs, scores, [-math.log(num_phones + 1)] * (num_phones + 1))


@pytest.fixture
def den() -> Fsa:
    return compose_lm_topology(bigram_lm(V - 1), ctc_topo(V - 1))


def make_batch(B=2, T=9, d_s=4, d_t=6, n_s=2, n_t=4, lengths=(9, 6)):
    g = torch.Generator().manual_seed(0)
    student = {
        "logits": torch.randn(B, T, V, generator=g, dtype=torch.float64).requires_grad_(True),
        "hidden": [torch.randn(B, T, d_s, generator=g, dtype=torch.float64) for _ in range(n_s)],
    }
    teacher = {
        "logits": 2 * torch.randn(B, T, V, generator=g, dtype=torch.float64),
        "hidden": [torch.randn(B, T, d_t, generator=g, dtype=torch.float64) for _ in range(n_t)],
    }
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    return student, teacher, mask


def test_layer_maps_of_the_paper():
    assert w2v2_layer_map(24, 12) == {i: 2 * i for i in range(1, 13)}
    m10 = w2v2_layer_map(24, 10)
    assert list(m10) == list(range(1, 11))
    assert list(m10.values()) == [2, 4, 6, 10, 12, 14, 18, 20, 22, 24]
    assert w2v2_layer_map(4, 2) == {1: 2, 2: 4}
    assert w2v2_layer_map(12, 12) == {i: i for i in range(1, 13)}
    assert list(w2v2_layer_map(12, 10).values()) == [1, 2, 3, 5, 6, 7, 9, 10, 11, 12]
    for n_t, n_s in ((24, 7), (4, 3), (2, 4), (0, 1), (18, 10)):
        with pytest.raises(ConfigError):
            w2v2_layer_map(n_t, n_s)
    assert parse_layer_map("1:2, 2:4") == {1: 2, 2: 4}
    for bad in ("1-2", "1:2,1:3", "0:1", ""):
        with pytest.raises(ConfigError):
            parse_layer_map(bad)


def test_masked_mse_by_hand_and_padding():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    y = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    # (1 + 4 + 4 + 9) / 4 elements
    assert masked_mse(x, y, mask).item() == pytest.approx(18 / 4)
    with pytest.raises(DataError):
        masked_mse(x, y[..., :1], mask)


def test_hidden_mse_equals_hand_computation_and_trains_projections():
    student, teacher, mask = make_batch()
    hm = HiddenMSE({1: 2, 2: 4}, 4, 6).double()
    loss, per_layer = hm(student["hidden"], teacher["hidden"], mask)
    expected = 0.0
    for i, g in ((1, 2), (2, 4)):
        w, b = hm.proj[str(i)].weight, hm.proj[str(i)].bias
        err = (student["hidden"][i - 1] @ w.T + b - teacher["hidden"][g - 1]) ** 2
        layer = sum(err[u, : int(n)].sum() for u, n in enumerate(mask.sum(1))) / (15 * 6)
        torch.testing.assert_close(per_layer[i], layer.detach())
        expected = expected + layer
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hm.parameters())
    with pytest.raises(DataError):  # a mapped teacher layer that does not exist
        HiddenMSE({1: 5}, 4, 6).double()(student["hidden"], teacher["hidden"], mask)


def test_prediction_loss_terms(den):
    student, teacher, mask = make_batch()
    lengths = mask.sum(1)
    mmi = MMIDistillLoss(den, numerator="ctc_best_path", leaky_hmm_coefficient=1e-4)
    s_lp = student["logits"].log_softmax(-1)
    t_lp = teacher["logits"].log_softmax(-1)
    mmi_direct = mmi(s_lp, lengths, t_lp).loss / lengths.sum()
    mse = masked_mse(student["logits"], teacher["logits"], mask)

    loss0, parts0 = prediction_loss(student["logits"], teacher["logits"], mask, 0.0)
    torch.testing.assert_close(loss0, mse)
    assert "mmi" not in parts0  # beta = 0: the MMI term is switched off

    loss1, parts1 = prediction_loss(student["logits"], teacher["logits"], mask, 1.0, mmi)
    torch.testing.assert_close(loss1, mmi_direct)
    assert "pred_mse" not in parts1 and parts1["mmi_failed"].item() == 0

    loss_mix, parts = prediction_loss(student["logits"], teacher["logits"], mask, 0.8, mmi)
    torch.testing.assert_close(loss_mix, 0.8 * mmi_direct + 0.2 * mse)
    torch.testing.assert_close(parts["mmi"], mmi_direct.detach())
    torch.testing.assert_close(parts["pred_mse"], mse.detach())

    # the MMI term by hand: num (teacher's collapsed best path) - den, per frame
    best = t_lp.argmax(-1)
    from speechkd.mmi import ctc_graph

    nums = []
    for u, n in enumerate(lengths.tolist()):
        seq = torch.unique_consecutive(best[u, :n])
        nums.append(ctc_graph(seq[seq != 0]))
    num = total_scores(nums, s_lp.detach(), lengths, backend="log")
    den_s = total_scores(den, s_lp.detach(), lengths, backend="log", leaky_hmm_coefficient=1e-4)
    torch.testing.assert_close(
        loss1.detach(), -(num - den_s).sum() / lengths.sum(), rtol=1e-6, atol=1e-6
    )

    with pytest.raises(ConfigError):
        prediction_loss(student["logits"], teacher["logits"], mask, 0.5)  # no MMI module
    with pytest.raises(ConfigError):
        prediction_loss(student["logits"], teacher["logits"], mask, 1.5, mmi)


def test_mmi_reduction_does_not_change_the_per_frame_term(den):
    student, teacher, mask = make_batch()
    values = []
    for reduction in ("sum", "mean", "none"):
        mmi = MMIDistillLoss(den, numerator="frame_best_path", reduction=reduction)
        loss, _ = prediction_loss(student["logits"], teacher["logits"], mask, 1.0, mmi)
        values.append(loss)
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(values[0], values[2])


def test_pdf_columns_of_a_fairseq_dictionary(den):
    student, teacher, mask = make_batch()
    # fairseq layout: <s>=blank, <pad>, </s>, <unk>, then the 4 phones; 3 extra columns
    g = torch.Generator().manual_seed(1)
    extra_s = torch.randn(2, 9, 3, generator=g, dtype=torch.float64)
    wide_s = torch.cat([student["logits"][..., :1], extra_s, student["logits"][..., 1:]], -1)
    wide_t = torch.cat([teacher["logits"][..., :1], extra_s, teacher["logits"][..., 1:]], -1)
    torch.testing.assert_close(select_pdfs(wide_s, V, blank=0, pdf_offset=3), student["logits"])
    mmi = MMIDistillLoss(den, numerator="mask")
    loss, parts = prediction_loss(wide_s, wide_t, mask, 1.0, mmi, pdf_offset=3)
    lengths = mask.sum(1)
    s_lp = select_pdfs(wide_s.log_softmax(-1), V, 0, 3)
    t_lp = select_pdfs(wide_t.log_softmax(-1), V, 0, 3)
    torch.testing.assert_close(loss, mmi(s_lp, lengths, t_lp).loss / lengths.sum())
    with pytest.raises(ConfigError):
        select_pdfs(student["logits"], V, blank=0, pdf_offset=3)


def test_distill_loss_mix_and_switches(den):
    student, teacher, mask = make_batch()
    hm = HiddenMSE(w2v2_layer_map(4, 2), 4, 6).double()
    mmi = MMIDistillLoss(den, numerator="frame_best_path")
    hidn, _ = hm(student["hidden"], teacher["hidden"], mask)
    pred, _ = prediction_loss(student["logits"], teacher["logits"], mask, 0.8, mmi)
    loss, parts = distill_loss(student, teacher, mask, 0.8, 0.8, hm, mmi)
    torch.testing.assert_close(loss, 0.2 * hidn + 0.8 * pred)
    assert {"hidn", "hidn_1", "hidn_2", "pred", "pred_mse", "mmi", "loss"} <= set(parts)

    # alpha = 1 (M1/M2): no hidden term, no projections needed
    loss_m1, parts_m1 = distill_loss(student, teacher, mask, 1.0, 0.0)
    torch.testing.assert_close(loss_m1, masked_mse(student["logits"], teacher["logits"], mask))
    assert "hidn" not in parts_m1 and "mmi" not in parts_m1
    # alpha = 0: the hidden term alone, the prediction term is not computed
    loss_h, parts_h = distill_loss(student, teacher, mask, 0.0, 1.0, hm)
    torch.testing.assert_close(loss_h, hidn)
    assert "pred" not in parts_h
    with pytest.raises(ConfigError):
        distill_loss(student, teacher, mask, 0.8, 1.0, None, mmi)


@pytest.mark.parametrize("numerator", ["frame_best_path", "ctc_best_path", "mask"])
def test_padding_frames_do_not_affect_the_loss(den, numerator):
    student, teacher, mask = make_batch()
    hm = HiddenMSE({1: 2, 2: 4}, 4, 6).double()
    mmi = MMIDistillLoss(den, numerator=numerator)
    loss, _ = distill_loss(student, teacher, mask, 0.8, 0.8, hm, mmi)
    loss.backward()
    grad = student["logits"].grad.clone()
    assert torch.isfinite(loss) and grad[~mask].abs().sum() == 0

    pad = ~mask[..., None]
    noisy_s = {
        "logits": student["logits"].detach().masked_fill(pad, 7.0),
        "hidden": [h.masked_fill(pad, -3.0) for h in student["hidden"]],
    }
    noisy_t = {
        "logits": teacher["logits"].masked_fill(pad, 9.0),
        "hidden": [h.masked_fill(pad, 5.0) for h in teacher["hidden"]],
    }
    loss2, _ = distill_loss(noisy_s, noisy_t, mask, 0.8, 0.8, hm, mmi)
    torch.testing.assert_close(loss2.detach(), loss.detach())
