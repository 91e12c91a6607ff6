"""fairseq criterion speechkd_st_kd (joint speech/text ST KD) on the tiny teacher and student."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.criterions import st_kd
from speechkd.fairseq_plugin.criterions.st_kd import (
    KDCapture,
    StKdCriterion,
    StKdOptions,
    attention_probs,
    freeze_parts,
    load_scheme,
    part_parameters,
    scheme_train_args,
)
from speechkd.fairseq_plugin.models.st_students import (
    build_from_config,
    import_joint_st,
    layer_modules,
    make_dictionary,
)
from speechkd.losses import ddsd, feature_cosine_loss, relation_cosine_loss

VOCAB = 40
PAD, EOS = 1, 2
ALL_KD = "res_enc,res_dec,feat,rel"


@pytest.fixture(scope="module")
def dictionary():
    return make_dictionary(VOCAB)


@pytest.fixture(scope="module")
def teacher(dictionary):
    torch.manual_seed(0)
    return build_from_config("tiny_teacher", dictionary).eval()


def _student(teacher, dictionary, **overrides):
    torch.manual_seed(1)
    return build_from_config("tiny_student", dictionary, source=teacher, **overrides)


def _task(dictionary):
    return SimpleNamespace(target_dictionary=dictionary, source_dictionary=dictionary)


def _sample(noisy_padding: bool = False, extra_tokens: int = 0, seed: int = 0) -> dict:
    """A speech+text batch of 2 with unequal lengths. ``noisy_padding`` fills the padded audio
    of the shorter clip with noise, ``extra_tokens`` adds padding columns to the token tensors
    (fairseq's speech encoder needs one unpadded clip in a batch, so audio gets no columns)."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([8000, 6000])
    wav = torch.zeros(2, 8000)
    for b, n in enumerate(lens.tolist()):
        wav[b, :n] = torch.randn(n, generator=g)
    if noisy_padding:
        wav[1, 6000:] = 3.0 * torch.randn(2000, generator=torch.Generator().manual_seed(9))
    txt_lens = torch.tensor([7, 5])
    txt = torch.full((2, 7 + extra_tokens), PAD)
    tgt_lens = [6, 4]
    tgt = torch.full((2, 6 + extra_tokens), PAD)
    prev = torch.full((2, 6 + extra_tokens), PAD)
    for b in range(2):
        n = int(txt_lens[b])
        txt[b, : n - 1] = torch.randint(4, VOCAB, (n - 1,), generator=g)
        txt[b, n - 1] = EOS
        m = tgt_lens[b]
        tgt[b, : m - 1] = torch.randint(4, VOCAB, (m - 1,), generator=g)
        tgt[b, m - 1] = EOS
        prev[b, 0] = EOS
        prev[b, 1:m] = tgt[b, : m - 1]
    net_input = dict(
        src_tokens=wav,
        src_lengths=lens,
        prev_output_tokens=prev,
        src_txt_tokens=txt,
        src_txt_lengths=txt_lens,
        mode="sup_speech",
    )
    return {"net_input": net_input, "target": tgt, "ntokens": int(tgt.ne(PAD).sum())}


def _criterion(dictionary, teacher=None, **options):
    return StKdCriterion(
        _task(dictionary),
        sentence_avg=False,
        label_smoothing=0.1,
        guide_alpha=0.8,
        text_input_cost_ratio=0.2,
        options=StKdOptions(**options),
        teacher=teacher,
    )


KD_KEYS = [f"{m}_kd_{t}" for m in ("sph", "txt") for t in ("res_enc", "res_dec", "feat", "rel")]


# ---------------------------------------------------------------------------------------------
# hooks


def test_attention_probs_match_fairseq_head_weights():
    from fairseq.modules import MultiheadAttention

    torch.manual_seed(0)
    mha = MultiheadAttention(16, 4, self_attention=True).eval()
    x = torch.randn(5, 2, 16)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    causal = torch.triu(torch.full((5, 5), float("-inf")), 1)
    mha.skip_embed_dim_check = True  # fairseq's own (non-fused) path returns per-head weights
    _, ref = mha(x, x, x, key_padding_mask=pad, attn_mask=causal, need_head_weights=True)
    ours = attention_probs(mha, x, x, pad, causal)
    torch.testing.assert_close(ours, ref.transpose(0, 1).float(), atol=1e-6, rtol=1e-5)


def test_capture_matches_model_states(teacher):
    sample = _sample()
    net = sample["net_input"]
    with torch.no_grad(), KDCapture(teacher) as cap:
        teacher(**net)
        text = teacher.encoder.text_encoder(
            net["src_txt_tokens"], net["src_txt_lengths"], return_all_hiddens=True
        )
        spch = teacher.encoder.spch_encoder(
            net["src_tokens"], net["src_lengths"], return_all_hiddens=True
        )
    for i, state in enumerate(text["encoder_states"][1:]):  # [0] is the embedding
        torch.testing.assert_close(cap.layers[("text", "txt")][i], state.transpose(0, 1))
    for i, state in enumerate(spch["encoder_states"]):
        torch.testing.assert_close(cap.layers[("text", "sph")][i], state.transpose(0, 1))
    assert torch.equal(cap.masks[("text", "txt")], ~text["encoder_padding_mask"][0])
    torch.testing.assert_close(cap.enc_out["sph"][0], spch["encoder_out"][0].transpose(0, 1))
    torch.testing.assert_close(cap.enc_out["txt"][0], text["encoder_out"][0].transpose(0, 1))
    with torch.no_grad():
        w2v = teacher.encoder.spch_encoder.w2v_encoder.w2v_model.extract_features(
            net["src_tokens"], padding_mask=_audio_pad(net), mask=False
        )
        _, extra = teacher.decoder.text_decoder.extract_features(net["prev_output_tokens"], text)
    for i, (state, *_rest) in enumerate(w2v["layer_results"]):
        torch.testing.assert_close(cap.layers[("speech", "sph")][i], state.transpose(0, 1))
    for i, state in enumerate(extra["inner_states"][1:]):
        torch.testing.assert_close(cap.layers[("decoder", "txt")][i], state.transpose(0, 1))
    # per-head attention maps of every layer, rows of valid queries sum to 1
    n_layers = {part: len(layers) for part, layers in layer_modules(teacher).items()}
    for (part, _), maps in cap.attn.items():
        assert sorted(maps) == list(range(n_layers[part]))
        assert maps[0].shape[1] == 4
    # the decoder saw the speech branch first, the text branch second: different states
    assert not torch.allclose(cap.layers[("decoder", "sph")][0], cap.layers[("decoder", "txt")][0])


def _audio_pad(net):
    lens = net["src_lengths"]
    return torch.arange(net["src_tokens"].shape[1])[None, :] >= lens[:, None]


# ---------------------------------------------------------------------------------------------
# the KD terms


def _hand_kd(teacher, student, sample, maps, crit):
    """The KD terms from hook-captured tensors and speechkd.losses only."""
    net = sample["net_input"]
    with torch.no_grad(), KDCapture(teacher) as t_cap:
        t_out = teacher(**net)
    with KDCapture(student) as s_cap:
        s_out = student(**net)
    t_sph, t_txt = torch.chunk(teacher.get_normalized_probs(t_out, log_probs=True), 2)
    s_sph, s_txt = torch.chunk(student.get_normalized_probs(s_out, log_probs=True), 2)
    dec_mask = sample["target"].ne(PAD)
    hand = {}
    for mod, t_lp, s_lp in (("sph", t_sph, s_sph), ("txt", t_txt, s_txt)):
        hand[f"{mod}_kd_res_dec"] = ddsd(t_lp, s_lp, 0.01, 0.5, dec_mask)
        (t_x, _), (s_x, s_mask) = t_cap.enc_out[mod], s_cap.enc_out[mod]
        t_proj = teacher.decoder.text_decoder.output_projection(t_x)
        s_proj = student.decoder.text_decoder.output_projection(s_x)
        hand[f"{mod}_kd_res_enc"] = ddsd(t_proj, s_proj, 0.01, 0.5, s_mask)
        parts = ("speech", "text", "decoder") if mod == "sph" else ("text", "decoder")
        feat, rel = 0.0, 0.0
        for part in parts:
            group = (part, mod)
            t_states = [t_cap.layers[group][t] for t in maps[part]]
            s_states = [s_cap.layers[group][s] for s in range(len(maps[part]))]
            feat = feat + feature_cosine_loss(t_states, s_states, s_cap.masks[group])
            t_attn = [t_cap.attn[group][t] for t in maps[part]]
            s_attn = [s_cap.attn[group][s] for s in range(len(maps[part]))]
            rel = rel + relation_cosine_loss(t_attn, s_attn, s_cap.masks[group])
        hand[f"{mod}_kd_feat"] = feat
        hand[f"{mod}_kd_rel"] = rel
    return hand


def test_kd_terms_equal_hand_computation(teacher, dictionary):
    student = _student(teacher, dictionary).eval()
    sample = _sample()
    crit = _criterion(dictionary, teacher, kd_terms=ALL_KD)
    _, sample_size, log = crit(student, sample)
    maps = student.student_layer_map
    assert maps == {"speech": [0, 3], "text": [0, 3], "decoder": [0, 3]}
    hand = _hand_kd(teacher, student, sample, maps, crit)
    for key in KD_KEYS:
        assert log[key] / sample_size == pytest.approx(float(hand[key]), rel=1e-5, abs=1e-6), key
        assert log[key] > 0, key
    for mod in ("sph", "txt"):
        parts = sum(log[f"{mod}_kd_{t}"] for t in ("res_enc", "res_dec", "feat", "rel"))
        assert log[f"{mod}_kd"] == pytest.approx(parts, rel=1e-6)


def test_kd_terms_ignore_padding(teacher, dictionary):
    student = _student(teacher, dictionary).eval()
    crit = _criterion(dictionary, teacher, kd_terms=ALL_KD)
    _, ss_a, log_a = crit(student, _sample())
    _, ss_b, log_b = crit(student, _sample(noisy_padding=True, extra_tokens=3))
    assert ss_a == ss_b
    for key in KD_KEYS + ["speech_loss", "text_loss", "guide_loss"]:
        assert log_b[key] == pytest.approx(log_a[key], rel=1e-4, abs=1e-5), key


def test_layer_pairing_follows_the_stored_map(teacher, dictionary):
    layer_map = {"speech": [2, 1], "text": [3, 0], "decoder": [1, 2]}
    student = _student(teacher, dictionary, student_layer_map=json.dumps(layer_map)).eval()
    assert student.student_layer_map == layer_map
    sample = _sample()
    crit = _criterion(dictionary, teacher, kd_terms="feat,rel")
    _, sample_size, log = crit(student, sample)
    assert crit.layer_maps(student) == layer_map
    hand = _hand_kd(teacher, student, sample, layer_map, crit)
    for key in ("sph_kd_feat", "txt_kd_feat", "sph_kd_rel", "txt_kd_rel"):
        assert log[key] / sample_size == pytest.approx(float(hand[key]), rel=1e-5), key
    # another pairing gives other values; --kd-layer-map overrides the stored map
    other = {"speech": [0, 3], "text": [0, 3], "decoder": [0, 3]}
    wrong = _hand_kd(teacher, student, sample, other, crit)
    assert abs(float(wrong["txt_kd_feat"]) - log["txt_kd_feat"] / sample_size) > 1e-3
    crit2 = _criterion(dictionary, teacher, kd_terms="feat", kd_layer_map=json.dumps(other))
    _, _, log2 = crit2(student, sample)
    assert log2["txt_kd_feat"] / sample_size == pytest.approx(float(wrong["txt_kd_feat"]), 1e-5)


def test_identical_student_has_zero_kd(teacher, dictionary):
    identity = {"speech": [0, 1, 2, 3], "text": [0, 1, 2, 3], "decoder": [0, 1, 2, 3]}
    student = _student(
        teacher,
        dictionary,
        student_speech_layers=4,
        encoder_layers=4,
        decoder_layers=4,
        student_layer_map=json.dumps(identity),
    ).eval()
    crit = _criterion(dictionary, teacher, kd_terms=ALL_KD)
    _, _, log = crit(student, _sample())
    for key in KD_KEYS:
        assert abs(log[key]) < 1e-4, (key, log[key])
    # a perturbed copy is no longer at zero
    with torch.no_grad():
        fc1 = layer_modules(student)["text"][1].fc1.weight
        fc1.add_(0.5 * torch.randn(fc1.shape, generator=torch.Generator().manual_seed(3)))
    _, _, log = crit(student, _sample())
    assert log["txt_kd_feat"] > 1e-3 and log["txt_kd_res_enc"] > 1e-5


# ---------------------------------------------------------------------------------------------
# the S2T / T2T losses


def test_ce_mode_is_fairseqs_guided_criterion(teacher, dictionary):
    guided = import_joint_st("criterions.text_guide_cross_entropy_acc").GuidedCrossEntAccCriterion(
        _task(dictionary), False, 0.8, 1.0, 0.1
    )
    ours = StKdCriterion(
        _task(dictionary),
        False,
        label_smoothing=0.1,
        guide_alpha=0.8,
        text_input_cost_ratio=1.0,
        options=StKdOptions(kd_weight=0.0, guide_loss="ce", target_loss="ce"),
    )
    sample = _sample()
    ref_loss, ref_size, _ = guided(teacher, sample)
    loss, size, _ = ours(teacher, sample)
    # fairseq normalises a speech+text batch by twice the tokens, this criterion by the tokens
    assert ref_size == 2 * size
    assert float(loss) == pytest.approx(float(ref_loss), rel=1e-6)


def test_ddsd_target_loss_closed_form(teacher, dictionary):
    crit = StKdCriterion(
        _task(dictionary),
        False,
        label_smoothing=0.0,
        guide_alpha=0.0,
        text_input_cost_ratio=1.0,
        options=StKdOptions(kd_weight=0.0, target_loss="ddsd", ddsd_alpha=0.1, ddsd_beta=0.3),
    )
    sample = _sample()
    _, _, log = crit(teacher, sample)
    with torch.no_grad():
        out = teacher(**sample["net_input"])
        lp_sph, lp_txt = torch.chunk(teacher.get_normalized_probs(out, log_probs=True), 2)
    tgt = sample["target"]
    mask = tgt.ne(PAD)

    def closed(lp):
        a, b = 0.1, 0.3
        p = lp.exp()
        p_y = p.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        d_ts = -torch.log(a + (1 - a) * p_y)  # KL(onehot || a onehot + (1-a) S)
        d_st = (1 - p_y) * math.log(1 / a) + p_y * torch.log(p_y / (a * p_y + 1 - a))
        return ((b * d_st + (1 - b) * d_ts) * mask).sum()

    assert log["speech_loss"] == pytest.approx(float(closed(lp_sph)), rel=1e-5)
    assert log["text_loss"] == pytest.approx(float(closed(lp_txt)), rel=1e-5)


def test_guide_uses_the_teachers_text_hypothesis(teacher, dictionary):
    student = _student(teacher, dictionary).eval()
    sample = _sample()
    crit = _criterion(dictionary, teacher, kd_weight=0.0, guide_loss="ddsd")
    _, _, log = crit(student, sample)
    with torch.no_grad():
        t_txt = torch.chunk(
            teacher.get_normalized_probs(teacher(**sample["net_input"]), log_probs=True), 2
        )[1]
        s_sph = torch.chunk(
            student.get_normalized_probs(student(**sample["net_input"]), log_probs=True), 2
        )[0]
    mask = sample["target"].ne(PAD)
    expected = ddsd(t_txt, s_sph, 0.01, 0.5, mask) * mask.sum()
    assert log["guide_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_dynamic_beta_moves_in_training(teacher, dictionary):
    student = _student(teacher, dictionary).train()
    crit = _criterion(dictionary, teacher, kd_terms="res_enc,res_dec", dynamic_ddsd=True)
    _, _, log = crit(student, _sample())
    assert set(crit.betas) == {"target", "guide", "res_enc", "res_dec"}
    assert any(abs(b - 0.5) > 1e-6 for b in crit.betas.values())
    assert log["beta_target"] == crit.betas["target"]


# ---------------------------------------------------------------------------------------------
# training and freezing


def test_optimizer_steps_lower_the_loss(teacher, dictionary):
    from fairseq.optim.adam import FairseqAdam

    student = _student(teacher, dictionary)
    crit = _criterion(dictionary, teacher, kd_terms=ALL_KD, train_parts="all")
    sample = _sample()
    cfg = SimpleNamespace(
        lr=[3e-3],
        adam_betas="(0.9, 0.98)",
        adam_eps=1e-8,
        weight_decay=0.0,
        use_old_adam=False,
        fp16_adam_stats=False,
    )
    params = [p for p in student.parameters() if p.requires_grad]
    opt = FairseqAdam(cfg, params)

    def evaluate():
        student.eval()
        with torch.no_grad():
            loss, size, _ = crit(student, sample)
        student.train()
        return float(loss) / size

    before = evaluate()
    torch.manual_seed(0)
    for _ in range(6):
        opt.zero_grad()
        loss, size, _ = crit(student, sample)
        (loss / size).backward()
        opt.step()
    assert evaluate() < before - 0.05


SCHEMES = ["module", "task", "all"]
# Table 2: KD modules, Speech & Guide loss, Text loss per scheme and stage
TABLE2 = {
    ("module", 1): ("speech_encoder", True, True),
    ("module", 2): ("speech_encoder,text_encoder", True, True),
    ("module", 3): ("speech_encoder,text_encoder,decoder", True, True),
    ("task", 1): ("speech_encoder", False, False),
    ("task", 2): ("speech_encoder,text_encoder", False, True),
    ("task", 3): ("speech_encoder,text_encoder,decoder", True, True),
    ("all", 1): ("speech_encoder,text_encoder,decoder", True, True),
    ("all", 2): ("speech_encoder,text_encoder,decoder", True, True),
    ("all", 3): ("speech_encoder,text_encoder,decoder", True, True),
}
STAGE_PARTS = {
    1: {"speech_encoder", "shared_encoder"},
    2: {"speech_encoder", "shared_encoder", "text_encoder"},
    3: {"speech_encoder", "shared_encoder", "text_encoder", "decoder"},
}


@pytest.mark.parametrize(("scheme", "stage"), sorted(TABLE2))
def test_scheme_files_follow_table2(scheme, stage):
    crit = load_scheme(f"{scheme}_stage{stage}")["criterion"]
    modules, s2t, t2t = TABLE2[(scheme, stage)]
    assert (crit["kd_modules"], crit["s2t_loss"], crit["t2t_loss"]) == (modules, s2t, t2t)
    assert crit["kd_terms"] == "res_enc,res_dec" and crit["kd_weight"] == 0.5
    parts = set(st_kd._parse_list("train_parts", crit["train_parts"], st_kd.TRAIN_PARTS))
    assert parts == STAGE_PARTS[stage]
    flags = scheme_train_args(f"{scheme}_stage{stage}", teacher_path="/x/t.pt")
    assert flags[:2] == ["--criterion", "speechkd_st_kd"]
    assert flags[flags.index("--teacher-path") + 1] == "/x/t.pt"
    parsed, rest = st_kd._criterion_parser().parse_known_args(flags[2:])
    assert parsed.kd_modules == modules and parsed.s2t_loss is s2t and parsed.t2t_loss is t2t
    assert "--text-input-cost-ratio" in rest and "--lr" in rest


@pytest.mark.parametrize("stage", [1, 2])
def test_stage_configs_freeze_the_right_parameters(teacher, dictionary, stage):
    student = _student(teacher, dictionary).train()
    opts = {
        k: v
        for k, v in load_scheme(f"task_stage{stage}")["criterion"].items()
        if k in StKdOptions.__dataclass_fields__ and k != "teacher_path"
    }
    crit = _criterion(dictionary, teacher, **opts)
    loss, size, log = crit(student, _sample())
    (loss / size).backward()
    groups = part_parameters(student)
    for group, params in groups.items():
        trained = group in STAGE_PARTS[stage]
        for name, p in params:
            assert p.requires_grad is trained, name
            if not trained:
                assert p.grad is None, name
        if trained:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in params), group
    # Task scheme: stage 1 has only speech KD, stage 2 adds text KD and the text loss
    assert "speech_loss" not in log
    assert ("text_loss" in log) is (stage == 2) and ("txt_kd_res_enc" in log) is (stage == 2)
    assert "sph_kd_res_enc" in log and "sph_kd_res_dec" not in log


def test_part_groups_cover_the_model(teacher, dictionary):
    student = _student(teacher, dictionary)
    groups = part_parameters(student)
    names = [n for params in groups.values() for n, _ in params]
    assert sorted(names) == sorted(n for n, _ in student.named_parameters())
    assert all(n.startswith("decoder.") for n, _ in groups["decoder"])
    counts = freeze_parts(student, "speech_encoder")
    assert counts["decoder"] == counts["text_encoder"] == counts["shared_encoder"] == 0
    assert counts["speech_encoder"] == len(groups["speech_encoder"])
    with pytest.raises(ConfigError, match="unknown"):
        freeze_parts(student, "speech_encoder,adaptor")


def test_bad_options_raise(dictionary, teacher):
    with pytest.raises(ConfigError, match="teacher_path"):
        _criterion(dictionary, None, kd_weight=0.5)
    with pytest.raises(ConfigError, match="kd_terms"):
        _criterion(dictionary, teacher, kd_terms="res,feat")
    with pytest.raises(ConfigError, match="no scheme file"):
        load_scheme("nonexistent_scheme")


def test_single_modality_batches(teacher, dictionary):
    student = _student(teacher, dictionary).eval()
    crit = _criterion(dictionary, teacher, kd_terms=ALL_KD)
    dual = _sample()
    net = dual["net_input"]
    text_only = {
        **dual,
        "net_input": dict(
            src_tokens=net["src_txt_tokens"],
            src_lengths=net["src_txt_lengths"],
            prev_output_tokens=net["prev_output_tokens"],
            mode="text",
        ),
    }
    speech_only = {
        **dual,
        "net_input": {k: v for k, v in net.items() if not k.startswith("src_txt")},
    }
    _, _, log_dual = crit(student, dual)
    loss, size, log_txt = crit(student, text_only)
    assert not any(k.startswith("sph_") or k.startswith("speech") for k in log_txt)
    for key in ("txt_kd_res_enc", "txt_kd_res_dec", "txt_kd_feat", "txt_kd_rel", "text_loss"):
        assert log_txt[key] == pytest.approx(log_dual[key], rel=1e-5), key
    expected = 0.2 * log_txt["text_loss"] + 0.5 * log_txt["txt_kd"]
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    _, _, log_sph = crit(student, speech_only)
    assert not any(k.startswith("txt_") or k.startswith("text") for k in log_sph)
    for key in ("sph_kd_res_enc", "sph_kd_res_dec", "sph_kd_feat", "sph_kd_rel"):
        assert log_sph[key] == pytest.approx(log_dual[key], rel=1e-5), key
    assert log_sph["guide_loss"] == 0.0  # no text input: the reference alone


def test_ddsd_warmup_uses_ce_first(teacher, dictionary):
    sample = _sample()

    def run(num_updates, **opts):
        crit = _criterion(dictionary, None, kd_weight=0.0, **opts)
        teacher.set_num_updates(num_updates)
        try:
            return crit(teacher, sample)[2]
        finally:
            teacher.set_num_updates(0)

    ce = run(0, guide_loss="ce", target_loss="ce")
    ddsd_log = run(0)
    assert run(3, ddsd_warmup_updates=5)["speech_loss"] == pytest.approx(ce["speech_loss"])
    assert run(3, ddsd_warmup_updates=5)["text_loss"] == pytest.approx(ce["text_loss"])
    assert run(5, ddsd_warmup_updates=5)["text_loss"] == pytest.approx(ddsd_log["text_loss"])
    assert abs(ce["text_loss"] - ddsd_log["text_loss"]) > 1e-2
