"""fairseq criterion speechkd_lfmmi: dictionary → pdf mapping, loss = LFMMILoss, training, PER."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.logging import metrics
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.fairseq_plugin.criterions.lfmmi import (
    LFMMICriterion,
    LFMMICriterionConfig,
    greedy_pdfs,
    pdf_mapping,
)
from speechkd.mmi import Fsa, LFMMILoss, compose_lm_topology, ctc_graph, ctc_topo

PHONES = ["a", "b", "c", "d"]  # phones.txt ids 1..4; pdf 0 = blank
DICT_ORDER = ["d", "a", "c", "b"]  # dict.phn.txt order (by count), not the phone-table order


def make_dictionary(symbols=DICT_ORDER) -> Dictionary:
    d = Dictionary()  # <s>=0 (blank), <pad>=1, </s>=2, <unk>=3
    for s in symbols:
        d.add_symbol(s)
    return d


def write_lang(tmp_path, phones=PHONES):
    """phones.txt and a CTC-topology den.fst.txt of a unigram phone LM."""
    (tmp_path / "phones.txt").write_text(
        "<eps> 0\n" + "".join(f"{p} {i}\n" for i, p in enumerate(phones, 1)), encoding="utf-8"
    )
    n = len(phones)
    lm = Fsa(
        [(0, 0, p) for p in range(1, n + 1)],
        [math.log(1.0 / (n + 1))] * n,
        [math.log(1.0 / (n + 1))],
    )
    den = compose_lm_topology(lm, ctc_topo(n))
    (tmp_path / "den.fst.txt").write_text(den.to_openfst(), encoding="utf-8")
    return den


class MockCtc(nn.Module):
    """A wav2vec_ctc-like model: features [B, T, F] -> logits [T, B, V], with a padding mask."""

    def __init__(self, num_features: int, vocab: int) -> None:
        super().__init__()
        self.proj = nn.Linear(num_features, vocab)

    def forward(self, source, padding_mask=None):
        return {"encoder_out": self.proj(source).transpose(0, 1), "padding_mask": padding_mask}

    def get_logits(self, net_output):
        return net_output["encoder_out"]


def make_criterion(tmp_path, dictionary=None, **overrides) -> LFMMICriterion:
    write_lang(tmp_path)
    cfg = LFMMICriterionConfig(
        den_graph=str(tmp_path / "den.fst.txt"),
        phones=str(tmp_path / "phones.txt"),
        sentence_avg=True,
        **overrides,
    )
    task = SimpleNamespace(target_dictionary=dictionary or make_dictionary(), blank_symbol="<s>")
    return LFMMICriterion(cfg, task)


def make_sample(dictionary, targets: list[list[str]], lengths: list[int], feats: torch.Tensor):
    rows = [torch.tensor([dictionary.index(s) for s in t]) for t in targets]
    width = max(len(r) for r in rows)
    target = torch.full((len(rows), width), dictionary.pad())
    for i, r in enumerate(rows):
        target[i, : len(r)] = r
    T = feats.shape[1]
    padding_mask = torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]
    return {
        "id": torch.arange(len(rows)),
        "net_input": {"source": feats, "padding_mask": padding_mask},
        "target": target,
        "target_lengths": torch.tensor([len(r) for r in rows]),
        "ntokens": sum(len(r) for r in rows),
    }


def test_pdf_mapping_follows_the_phone_table_not_the_dictionary_order():
    d = make_dictionary()
    columns, dict_to_pdf = pdf_mapping(d, PHONES)
    # pdf 0 = <s> (index 0), pdf p = phone p: a,b,c,d sit at dictionary indices 5,7,6,4
    assert columns.tolist() == [0, 5, 7, 6, 4]
    assert dict_to_pdf.tolist() == [0, -1, -1, -1, 4, 1, 3, 2]


def test_dictionary_symbol_not_in_phones_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\['x'\]"):
        pdf_mapping(make_dictionary([*DICT_ORDER, "x"]), PHONES)
    with pytest.raises(ConfigError, match=r"\['c'\].*--phones"):
        pdf_mapping(make_dictionary(["a", "b", "d"]), PHONES)


def test_criterion_rejects_letter_dictionary(tmp_path):
    with pytest.raises(ConfigError, match=r"'\|'"):
        make_criterion(tmp_path, make_dictionary(["a", "b", "c", "d", "|"]))


def test_loss_equals_lfmmi_on_selected_columns(tmp_path):
    torch.manual_seed(0)
    d = make_dictionary()
    crit = make_criterion(tmp_path, d, leaky_hmm_coefficient=1e-4)
    model = MockCtc(6, len(d))
    feats = torch.randn(2, 12, 6)
    sample = make_sample(d, [["a", "b", "b", "d"], ["c", "a"]], [12, 7], feats)
    loss, sample_size, log = crit(model, sample)

    logits = model(**sample["net_input"])["encoder_out"].transpose(0, 1)  # B, T, V
    log_likes = logits[..., [0, 5, 7, 6, 4]].log_softmax(-1)
    den = Fsa.from_openfst((tmp_path / "den.fst.txt").read_text())
    expected = LFMMILoss(den, leaky_hmm_coefficient=1e-4)(
        log_likes, torch.tensor([12, 7]), [ctc_graph([1, 2, 2, 4]), ctc_graph([3, 1])]
    )
    torch.testing.assert_close(loss, expected.loss.to(loss.dtype))
    assert sample_size == 2  # sentence_avg
    assert log["ntokens"] == 6 and log["nsentences"] == 2 and log["mmi_failed"] == 0
    assert log["mmi_frames"] == 19
    assert log["mmi_num"] == pytest.approx(float(expected.num.sum()), rel=1e-5)
    assert log["mmi_den"] == pytest.approx(float(expected.den.sum()), rel=1e-5)
    assert "c_errors" not in log  # training: no decoding


def test_padded_frames_do_not_change_the_loss(tmp_path):
    torch.manual_seed(1)
    d = make_dictionary()
    crit = make_criterion(tmp_path, d)
    model = MockCtc(6, len(d))
    feats = torch.randn(1, 9, 6)
    short, _, _ = crit(model, make_sample(d, [["a", "c"]], [9], feats))
    padded_feats = torch.cat([feats, 100 * torch.randn(1, 5, 6)], dim=1)
    padded, _, _ = crit(model, make_sample(d, [["a", "c"]], [9], padded_feats))
    torch.testing.assert_close(short, padded)


def test_gradient_steps_decrease_the_loss(tmp_path):
    torch.manual_seed(2)
    d = make_dictionary()
    crit = make_criterion(tmp_path, d)
    model = MockCtc(6, len(d))
    sample = make_sample(d, [["a", "b", "d"], ["c", "c"]], [10, 8], torch.randn(2, 10, 6))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss, _, _ = crit(model, sample)
        losses.append(loss.item())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert model.proj.weight.grad[[1, 2, 3]].abs().sum() == 0  # pad/eos/unk columns: unused


@pytest.mark.parametrize("valid_decode", ["greedy", "den_posterior"])
def test_validation_counts_greedy_phone_errors(tmp_path, valid_decode):
    d = make_dictionary()
    crit = make_criterion(tmp_path, d, valid_decode=valid_decode)
    model = MockCtc(len(d), len(d))
    with torch.no_grad():
        model.proj.weight.copy_(10 * torch.eye(len(d)))
        model.proj.bias.zero_()
    model.eval()
    # frames spell (dictionary symbols): a a <s> b c c -> a b c
    frames = [d.index(s) for s in ["a", "a", "<s>", "b", "c", "c"]]
    feats = nn.functional.one_hot(torch.tensor([frames, frames]), len(d)).float()
    sample = make_sample(d, [["a", "b", "c"], ["a", "d", "c", "c"]], [6, 6], feats)
    _, _, log = crit(model, sample)
    assert log["c_total"] == 7
    assert log["c_errors"] == 2  # second: one substitution (d -> b), one deletion (c)
    # confident outputs: the den-graph posteriors (unigram LM) keep the same best path
    assert log["raw_c_errors"] == log["den_c_errors"] == 2
    with metrics.aggregate() as agg:
        LFMMICriterion.reduce_metrics([log])
        assert agg.get_smoothed_value("uer") == pytest.approx(100 * 2 / 7, abs=1e-3)
        assert agg.get_smoothed_value("per") == agg.get_smoothed_value("uer")
        assert agg.get_smoothed_value("raw_uer") == agg.get_smoothed_value("uer")
    assert greedy_pdfs(torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])), 3) == [1]


def test_unknown_target_symbol_is_a_data_error(tmp_path):
    d = make_dictionary()
    crit = make_criterion(tmp_path, d)
    sample = make_sample(d, [["a", "<unk>"]], [5], torch.randn(1, 5, 6))
    with pytest.raises(DataError, match="utterance 0.*<unk>"):
        crit(MockCtc(6, len(d)), sample)


def test_den_graph_with_more_pdfs_than_phones_is_a_config_error(tmp_path):
    write_lang(tmp_path, PHONES + ["e"])  # den graph over 6 pdfs
    (tmp_path / "phones.txt").write_text(
        "<eps> 0\n" + "".join(f"{p} {i}\n" for i, p in enumerate(PHONES, 1)), encoding="utf-8"
    )
    cfg = LFMMICriterionConfig(
        den_graph=str(tmp_path / "den.fst.txt"), phones=str(tmp_path / "phones.txt")
    )
    task = SimpleNamespace(target_dictionary=make_dictionary(), blank_symbol="<s>")
    with pytest.raises(ConfigError, match="pdf 5"):
        LFMMICriterion(cfg, task)


def tiny_wav2vec_ctc(dictionary: Dictionary):
    """fairseq's stock Wav2VecCtc around a randomly initialised 1-block wav2vec2 (no checkpoint)."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
    from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
    from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
    from omegaconf import OmegaConf

    task_cfg = OmegaConf.structured(AudioPretrainingConfig(data=".", tpu=False, seed=1))
    task_cfg._name = "audio_pretraining"
    model_cfg = OmegaConf.structured(
        Wav2Vec2Config(
            conv_feature_layers="[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2",
            encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
            encoder_attention_heads=2, conv_pos=4, conv_pos_groups=2, final_dim=8,
        )
    )  # fmt: skip
    model_cfg._name = "wav2vec2"
    cfg = Wav2Vec2CtcConfig(
        w2v_args=OmegaConf.create({"task": task_cfg, "model": model_cfg}),
        data=".", normalize=False, mask_prob=0.0, mask_channel_prob=0.0,
    )  # fmt: skip
    return Wav2VecCtc.build_model(cfg, SimpleNamespace(target_dictionary=dictionary))


