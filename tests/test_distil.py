"""DistilWhisper objective: gate budget + KD terms (online and cached teacher) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from speechkd.errors import ConfigError
from speechkd.losses import js_divergence
from speechkd.whisper import add_clsr, clsr_gate_budget_loss, encoder_token_mask
from speechkd.whisper.data import DurationBatchSampler
from speechkd.whisper.distil import (
    DistilOptions,
    OnlineTeacher,
    check_teacher_compatible,
    distil_extra_loss,
    kd_position_mask,
)
from speechkd.whisper.language_modules import available_languages
from speechkd.whisper.teacher_cache import TeacherCache, TeacherCacheWriter
from speechkd.whisper.trainer import export_model, model_inputs
from tests.test_whisper_trainer import cuts, dataset_for, tiny_model, tokenizer  # noqa: F401


def _batch(model, tok, cut_set: CutSet) -> dict:
    return dataset_for(model, tok)[cut_set.subset(cut_ids=["en-0", "en-1", "en-2"])]


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="divergence"):
        DistilOptions(divergence="mse")
    with pytest.raises(ConfigError, match="temperature"):
        DistilOptions(temperature=0)
    with pytest.raises(ConfigError, match="gate budget"):
        DistilOptions(gate_budget=1.5)
    with pytest.raises(ConfigError, match="kd_weight"):
        DistilOptions(kd_weight=-1)


def test_incompatible_teacher_is_rejected(tokenizer) -> None:  # noqa: F811
    from speechkd.whisper.params import build_whisper, small_whisper_config

    student = tiny_model(tokenizer)
    other = build_whisper(small_whisper_config(vocab_size=128), device="cpu")
    with pytest.raises(ConfigError, match="vocab_size"):
        check_teacher_compatible(other, student)


def test_online_kd_is_js_on_label_positions(tokenizer, cuts) -> None:  # noqa: F811
    student, teacher = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)
    batch = _batch(student, tokenizer, cuts)
    outputs = student(**model_inputs(batch))
    loss_fn = distil_extra_loss(DistilOptions(kd_weight=2.0), teacher=OnlineTeacher(teacher))
    parts = loss_fn(student, batch, outputs)
    assert set(parts) == {"kd"}  # no CLSR: no gate term
    with torch.no_grad():
        t_logits = teacher(**model_inputs(batch)).logits
    expected = 2.0 * js_divergence(t_logits, outputs.logits, kd_position_mask(batch))
    torch.testing.assert_close(parts["kd"], expected)
    assert parts["kd"].requires_grad and not any(p.requires_grad for p in teacher.parameters())
    # the prompt targets and the padding are not distilled
    mask = kd_position_mask(batch)
    assert not mask[:, :3].any() and int(mask.sum()) == int((batch["labels"] != -100).sum())
    # a teacher identical to the student gives no KD loss
    same = distil_extra_loss(DistilOptions(), teacher=OnlineTeacher(tiny_model(tokenizer, 0)))
    assert float(same(student, batch, outputs)["kd"].detach()) == pytest.approx(0.0, abs=1e-6)


def test_cached_full_distribution_equals_online(tokenizer, cuts, tmp_path: Path) -> None:  # noqa: F811
    student, teacher = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)
    batch = _batch(student, tokenizer, cuts)
    with torch.no_grad():
        t_logits = teacher(**model_inputs(batch)).logits
    vocab = student.config.vocab_size
    with TeacherCacheWriter(tmp_path / "cache", k=vocab, vocab_size=vocab) as writer:
        writer.add_batch(batch["cut_ids"], t_logits, batch["decoder_attention_mask"].bool())
    outputs = student(**model_inputs(batch))
    for divergence in ("js", "kl"):
        options = DistilOptions(divergence=divergence, temperature=3.0)
        online = distil_extra_loss(options, teacher=OnlineTeacher(teacher))(student, batch, outputs)
        cached = distil_extra_loss(options, cache=TeacherCache(tmp_path / "cache"))(
            student, batch, outputs
        )
        torch.testing.assert_close(cached["kd"], online["kd"], rtol=1e-4, atol=1e-5)


def test_gate_budget_term_on_clsr_model(tokenizer, cuts) -> None:  # noqa: F811
    model = add_clsr(tiny_model(tokenizer), ["en", "ca"])
    model.train()
    batch = _batch(model, tokenizer, cuts)
    from speechkd.whisper import set_active_language

    set_active_language(model, "en")
    outputs = model(**model_inputs(batch))
    parts = distil_extra_loss(DistilOptions(gate_budget=0.3))(model, batch, outputs)
    assert set(parts) == {"gate"}
    enc = encoder_token_mask(batch["feature_lengths"], model.config.max_source_positions)
    expected = clsr_gate_budget_loss(model, enc, batch["decoder_attention_mask"].bool(), 0.3)
    torch.testing.assert_close(parts["gate"], expected)
    assert distil_extra_loss(DistilOptions(gate_budget=None))(model, batch, outputs) == {}


def _write_inputs(tokenizer, cut_set, tmp_path: Path) -> tuple[Path, Path, Path]:  # noqa: F811
    from speechkd.utils.atomic import save_manifest

    tok_dir = tmp_path / "lang_whisper"
    tokenizer.save_pretrained(tok_dir)
    cuts_path = tmp_path / "cuts.jsonl.gz"
    save_manifest(cut_set, cuts_path)
    student_dir = export_model(tiny_model(tokenizer, 0), tmp_path / "student", tokenizer)
    return tok_dir, cuts_path, student_dir


def test_cli_distilwhisper_online_and_config(tokenizer, cuts, tmp_path: Path) -> None:  # noqa: F811
    from speechkd.bin import whisper_train

    tok_dir, cuts_path, student_dir = _write_inputs(tokenizer, cuts, tmp_path)
    teacher_dir = export_model(tiny_model(tokenizer, 1), tmp_path / "teacher", tokenizer)
    config = tmp_path / "distil.yaml"
    config.write_text("epochs: 1\nlr: 0.001\nlabel_smoothing: 0.1\nkd_divergence: js\n")
    exp = tmp_path / "exp"
    args = ["--config", str(config), "--train-cuts", str(cuts_path), "--no-progress"]
    args += ["--init-from", str(student_dir), "--exp-dir", str(exp), "--max-duration", "3"]
    args += ["--clsr-languages", "en", "ca", "--kd-teacher", str(teacher_dir)]
    args += ["--log-interval", "1"]
    assert whisper_train.main([*args, "--method-name", "DistilWhisper"]) == 0
    assert available_languages(exp / "language_modules") == ["ca", "en"]
    assert not (exp / "model").exists()
    params = json.loads((exp / "params.json").read_text())
    meta = json.loads((exp / "results_meta.json").read_text())
    assert meta["method"] == "DistilWhisper" and meta["trainable_params"] == params["trainable"]
    per_language = (params["trainable"]) // 2
    assert params["inference"] == params["total"] + per_language
    settings = (exp / "config.yaml").read_text()
    assert "label_smoothing: 0.1" in settings and "epochs: 1" in settings
    log = (exp / "log" / "train.log").read_text()
    assert "kd=" in log and "gate=" in log


def test_cli_rejects_bad_config(tokenizer, cuts, tmp_path: Path) -> None:  # noqa: F811
    from speechkd.bin import whisper_train

    tok_dir, cuts_path, student_dir = _write_inputs(tokenizer, cuts, tmp_path)
    base = ["--train-cuts", str(cuts_path), "--init-from", str(student_dir)]
    base += ["--exp-dir", str(tmp_path / "exp")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown option 'epochz'"):
        whisper_train.main(["--config", str(bad), *base])
    bad.write_text("epochs: three\n")
    with pytest.raises(ConfigError, match="epochs='three'"):
        whisper_train.main(["--config", str(bad), *base])
    with pytest.raises(ConfigError, match="exclude each other"):
        whisper_train.main([*base, "--kd-teacher", "a", "--kd-cache", "b"])
    with pytest.raises(ConfigError, match="drop --peft lora"):
        whisper_train.main([*base, "--clsr-languages", "en", "--peft", "lora"])


def test_sampler_is_language_homogeneous_for_clsr(cuts) -> None:  # noqa: F811
    sampler = DurationBatchSampler(cuts, 10.0, language_homogeneous=True, seed=0)
    for batch in sampler:
        assert len({c.supervisions[0].language for c in batch}) == 1


def test_fetch_whisper_copies_a_model_dir(tokenizer, tmp_path: Path) -> None:  # noqa: F811
    from speechkd.bin.fetch_whisper import fetch_whisper
    from speechkd.errors import DataError
    from speechkd.whisper.decode import load_whisper_model

    source = export_model(tiny_model(tokenizer, 3), tmp_path / "source", tokenizer)
    out = fetch_whisper(str(source), tmp_path / "fetched")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    a, b = load_whisper_model(source), load_whisper_model(out)
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    with pytest.raises(DataError, match="cannot load"):
        fetch_whisper(str(tmp_path / "missing"), tmp_path / "x", tokenizer_name=str(source))


def test_cli_masks_keep_pruned_weights_zero(tokenizer, cuts, tmp_path: Path) -> None:  # noqa: F811
    """LTH-FT: fine-tuning a pruned model through whisper_train --masks keeps its zeros."""
    from speechkd.bin import whisper_train
    from speechkd.whisper.decode import load_whisper_model
    from speechkd.whisper.pruning import apply_masks, init_masks, prune_round, save_masks

    tok_dir, cuts_path, _ = _write_inputs(tokenizer, cuts, tmp_path)
    model = tiny_model(tokenizer, 0)
    masks = prune_round(model, init_masks(model), 0.5)
    apply_masks(model, masks)
    pruned_dir = export_model(model, tmp_path / "pruned", tokenizer)
    save_masks(masks, tmp_path / "masks.safetensors")
    exp = tmp_path / "exp"
    args = ["--train-cuts", str(cuts_path), "--init-from", str(pruned_dir), "--no-progress"]
    args += ["--exp-dir", str(exp), "--epochs", "1", "--lr", "1e-2", "--max-duration", "3"]
    args += ["--masks", str(tmp_path / "masks.safetensors"), "--weight-decay", "0.1"]
    assert whisper_train.main([*args, "--peft", "full"]) == 0
    trained = dict(load_whisper_model(exp / "model").named_parameters())
    pruned = sum(int((~m).sum()) for m in masks.values())
    changed = 0
    for name, mask in masks.items():
        assert not trained[name][~mask].any(), name
        changed += int((trained[name][mask] != dict(model.named_parameters())[name][mask]).sum())
    assert changed > 0  # the surviving weights did train
    params = json.loads((exp / "params.json").read_text())
    assert params["inference"] == params["total"] - pruned
    with pytest.raises(ConfigError, match="refill pruned"):
        whisper_train.main([*args, "--peft", "lora"])


def test_cli_two_processes_with_torchrun(tokenizer, cuts, tmp_path: Path) -> None:  # noqa: F811
    """whisper_train under torchrun: 2 gloo processes, rank 0 alone writes the shared files."""
    import os
    import subprocess
    import sys

    tok_dir, cuts_path, student_dir = _write_inputs(tokenizer, cuts, tmp_path)
    exp = tmp_path / "exp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-port", "29517", "-m", "speechkd.bin.whisper_train"]
    cmd += ["--train-cuts", str(cuts_path), "--init-from", str(student_dir), "--no-progress"]
    cmd += ["--exp-dir", str(exp), "--epochs", "1", "--lr", "1e-3", "--max-duration", "3"]
    cmd += ["--device", "cpu", "--save-every-steps", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (exp / "model" / "model.safetensors").is_file()
    assert (exp / "log" / "train.log").is_file() and (exp / "log" / "train.rank1.log").is_file()
    assert "world_size: 2" in (exp / "config.yaml").read_text()
    assert "Training on cpu" in (exp / "log" / "train.log").read_text()


class _Untrusted:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""


def test_untrusted_trainer_state_is_refused(tmp_path: Path) -> None:
    from speechkd.errors import DataError
    from speechkd.whisper.trainer import load_trainer_state

    path = tmp_path / "trainer_state.pt"
    torch.save({"epoch": 1, "payload": _Untrusted()}, path)
    with pytest.raises(DataError, match="trainer_state.pt: not a loadable trainer state"):
        load_trainer_state(path)
    torch.save({"epoch": 1, "step": torch.tensor(3)}, path)
    assert load_trainer_state(path)["epoch"] == 1


def test_s2lora_regulariser_weights_from_the_command_line(tokenizer) -> None:  # noqa: F811
    from speechkd.bin import whisper_train
    from speechkd.whisper import apply_peft
    from speechkd.whisper.peft_methods import peft_regularization

    model = apply_peft(tiny_model(tokenizer), "s2lora")
    base = ["--train-cuts", "x", "--init-from", "y", "--exp-dir", "z", "--peft", "s2lora"]
    default = whisper_train.build_extra_loss(whisper_train.parse_args(base), model)
    expected = peft_regularization(model, alpha1=0.05, alpha2=0.1)
    assert float(expected) > 0  # s = 0 at init: the L2 on the shared pairs only
    torch.testing.assert_close(default(model, {}, None)["s2lora_reg"], expected)
    doubled = whisper_train.parse_args([*base, "--s2lora-alpha2", "0.2"])
    torch.testing.assert_close(
        whisper_train.build_extra_loss(doubled, model)(model, {}, None)["s2lora_reg"], 2 * expected
    )
    with pytest.raises(ConfigError, match="--s2lora-alpha1 must be >= 0"):
        whisper_train.check_method_args(whisper_train.parse_args([*base, "--s2lora-alpha1", "-1"]))
