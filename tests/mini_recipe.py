"""The tiny mini-recipe run shared by the end-to-end tests (see the ``mini_run`` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "mini" / "run.sh"
TINY_WHISPER = {
    "model_type": "whisper",
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "max_source_positions": 1500,
    "max_target_positions": 448,
}


def tiny_base_model(out: Path) -> Path:
    """A random tiny Whisper (30 s window, real tokenizer) standing in for whisper-base."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from speechkd.data.whisper_tokenizer import build_whisper_tokenizer

    if not (out / "model.safetensors").is_file():
        build_whisper_tokenizer(out)
        torch.manual_seed(0)
        config = WhisperConfig(**{k: v for k, v in TINY_WHISPER.items() if k != "model_type"})
        WhisperForConditionalGeneration(config).save_pretrained(out)
    return out


def _tiny_foundation(tmp: Path) -> list[str]:
    """Options making the mini Whisper foundation models tiny (the teacher: one epoch)."""
    base = tiny_base_model(tmp / "tiny_base")
    return ["--base-model", str(base), "--teacher-epochs", "1", "--teacher-per-language", "20"]


def run_mini(tmp: Path, *options: str) -> subprocess.CompletedProcess:
    cmd = [
        "bash",
        str(RUN),
        "--scale",
        "tiny",
        "--data",
        str(tmp / "data"),
        "--expdir",
        str(tmp / "exp"),
        "--bpe-vocab-size",
        "100",
        "--probe-epochs",
        "1",
        "--den-order",
        "2",
        "--results",
        str(tmp / "RESULTS.md"),
        *_tiny_foundation(tmp),
        "--methods",
        "",
        *options,
    ]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def run_method_recipe(
    method: str, tmp: Path, out: Path, *options: str
) -> subprocess.CompletedProcess:
    """Run egs/mini/<method>/run.sh from stage 1 on the tiny mini run in ``tmp`` (data and
    foundation models), writing into ``out`` (data, exp, RESULTS.md)."""
    cmd = ["bash", str(ROOT / "egs" / "mini" / method / "run.sh"), "--stage", "1"]
    cmd += ["--mini-data", str(tmp / "data"), "--mini-exp", str(tmp / "exp")]
    cmd += ["--data", str(out / "data"), "--expdir", str(out / "exp")]
    cmd += ["--results", str(out / "RESULTS.md"), *options]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def assert_training_lowered_loss(run_dir: Path) -> None:
    """The Whisper trainer's logged training loss fell from the first logged step to the last
    (``train_curve`` of ``train-summary.json``; recipes in tests log every step): a collapsed or
    diverged run fails."""
    summary = json.loads((run_dir / "train-summary.json").read_text())
    curve = summary["train_curve"]
    assert len(curve) >= 2, f"{run_dir}: fewer than two logged steps ({curve})"
    (first_step, first), (last_step, last) = curve[0], curve[-1]
    change = f"{first:.3f} at step {first_step} -> {last:.3f} at step {last_step}"
    assert last < first, f"{run_dir}: training loss did not fall: {change}"
