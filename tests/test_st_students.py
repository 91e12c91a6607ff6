"""Joint ST teacher / layer-pruned students (speechkd.fairseq_plugin.models.st_students)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.models import st_students as st
from speechkd.fairseq_plugin.models.st_param_table import count_groups

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 40
PAPER_MAPS = {
    6: [0, 2, 4, 7, 9, 11],
    8: [0, 2, 3, 5, 6, 8, 9, 11],
    2: [0, 11],
}


def _tiny(depths: tuple[int, int, int], student: bool = False, **overrides):
    """A tiny model (dimension 32) of the given speech-text-decoder depths, random weights."""
    dims = dict(
        w2v_embed_dim=32,
        w2v_ffn_embed_dim=64,
        w2v_attention_heads=2,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=2,
        decoder_embed_dim=32,
        decoder_ffn_embed_dim=64,
        decoder_attention_heads=2,
        encoder_layers=depths[1],
        decoder_layers=depths[2],
    )
    if student:
        dims.update({"student_speech_layers": depths[0], "student_init": "none", **overrides})
        return st.build_from_config("tiny_student", VOCAB, **dims)
    dims.update({"w2v_encoder_layers": depths[0], **overrides})
    return st.build_from_config("tiny_teacher", VOCAB, **dims)


def _check_copied(student, teacher, maps) -> dict[str, int]:
    """Every student tensor equals its teacher counterpart; returns tensors checked per part."""
    t_state = teacher.state_dict()
    checked = {"speech": 0, "text": 0, "decoder": 0, None: 0}
    for key, value in student.state_dict().items():
        t_key, part = st._teacher_key(key, maps)
        assert torch.equal(value, t_state[t_key]), (key, t_key)
        checked[part] += 1
    return checked


def _batch(vocab: int = VOCAB, bsz: int = 2):
    gen = torch.Generator().manual_seed(0)
    wav = torch.randn(bsz, 16000, generator=gen)
    wav_len = torch.tensor([16000, 11000])
    wav[1, 11000:] = 0
    txt = torch.randint(4, vocab, (bsz, 9), generator=gen)
    txt[:, -1] = 2  # eos
    txt_len = torch.full((bsz,), 9)
    prev = torch.randint(4, vocab, (bsz, 6), generator=gen)
    prev[:, 0] = 2
    return wav, wav_len, txt, txt_len, prev


def test_joint_st_modules_are_imported_once_under_both_names():
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
    from fairseq.tasks import TASK_REGISTRY

    name = "speech_text_joint_to_text.models.s2t_dualinputxmtransformer"
    assert sys.modules["examples." + name] is sys.modules["fairseq.examples." + name]
    # importing it again by the other name registers nothing twice (would raise)
    import fairseq.examples.speech_text_joint_to_text.tasks.speech_text_joint  # noqa: F401

    assert (
        st.import_joint_st("tasks.speech_text_joint")
        is sys.modules["examples.speech_text_joint_to_text.tasks.speech_text_joint"]
    )
    assert MODEL_REGISTRY["speechkd_dual_input_xm"] is st.DualInputXMModel
    assert ARCH_MODEL_REGISTRY["speechkd_dual_input_xm_student"] is st.DualInputXMStudent
    assert "speech_text_joint_to_text" in TASK_REGISTRY
    assert "guided_label_smoothed_cross_entropy_with_accuracy" in CRITERION_REGISTRY


@pytest.mark.parametrize("depths", [(6, 6, 6), (8, 8, 2)])
def test_student_from_12_layer_teacher_copies_paper_layers_exactly(depths):
    teacher = _tiny((12, 12, 12))
    student = _tiny(depths, student=True)
    assert st.layer_depths(student) == dict(zip(st.PARTS, depths, strict=True))
    # random students differ from the teacher before the copy
    key = "encoder.spch_encoder.w2v_encoder.w2v_model.encoder.layers.1.fc1.weight"
    teacher_key = key.replace("layers.1.", f"layers.{PAPER_MAPS[depths[0]][1]}.")
    assert not torch.equal(student.state_dict()[key], teacher.state_dict()[teacher_key])

    maps = st.init_student_from_teacher(student, teacher)

    assert maps == {p: PAPER_MAPS[n] for p, n in zip(st.PARTS, depths, strict=True)}
    checked = _check_copied(student, teacher, maps)
    per_layer = {p: checked[p] / n for p, n in zip(st.PARTS, depths, strict=True)}
    assert per_layer["speech"] >= 16 and per_layer["text"] >= 16 and per_layer["decoder"] >= 26
    assert checked[None] > 20  # front end, adaptor, embeddings, norms: copied as is
    assert torch.equal(student.state_dict()[key], teacher.state_dict()[teacher_key])


def test_explicit_layer_map_and_bad_maps():
    teacher, student = _tiny((4, 4, 4)), _tiny((2, 2, 2), student=True)
    maps = st.init_student_from_teacher(student, teacher, {"decoder": [1, 2]})
    assert maps == {"speech": [0, 3], "text": [0, 3], "decoder": [1, 2]}
    _check_copied(student, teacher, maps)
    with pytest.raises(ConfigError, match="out of range"):
        st.init_student_from_teacher(student, teacher, {"text": [0, 4]})
    with pytest.raises(ConfigError, match="2 student"):
        st.init_student_from_teacher(student, teacher, {"speech": [0]})
    wide = _tiny((2, 2, 2), student=True, encoder_ffn_embed_dim=48)
    with pytest.raises(ConfigError, match="dimensions"):
        st.init_student_from_teacher(wide, teacher)


def test_tiny_teacher_and_student_forward_shapes():
    teacher = st.build_from_config("tiny_teacher", VOCAB).eval()
    student = st.build_from_config("tiny_student", VOCAB, source=teacher).eval()
    assert st.layer_depths(teacher) == {"speech": 4, "text": 4, "decoder": 4}
    assert st.layer_depths(student) == {"speech": 2, "text": 2, "decoder": 2}
    assert student.student_layer_map == {"speech": [0, 3], "text": [0, 3], "decoder": [0, 3]}
    wav, wav_len, txt, txt_len, prev = _batch()
    for model in (teacher, student):
        # speech + text (training batch of speech_text_joint_to_text): both halves stacked
        logits, extra = model(wav, wav_len, prev, src_txt_tokens=txt, src_txt_lengths=txt_len)
        assert logits.shape == (4, 6, VOCAB) and "attn_cost" in extra
        # text-only batch (parallel text data)
        logits_txt, _ = model(txt, txt_len, prev, mode="text")
        assert logits_txt.shape == (2, 6, VOCAB)
        assert torch.allclose(logits_txt, logits[2:], atol=1e-5)
        # speech only (inference); 16000 samples -> 49 wav2vec2 frames -> 7 after the adaptor
        enc = model.encoder(wav, wav_len)
        assert enc["encoder_out"][0].shape == (7, 2, 64)
        assert enc["encoder_padding_mask"][0].sum(1).tolist() == [0, 2]
        logits_sp, _ = model(wav, wav_len, prev)
        assert torch.allclose(logits_sp, logits[:2], atol=1e-5)
    # an identity-map student (same depths) is the teacher
    clone = st.build_from_config(
        "tiny_student",
        VOCAB,
        source=teacher,
        student_speech_layers=4,
        encoder_layers=4,
        decoder_layers=4,
    ).eval()
    assert torch.equal(clone(wav, wav_len, prev)[0], teacher(wav, wav_len, prev)[0])


def test_lna_finetuning_trains_layer_norm_attention_and_adaptor_only():
    model = st.build_from_config(
        "tiny_teacher",
        VOCAB,
        finetune_w2v_params="layer_norm,self_attn,adaptor",
        finetune_mbart_encoder_params="layer_norm,self_attn",
        finetune_mbart_decoder_params="layer_norm,self_attn,encoder_attn",
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert all(any(s in n for s in ("layer_norm", "attn", "adaptor")) for n in trainable)
    assert "encoder.spch_encoder.adaptor.layers.0.weight" in trainable
    assert "encoder.spch_encoder.mbart_encoder_layers.0.self_attn.k_proj.weight" in trainable
    assert "decoder.spch_decoder.layers.0.encoder_attn.q_proj.weight" in trainable
    assert "encoder.spch_encoder.w2v_encoder.w2v_model.encoder.layers.0.fc1.weight" in frozen
    assert "encoder.text_encoder.embed_tokens.weight" in frozen
    assert "decoder.spch_decoder.embed_tokens.weight" in frozen
    everything = st.build_from_config("tiny_teacher", VOCAB)
    assert all(p.requires_grad for p in everything.parameters())


def test_meta_build_counts_like_cpu_and_paper_layer_counts():
    cpu = count_groups(st.build_from_config("tiny_teacher", VOCAB))
    meta_model = st.build_from_config("tiny_teacher", VOCAB, device="meta")
    on_cpu = [n for n, p in meta_model.named_parameters() if not p.is_meta]
    assert on_cpu == ["encoder.spch_encoder.w2v_encoder.w2v_model.mask_emb"]  # torch.FloatTensor
    assert count_groups(meta_model) == cpu
    # real sizes (small vocabulary: only the embeddings depend on it): Table 1's non-embedded
    paper = {"teacher_12_12_12": 522.76, "student_6_6_6": 270.82, "student_8_8_2": 254.02}
    for name, non_embedded in paper.items():
        extra = {"student_init": "none"} if name.startswith("student") else {}
        counts = count_groups(st.build_from_config(name, 100, device="meta", **extra))
        assert abs(counts["non_embedded"] / 1e6 - non_embedded) < 0.015, name


def test_param_table_cli_reproduces_table1_with_implied_vocabulary(tmp_path):
    from speechkd.bin import st_param_table

    out = tmp_path / "params.json"
    st_param_table.main(["--vocab-size", "38253", "--json", "--output", str(out)])
    report = yaml.safe_load(out.read_text())
    paper = {"teacher_12_12_12": 616.33, "student_6_6_6": 364.4, "student_8_8_2": 347.6}
    for name, total in paper.items():
        entry = report["models"][name]
        assert abs(entry["counts"]["total"] / 1e6 - total) < 0.015, name
        assert abs(entry["counts"]["embedded"] / 1e6 - 93.58) < 0.005
        assert entry["token_tables"] == 2
    assert round(report["notes"]["implied_vocabulary"]) == 38253
    assert abs(report["notes"]["teacher_total_mbart50"] / 1e6 - 1050.1) < 0.005
    assert report["models"]["student_6_6_6"]["total_pct"] == pytest.approx(59.12, abs=0.01)


def test_arch_files_render_fairseq_flags():
    flags = st.fairseq_train_args("teacher_12_12_12", w2v_path="/x/w2v.pt")
    assert flags[:2] == ["--arch", "speechkd_dual_input_xm"]
    assert "--normalize" in flags and "--stack-w2v-mbart-encoder" not in flags
    assert flags[flags.index("--drop-w2v-layers") + 1] == "12"
    assert flags[flags.index("--w2v-path") + 1] == "/x/w2v.pt"
    assert flags[flags.index("--activation-fn") + 1] == "gelu"
    with pytest.raises(ConfigError, match="unknown model option 'nope'"):
        st.fairseq_train_args("tiny_teacher", nope=1)
    with pytest.raises(ConfigError, match="no architecture file"):
        st.load_arch_config("missing_arch")


def _data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    symbols = "".join(f"tok{i} 1\n" for i in range(VOCAB - 4))
    (data / "dict.txt").write_text(symbols)
    (data / "src_dict.txt").write_text(symbols)
    (data / "config.yaml").write_text(
        "vocab_filename: dict.txt\nsrc_vocab_filename: src_dict.txt\nuse_audio_input: true\n"
    )
    return data


def _fairseq_args(data, arch_flags):
    from fairseq import options

    argv = [
        str(data),
        "--task",
        "speech_text_joint_to_text",
        "--config-yaml",
        "config.yaml",
        "--criterion",
        "guided_label_smoothed_cross_entropy_with_accuracy",
        "--label-smoothing",
        "0.1",
        "--guide-alpha",
        "0.8",
        "--attentive-cost-regularization",
        "0.02",
        *arch_flags,
    ]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def _save(path, args, model):
    state = {
        "args": args,
        "model": model.state_dict(),
        "optimizer_history": [
            {
                "criterion_name": "x",
                "optimizer_name": "adam",
                "lr_scheduler_state": {},
                "num_updates": 0,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 1}},
    }
    torch.save(state, path)


def test_fairseq_task_criterion_and_teacher_checkpoint_student(tmp_path):
    from fairseq import tasks

    from speechkd.fairseq_plugin.checkpoints import load_fairseq_model

    data = _data_dir(tmp_path)
    args = _fairseq_args(data, st.fairseq_train_args("tiny_teacher"))
    task = tasks.setup_task(args)
    teacher = task.build_model(args)
    criterion = task.build_criterion(args)
    assert isinstance(teacher, st.DualInputXMModel)
    wav, wav_len, txt, txt_len, prev = _batch()
    target = torch.cat([prev[:, 1:], torch.full((2, 1), 2)], dim=1)
    sample = {
        "net_input": {
            "src_tokens": wav,
            "src_lengths": wav_len,
            "prev_output_tokens": prev,
            "src_txt_tokens": txt,
            "src_txt_lengths": txt_len,
            "mode": "sup_speech",
        },
        "target": target,
        "ntokens": target.numel(),
        "id": torch.arange(2),
        "nsentences": 2,
    }
    loss, _, log = criterion(teacher, sample)
    loss.backward()
    assert torch.isfinite(loss) and log["speech_attn_loss"] > 0 and log["speech_loss"] > 0
    assert teacher.encoder.spch_encoder.adaptor.layers[0].weight.grad is not None
    text_sample = {
        "net_input": {
            "src_tokens": txt,
            "src_lengths": txt_len,
            "prev_output_tokens": prev,
            "mode": "text",
        },
        "target": target,
        "ntokens": target.numel(),
        "id": torch.arange(2),
        "nsentences": 2,
    }
    assert torch.isfinite(criterion(teacher, text_sample)[0])

    ckpt = tmp_path / "teacher.pt"
    _save(ckpt, args, teacher)
    flags = st.fairseq_train_args(
        "tiny_student", student_init="teacher", student_init_checkpoint=str(ckpt)
    )
    with pytest.raises(ConfigError, match="trust_pickle"):
        task.build_model(_fairseq_args(data, flags))
    flags = st.fairseq_train_args(
        "tiny_student",
        student_init="teacher",
        student_init_checkpoint=str(ckpt),
        student_init_trust_pickle=True,
    )
    s_args = _fairseq_args(data, flags)
    student = task.build_model(s_args)
    maps = {"speech": [0, 3], "text": [0, 3], "decoder": [0, 3]}
    assert student.student_layer_map == maps
    assert st.student_layer_map(s_args) == maps
    _check_copied(student, teacher, maps)

    # the student's own checkpoint rebuilds without its teacher and keeps the map
    s_ckpt = tmp_path / "student.pt"
    _save(s_ckpt, s_args, student)
    ckpt.unlink()
    with st.trusted_pickle_loads(True):  # the config in the file is a pickled Namespace
        reloaded, cfg, _ = load_fairseq_model(s_ckpt, trust_pickle=True)
    assert reloaded.student_layer_map == maps and st.student_layer_map(cfg.model) == maps
    for key, value in student.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key


def test_pretrained_paths_need_trust_and_random_student_refuses_paths(tmp_path):
    fake = tmp_path / "w2v.pt"
    fake.write_bytes(b"not read")
    with pytest.raises(ConfigError, match="trust_pickle"):
        st.build_from_config("tiny_teacher", VOCAB, w2v_path=str(fake))
    with pytest.raises(ConfigError, match="random student"):
        st.build_from_config("tiny_student", VOCAB, student_init="none", w2v_path=str(fake))
    with pytest.raises(ConfigError, match="needs w2v_path"):
        st.build_from_config("tiny_student", VOCAB, student_init="pretrained")


def _save_pretrained(pre, w2v_path, mbart_path) -> None:
    """Stand-ins of the pre-trained checkpoints: the wav2vec2 and the mBART parts of ``pre``."""
    from omegaconf import OmegaConf

    history = {
        "optimizer_history": [
            {
                "criterion_name": "x",
                "optimizer_name": "adam",
                "lr_scheduler_state": {},
                "num_updates": 0,
            }
        ],
        "extra_state": {"train_iterator": {"epoch": 1}},
    }
    w2v = pre.encoder.spch_encoder.w2v_encoder.w2v_model
    for path in (w2v_path, mbart_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "cfg": OmegaConf.to_container(pre.speechkd_w2v_args),
            "model": w2v.state_dict(),
            **history,
        },
        w2v_path,
    )
    mbart = {f"encoder.{k}": v for k, v in pre.encoder.text_encoder.state_dict().items()}
    mbart.update({f"decoder.{k}": v for k, v in pre.decoder.text_decoder.state_dict().items()})
    torch.save({"model": mbart, **history}, mbart_path)


def test_student_from_pretrained_wav2vec2_and_mbart_checkpoints(tmp_path):
    # stand-ins of the pretrained checkpoints: a 6-layer wav2vec2 (its first 4 layers are the
    # source: drop_w2v_layers 2) and a 4+4-layer mBART
    pre = _tiny((6, 4, 4))
    w2v_path, mbart_path = tmp_path / "w2v.pt", tmp_path / "mbart.pt"
    _save_pretrained(pre, w2v_path, mbart_path)

    paths = dict(
        w2v_path=str(w2v_path),
        load_pretrained_mbart_from=str(mbart_path),
        drop_w2v_layers=2,
        student_source_encoder_layers=4,
        student_source_decoder_layers=4,
    )
    with pytest.raises(ConfigError, match="trust_pickle"):
        _tiny((2, 2, 2), student=True, student_init="pretrained", **paths)
    student = _tiny(
        (2, 2, 2), student=True, student_init="pretrained", pretrained_trust_pickle=True, **paths
    )

    assert student.student_layer_map == {"speech": [0, 3], "text": [0, 3], "decoder": [0, 3]}
    assert student.speechkd_w2v_args.model.encoder_layers == 2
    s_state, p_state = student.state_dict(), pre.state_dict()
    copied = 0
    for key, value in s_state.items():
        if ".adaptor." in key:  # new in the source model too: random
            continue
        p_key, _ = st._teacher_key(key, student.student_layer_map)
        assert torch.equal(value, p_state[p_key]), key
        copied += 1
    assert copied == len(s_state) - 6


# a student tensor of layer 1 of each part and, with the tiny student's map {0, 3}, its source
SOURCE_LAYERS = {
    "encoder.spch_encoder.w2v_encoder.w2v_model.encoder.layers.{}.fc1.weight": 3,
    "encoder.text_encoder.layers.{}.self_attn.k_proj.weight": 3,
    "decoder.text_decoder.layers.{}.fc2.weight": 3,
}


def _student_sources(root):
    """The fairseq task of a tiny data dir, the tiny pre-trained stand-in (wav2vec 2.0 + mBART)
    and the trained tiny teacher, saved where the recipe's stages keep them."""
    from fairseq import tasks

    data = _data_dir(root)
    args = _fairseq_args(data, st.fairseq_train_args("tiny_teacher"))
    task = tasks.setup_task(args)
    torch.manual_seed(1)
    pre = task.build_model(args)
    paths = {
        "w2v": root / "pretrain" / "w2v2" / "checkpoint_last.pt",
        "mbart": root / "pretrain" / "mbart" / "checkpoint_last.pt",
        "teacher": root / "teacher" / "checkpoint_best.pt",
    }
    _save_pretrained(pre, paths["w2v"], paths["mbart"])
    torch.manual_seed(2)
    teacher = task.build_model(args)
    paths["teacher"].parent.mkdir(parents=True)
    _save(paths["teacher"], args, teacher)
    return data, task, pre, teacher, paths


