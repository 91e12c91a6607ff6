"""DistillW2V2 in fairseq: frozen teacher adapter, student initialisation, distillation criterion.

Tiny models: a fairseq ``Wav2VecCtc`` teacher (4 blocks, width 32, a fairseq dictionary of 4
phones: 8 outputs) and ``speechkd_w2v2_student`` students (2 blocks, width 16).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from fairseq.dataclass.configs import FairseqConfig
from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc, Wav2VecEncoder
from fairseq.tasks.audio_finetuning import AudioFinetuningConfig
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig, AudioPretrainingTask
from omegaconf import OmegaConf, open_dict

import speechkd.fairseq_plugin  # noqa: F401  (registers the model and the criterion)
from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.criterions.w2v2_distill import (
    W2v2DistillConfig,
    W2v2DistillCriterion,
)
from speechkd.fairseq_plugin.models.w2v2_student import W2V2Student, W2V2StudentConfig
from speechkd.fairseq_plugin.student_init import (
    init_from_checkpoint,
    init_from_student,
    init_from_teacher,
)
from speechkd.fairseq_plugin.teacher import FrozenTeacher, load_teacher
from speechkd.mmi import Fsa, compose_lm_topology, ctc_topo

REPO = Path(__file__).resolve().parents[1]
V = 8  # fairseq dictionary: <s> (blank) <pad> </s> <unk> + 4 phones
PHONES = 4
CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"  # wav2vec2's strides, width 32
OPT_HISTORY = [{"criterion_name": "x", "optimizer_name": "y", "lr_scheduler_state": {}}]


def wav2vec_ctc(data: Path, layer_norm_first=False, extractor="layer_norm", dropout=0.0):
    (data / "dict.ltr.txt").write_text("".join(f"p{i} 1\n" for i in range(PHONES)))
    mcfg = Wav2Vec2Config(
        encoder_layers=4,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=2,
        conv_feature_layers=CONV,
        conv_pos=8,
        conv_pos_groups=4,
        final_dim=16,
        latent_vars=8,
        latent_groups=2,
        layer_norm_first=layer_norm_first,
        extractor_mode=extractor,
    )
    model_args = {**OmegaConf.to_container(OmegaConf.structured(mcfg)), "_name": "wav2vec2"}
    w2v_args = OmegaConf.create(
        {
            "model": model_args,
            "task": {"_name": "audio_pretraining", "data": str(data), "normalize": False},
        }
    )
    cfg = Wav2Vec2CtcConfig(
        w2v_path="unused",
        w2v_args=w2v_args,
        data=str(data),
        normalize=False,
        final_dropout=0.0,
        apply_mask=False,
        dropout=dropout,
    )
    return Wav2VecCtc(cfg, Wav2VecEncoder(cfg, output_size=V)), cfg


def student(extractor="layer_norm", first=16, pred_dim=32, **kw) -> W2V2Student:
    cfg = W2V2StudentConfig(
        conv_first_channels=first,
        conv_channels=32,
        encoder_embed_dim=16,
        encoder_ffn_embed_dim=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        conv_pos=8,
        conv_pos_groups=4,
        pred_dim=pred_dim,
        extractor_mode=extractor,
        num_outputs=V,
        **kw,
    )
    return W2V2Student(cfg)


def save_checkpoint(path: Path, model, model_cfg, name: str, task_cfg, task_name: str) -> Path:
    cfg = OmegaConf.structured(FairseqConfig)
    with open_dict(cfg):
        cfg.task = OmegaConf.structured(task_cfg)
        cfg.task._name = task_name
        cfg.model = OmegaConf.structured(model_cfg)
        cfg.model._name = name
    state = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "optimizer_history": OPT_HISTORY,
        "extra_state": {},
    }
    torch.save(state, path)
    return path


def bigram_den(num_phones: int) -> Fsa:
    arcs, scores = [], []
    for s in range(num_phones + 1):
        for p in range(1, num_phones + 1):
            arcs.append((s, p, p))
            scores.append(-math.log(num_phones + 1))
    lm = Fsa(arcs, scores, [-math.log(num_phones + 1)] * (num_phones + 1))
    return compose_lm_topology(lm, ctc_topo(num_phones))


def audio_batch(lengths=(8000, 5000)):
    """Utterance ``b`` of length ``n`` is the first ``n`` samples of fixed noise number ``n``."""
    source = torch.zeros(len(lengths), max(lengths))
    pad = torch.ones(len(lengths), max(lengths), dtype=torch.bool)
    for b, n in enumerate(lengths):
        source[b, :n] = torch.randn(n, generator=torch.Generator().manual_seed(n))
        pad[b, :n] = False
    return {"id": torch.arange(len(lengths)), "net_input": {"source": source, "padding_mask": pad}}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w2v2_distill")
    torch.manual_seed(0)
    teacher, tcfg = wav2vec_ctc(tmp)
    task_cfg = AudioFinetuningConfig(data=str(tmp), labels="ltr")
    t_path = save_checkpoint(
        tmp / "t.pt", teacher, tcfg, "wav2vec_ctc", task_cfg, "audio_finetuning"
    )
    sn = student()
    sn_path = save_checkpoint(
        tmp / "sn.pt",
        sn,
        sn.cfg,
        "speechkd_w2v2_student",
        AudioPretrainingConfig(data=str(tmp)),
        "audio_pretraining",
    )
    den = tmp / "den.fst.txt"
    den.write_text(bigram_den(PHONES).to_openfst())
    return {
        "dir": tmp,
        "teacher": t_path,
        "sn": sn_path,
        "den": den,
        "model": teacher,
        "sn_model": sn,
    }


def make_criterion(files, teacher_path=None, **kw) -> W2v2DistillCriterion:
    task = AudioPretrainingTask.setup_task(AudioPretrainingConfig(data=str(files["dir"])))
    options = {
        "teacher_path": str(teacher_path or files["teacher"]),
        "trust_teacher_checkpoint": True,
        "alpha": 0.8,
        "beta": 0.8,
        "den_graph": str(files["den"]),
        "pdf_offset": 3,
        "student_layers": 2,
        "student_embed_dim": 16,
    }
    options.update(kw)
    return W2v2DistillCriterion.build_criterion(W2v2DistillConfig(**options), task)


# ----------------------------------------------------------------------------- teacher adapter
@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_wav2vec_ctc_teacher_outputs(tmp_path, layer_norm_first):
    model, _ = wav2vec_ctc(tmp_path, layer_norm_first=layer_norm_first, dropout=0.1)
    teacher = FrozenTeacher(model)
    assert teacher.kind == "wav2vec_ctc" and teacher.num_layers == 4 and teacher.embed_dim == 32
    assert not any(p.requires_grad for p in model.parameters())
    batch = audio_batch()["net_input"]
    model.train()  # the adapter runs it in eval mode anyway
    out = teacher(batch["source"], batch["padding_mask"])
    again = teacher(batch["source"], batch["padding_mask"])
    torch.testing.assert_close(out["logits"], again["logits"])  # no dropout: eval mode
    ref = model.w2v_encoder(source=batch["source"], padding_mask=batch["padding_mask"])
    torch.testing.assert_close(out["logits"], ref["encoder_out"].transpose(0, 1))
    torch.testing.assert_close(out["padding_mask"], ref["padding_mask"])
    assert out["padding_mask"].sum(1).tolist() == [0, 9]
    assert len(out["hidden"]) == 4
    for h, lr in zip(out["hidden"], ref["layer_results"], strict=True):
        torch.testing.assert_close(h, lr[0].transpose(0, 1))  # block output, batch first
    feats = model.w2v_encoder.w2v_model.extract_features(
        batch["source"], batch["padding_mask"], mask=False
    )["x"]
    if layer_norm_first:  # the encoder's final LayerNorm is not part of block 4's output
        ln = model.w2v_encoder.w2v_model.encoder.layer_norm
        torch.testing.assert_close(ln(out["hidden"][-1]), feats)
    else:
        torch.testing.assert_close(out["hidden"][-1], feats)
    assert not out["logits"].requires_grad


def test_load_teachers_from_checkpoints(files):
    with pytest.raises(ConfigError):
        load_teacher(files["teacher"], trust_pickle=False)
    t = load_teacher(files["teacher"], trust_pickle=True)
    for a, b in zip(
        t.model.state_dict().values(), files["model"].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    sn = load_teacher(files["sn"], trust_pickle=True)
    assert sn.kind == "speechkd_student" and sn.num_layers == 2 and sn.embed_dim == 16
    batch = audio_batch()["net_input"]
    ref = files["sn_model"].eval()(batch["source"], batch["padding_mask"])
    out = sn(batch["source"], batch["padding_mask"])
    torch.testing.assert_close(out["logits"], ref["logits"])
    assert not any(p.requires_grad for p in sn.model.parameters())


# ----------------------------------------------------------------------------- student init
def test_init_student_from_teacher(tmp_path):
    teacher, _ = wav2vec_ctc(tmp_path, extractor="default")
    s = student(extractor="group_norm", first=16)  # narrower first two CNN layers (as S5)
    report = init_from_teacher(s, teacher, freeze=True)
    assert report["conv"] == ["4", "5", "6", "7"] and report["skipped_conv"] == ["1", "2", "3"]
    t_convs = teacher.w2v_encoder.w2v_model.feature_extractor.conv_layers
    for i in (3, 4, 5, 6):
        for a, b in zip(
            s.feature_extractor.conv_layers[i].parameters(), t_convs[i].parameters(), strict=True
        ):
            assert torch.equal(a, b) and not a.requires_grad
    assert not torch.equal(
        s.feature_extractor.conv_layers[2][0].weight[:, :16], t_convs[2][0].weight[:, :16]
    )
    assert torch.equal(s.output_proj.weight, teacher.w2v_encoder.proj.weight)
    assert torch.equal(s.output_proj.bias, teacher.w2v_encoder.proj.bias)
    assert not s.output_proj.weight.requires_grad
    assert s.pred_adapter.weight.requires_grad and s.layers[0].fc1.weight.requires_grad

    same = student(extractor="group_norm", first=32)
    report = init_from_teacher(same, FrozenTeacher(teacher))
    assert report["conv"] == [str(i) for i in range(1, 8)]
    assert all(p.requires_grad for p in same.parameters())
    with pytest.raises(ConfigError):  # no pred_adapter: output layer of the wrong width
        init_from_teacher(student(extractor="group_norm", pred_dim=0), teacher)


def test_init_ss_from_sn(files):
    sn = files["sn_model"]
    ss = student(chunk_size=4, history_size=8)  # same parameters, chunk-streaming attention
    keys = init_from_student(ss, sn)
    assert len(keys) == len(sn.state_dict())
    for k, v in sn.state_dict().items():
        assert torch.equal(ss.state_dict()[k], v)
    with pytest.raises(ConfigError):
        init_from_student(student(extractor="group_norm"), sn)
    partial = student(extractor="group_norm")
    copied = init_from_student(partial, sn, strict=False)
    assert "output_proj.weight" in copied and len(copied) < len(sn.state_dict())
    fresh = student(chunk_size=4)
    init_from_checkpoint(fresh, files["sn"], trust_pickle=True, mode="student")
    assert torch.equal(fresh.layers[1].fc2.weight, sn.layers[1].fc2.weight)


# ----------------------------------------------------------------------------- criterion
def test_criterion_parameters_and_switches(files):
    crit = make_criterion(files)
    assert crit.layer_map == {1: 2, 2: 4}
    names = [n for n, _ in crit.named_parameters()]
    assert names and all(n.startswith("hidden_mse.proj.") for n in names)
    assert all(k.startswith("hidden_mse.") for k in crit.state_dict())  # teacher not saved
    assert crit.teacher.kind == "wav2vec_ctc"
    m1 = make_criterion(files, alpha=1.0, beta=0.0, den_graph="")
    assert list(m1.parameters()) == [] and m1.mmi is None  # nothing unused under DDP
    explicit = make_criterion(files, layer_map="1:1,2:3")
    assert explicit.layer_map == {1: 1, 2: 3}
    with pytest.raises(ConfigError):
        make_criterion(files, layer_map="3:4")
    with pytest.raises(ConfigError):
        make_criterion(files, beta=0.5, den_graph="")
    with pytest.raises(ConfigError):
        make_criterion(files, trust_teacher_checkpoint=False)


def test_criterion_padding_frames_do_not_affect_the_loss(files):
    """The loss of a padded batch is the sum of its utterances' losses (frame sums)."""
    crit = make_criterion(files)
    model = student().eval()
    both = crit(model, audio_batch((8000, 5000)))
    alone = [crit(model, audio_batch((n,))) for n in (8000, 5000)]
    assert both[1] == alone[0][1] + alone[1][1] == 24 + 15
    torch.testing.assert_close(both[0], alone[0][0] + alone[1][0], rtol=1e-4, atol=1e-4)
    for key in ("hidn", "pred_mse", "mmi"):
        assert both[2][key] == pytest.approx(alone[0][2][key] + alone[1][2][key], rel=1e-4)
    noisy = audio_batch((8000, 5000))
    net = noisy["net_input"]
    net["source"] = net["source"].masked_fill(net["padding_mask"], 3.0)  # garbage in the padding
    torch.testing.assert_close(crit(model, noisy)[0], both[0], rtol=1e-5, atol=1e-5)