def test_stock_wav2vec_ctc_model(tmp_path):
    torch.manual_seed(3)
    d = make_dictionary()
    crit = make_criterion(tmp_path, d)
    model = tiny_wav2vec_ctc(d)
    model.eval()  # no dropout: the two forward passes below agree
    source = torch.randn(2, 8000)
    padding_mask = torch.zeros(2, 8000, dtype=torch.bool)
    padding_mask[1, 5000:] = True  # 24 and 15 frames of 20 ms
    sample = {
        "id": torch.arange(2),
        "net_input": {"source": source, "padding_mask": padding_mask},
        "target": torch.tensor([[d.index("a"), d.index("b"), d.index("c")],
                                [d.index("d"), d.pad(), d.pad()]]),
        "ntokens": 4,
    }  # fmt: skip
    loss, _, log = crit(model, sample)
    loss.backward()
    assert torch.isfinite(loss) and log["mmi_frames"] == 24 + 15 and log["c_total"] == 4
    assert model.w2v_encoder.proj.weight.grad.abs().sum() > 0

    with torch.no_grad():
        net_output = model(**sample["net_input"])
        logits = model.get_logits(net_output).transpose(0, 1)
        log_likes = (
            logits[..., [0, 5, 7, 6, 4]]
            .masked_fill(net_output["padding_mask"][..., None], 0.0)
            .log_softmax(-1)
        )
        den = Fsa.from_openfst((tmp_path / "den.fst.txt").read_text())
        expected = LFMMILoss(den)(
            log_likes, torch.tensor([24, 15]), [ctc_graph([1, 2, 3]), ctc_graph([4])]
        )
    torch.testing.assert_close(loss.detach(), expected.loss.to(loss.dtype))


def test_den_posterior_decoding_differs_from_raw_greedy(tmp_path):
    """Flat outputs: the raw best path is whatever wins by a hair, the den posteriors' is blank."""
    d = make_dictionary()
    crit = make_criterion(tmp_path, d)
    log_likes = torch.full((1, 6, 5), math.log(0.2))
    log_likes[0, :, 3] += 1e-3  # phone c barely ahead on every frame
    errors = crit.validation_errors(
        log_likes.log_softmax(-1), torch.tensor([6]), [torch.tensor([3])]
    )
    assert errors["raw_c_errors"] == 0  # c c c c c c -> c
    # under the CTC topology most paths sit in blank: the posterior best path is empty
    assert errors["c_errors"] == errors["den_c_errors"] == 1  # one deletion
    assert errors["c_total"] == 1