def _assert_copied_from(student, source, other) -> None:
    """Layer 1 of each part of ``student`` is layer 3 of ``source`` (and not of ``other``)."""
    s_state, src_state, other_state = student.state_dict(), source.state_dict(), other.state_dict()
    for pattern, layer in SOURCE_LAYERS.items():
        value, key = s_state[pattern.format(1)], pattern.format(layer)
        assert torch.equal(value, src_state[key]), key
        assert not torch.equal(value, other_state[key]), key
    key = "decoder.text_decoder.embed_tokens.weight"
    assert torch.equal(s_state[key], src_state[key])


def test_students_start_from_pretrained_by_default_and_from_the_teacher_as_option(tmp_path):
    """student_init_overrides (the recipes' student build): layers pruned from the pre-trained
    wav2vec 2.0 + mBART by default, from the fine-tuned teacher with "finetuned"."""
    data, task, pre, teacher, paths = _student_sources(tmp_path)
    sources = {k: str(v) for k, v in paths.items()}

    default = st.student_init_overrides(**sources, trust=True)
    assert default["student_init"] == "pretrained" == st.DEFAULT_STUDENT_INIT
    assert default["w2v_path"] == sources["w2v"]
    flags = st.fairseq_train_args("tiny_student", **default)
    student = task.build_model(_fairseq_args(data, flags))
    assert student.student_layer_map == {"speech": [0, 3], "text": [0, 3], "decoder": [0, 3]}
    _assert_copied_from(student, pre, teacher)

    for init in ("finetuned", "teacher"):
        overrides = st.student_init_overrides(init, **sources, trust=True)
        assert overrides["student_init"] == "teacher" and overrides["w2v_path"] is None
        flags = st.fairseq_train_args("tiny_student", **overrides)
        student = task.build_model(_fairseq_args(data, flags))
        _assert_copied_from(student, teacher, pre)

    with pytest.raises(ConfigError, match="expected one of pretrained, finetuned, teacher"):
        st.student_init_overrides("random", **sources)
    with pytest.raises(ConfigError, match="fine-tuned teacher checkpoint"):
        st.student_init_overrides("finetuned", w2v=sources["w2v"], mbart=sources["mbart"])
    with pytest.raises(ConfigError, match="wav2vec 2.0 and mBART"):
        st.student_init_overrides(teacher=sources["teacher"])