def test_criterion_loss_matches_its_parts(files):
    crit = make_criterion(files, numerator="ctc_best_path")
    model = student().eval()
    loss, n, log = crit(model, audio_batch())
    pred = 0.8 * log["mmi"] + 0.2 * log["pred_mse"]
    assert log["pred"] == pytest.approx(pred, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(0.2 * log["hidn"] + 0.8 * pred, rel=1e-5)
    assert log["sample_size"] == n == 39 and log["nsentences"] == 2
    m2 = make_criterion(files, alpha=1.0, beta=1.0)
    loss2, _, log2 = m2(model, audio_batch())
    assert "hidn" not in log2 and "pred_mse" not in log2
    assert float(loss2.detach()) == pytest.approx(log2["mmi"], rel=1e-5)


def test_fairseq_trainer_step_updates_projections_and_reduces_loss(files):
    from fairseq.trainer import Trainer

    crit = make_criterion(files, teacher_path=files["sn"])  # step 2: SN teaches SS
    assert crit.teacher.kind == "speechkd_student"
    model = student(chunk_size=4, history_size=8, dropout=0.0, attention_dropout=0.0)
    cfg = OmegaConf.structured(FairseqConfig)
    with open_dict(cfg):
        cfg.common.cpu = True
        cfg.optimization.lr = [3e-3]
        cfg.optimizer = {"_name": "adam", "lr": [3e-3], "adam_betas": "(0.9, 0.98)"}
        cfg.lr_scheduler = {"_name": "fixed", "lr": [3e-3], "warmup_updates": 0}
    trainer = Trainer(cfg, crit.task, model, crit)
    sample = audio_batch()
    w0 = {n: p.detach().clone() for n, p in crit.named_parameters()}
    losses = [trainer.train_step([sample])["loss"] for _ in range(4)]
    assert losses[-1] < losses[0]
    for n, p in crit.named_parameters():  # fairseq optimises the criterion's W_i
        assert not torch.equal(p.detach(), w0[n]), n
    assert not any(p.requires_grad for p in crit.teacher.model.parameters())


# ----------------------------------------------------------------------------- configs
EXPECTED = {"M1": (1.0, 0.0), "M2": (1.0, 1.0), "M3": (0.8, 1.0), "M4": (0.8, 0.8)}


@pytest.mark.parametrize("name", ["M1", "M2", "M3", "M4", "step2", "single_step"])
def test_distill_configs(name):
    path = REPO / "conf" / "distill_w2v2" / "distill" / f"{name}.yaml"
    assert path.read_text().startswith("# @package criterion")
    values = yaml.safe_load(path.read_text())
    assert values["_name"] == "speechkd_w2v2_distill"
    alpha, beta = EXPECTED.get(name, (0.8, 0.8))
    assert (values["alpha"], values["beta"]) == (alpha, beta)
    values.pop("_name")
    merged = OmegaConf.merge(OmegaConf.structured(W2v2DistillConfig), values)  # known fields
    assert merged.alpha == alpha
    if name in ("step2", "single_step"):  # mandatory: the recipe names the teacher
        assert values["teacher_path"] == "???"