def _recipe_student_flags(method_exp, init: str | None) -> list[str]:
    """The architecture flags local/recipes/st_kd.sh renders for a tiny KD student (its
    $student_init default when ``init`` is None)."""
    script = """
set -euo pipefail
. local/stage_lib.sh
stage=20 stop_stage=0 train_cuts=none test_sets=test=none tgt_lang=de method_exp=$1
student_arch=tiny_student
[ -z "$2" ] || student_init=$2
. local/recipes/st_kd.sh
stkd_render "s|$student_arch|$(stkd_init_opts "$student_init")|kd_res|$stkd_kd_opts"
printf '%s\\n' "${stkd_flags[s]}"
"""
    env = dict(os.environ, SPEECHKD_ROOT=str(ROOT))
    proc = subprocess.run(
        ["bash", "-c", script, "render", str(method_exp), init or ""],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    flags = shlex.split(proc.stdout.strip().splitlines()[-1])
    return flags[: flags.index("--criterion")]  # the scheme's flags follow


def test_recipe_builds_students_from_pretrained_by_default(tmp_path):
    """The shared ST KD stages prune the KD students from the pre-trained wav2vec 2.0 + mBART of
    stage 11 by default and from the teacher B of stage 12 with student_init=finetuned."""
    data, task, pre, teacher, paths = _student_sources(tmp_path)

    flags = _recipe_student_flags(tmp_path, None)
    assert flags[flags.index("--student-init") + 1] == "pretrained"
    assert flags[flags.index("--w2v-path") + 1] == str(paths["w2v"])
    assert flags[flags.index("--load-pretrained-mbart-from") + 1] == str(paths["mbart"])
    _assert_copied_from(task.build_model(_fairseq_args(data, flags)), pre, teacher)

    flags = _recipe_student_flags(tmp_path, "finetuned")
    assert flags[flags.index("--student-init") + 1] == "teacher"
    assert flags[flags.index("--student-init-checkpoint") + 1] == str(paths["teacher"])
    assert "--w2v-path" not in flags
    _assert_copied_from(task.build_model(_fairseq_args(data, flags)), teacher, pre)
