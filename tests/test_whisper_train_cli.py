"""whisper_train's trainer options come from TrainerConfig; step checkpoints and a SIGKILL.

A tiny random Whisper (dropout on) trains on eight one-cut batches an epoch. The kill test runs
``python -m speechkd.bin.whisper_train`` in subprocesses: one uninterrupted, one killed with
SIGKILL as soon as its first step checkpoint appears and then continued with ``--resume``; the
exported models must be equal bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from speechkd.bin import whisper_train
from speechkd.utils.options import dataclass_from_options
from speechkd.whisper.trainer import (
    STATE_FILE,
    TrainerConfig,
    WhisperTrainer,
    latest_checkpoint,
    load_trainer_state,
)

REPO = Path(__file__).resolve().parents[1]
UTTERANCES = [
    ("en-0", "en", "the cat sat", 1.2),
    ("en-1", "en", "a dog runs home", 1.6),
    ("en-2", "en", "hello world", 0.9),
    ("en-3", "en", "good morning", 1.1),
    ("ca-0", "ca", "bon dia", 1.0),
    ("ca-1", "ca", "el gat dorm", 1.4),
    ("ca-2", "ca", "bona nit", 0.8),
    ("ca-3", "ca", "una casa gran", 1.3),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Cuts, a tokenizer directory and the config.json of a tiny Whisper with dropout."""
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.utils.atomic import save_manifest
    from speechkd.whisper.decode import configure_special_tokens
    from speechkd.whisper.params import small_whisper_config

    root = tmp_path_factory.mktemp("train-cli")
    rng = np.random.default_rng(2)
    cuts = []
    for index, (utt, lang, text, duration) in enumerate(UTTERANCES):
        t = np.arange(int(duration * 16000)) / 16000
        audio = sum(np.sin(2 * np.pi * (210 + 90 * index * k) * t) for k in (1, 2)) * 0.2
        audio = (audio + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        sf.write(root / f"{utt}.wav", audio, 16000)
        rec = Recording.from_file(root / f"{utt}.wav", recording_id=utt)
        sup = SupervisionSegment(utt, utt, 0.0, rec.duration, text=text, language=lang)
        cuts.append(MonoCut(utt, 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    save_manifest(CutSet.from_cuts(cuts), root / "cuts.jsonl.gz")
    tokenizer = load_whisper_tokenizer(
        "openai/whisper-small", cache_dir=root / "tok-cache", hf_cache_dir=root / "hf"
    )
    tokenizer.save_pretrained(root / "tokenizer")
    config = small_whisper_config(
        d_model=32,
        layers=2,
        heads=2,
        ffn_dim=64,
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        max_source_positions=150,
        max_target_positions=32,
    )
    config.dropout = config.attention_dropout = config.activation_dropout = 0.1
    configure_special_tokens(config, tokenizer)
    config.to_json_file(root / "config.json")
    return {"cuts": root / "cuts.jsonl.gz", "tokenizer": root / "tokenizer", "config": root}


def train_args(inputs: dict[str, Path], exp_dir: Path, *extra: str, epochs: int = 2) -> list[str]:
    cuts = str(inputs["cuts"])
    return [
        *("--train-cuts", cuts, "--dev-cuts", cuts, "--exp-dir", str(exp_dir)),
        *("--model-config", str(inputs["config"] / "config.json")),
        *("--tokenizer", str(inputs["tokenizer"]), "--max-cuts", "1", "--max-duration", "100"),
        *(
            "--epochs",
            str(epochs),
            "--lr",
            "3e-3",
            "--warmup-steps",
            "2",
            "--label-smoothing",
            "0.1",
        ),
        *("--log-interval", "1", "--seed", "3", "--device", "cpu", "--no-progress", *extra),
    ]


def test_every_trainer_field_is_an_option_with_its_default() -> None:
    parser = whisper_train.get_parser()
    dests = {action.dest for action in parser._actions}
    names = [f.name for f in dataclasses.fields(TrainerConfig)]
    assert not set(names) - dests
    args = whisper_train.parse_args(["--train-cuts", "c", "--init-from", "m", "--exp-dir", "e"])
    assert dataclass_from_options(TrainerConfig, args) == TrainerConfig(exp_dir="e")
    args = whisper_train.parse_args(
        ["--train-cuts", "c", "--init-from", "m", "--exp-dir", "e", "--no-progress"]
        + ["--save-every-steps", "5", "--keep-step-checkpoints", "3", "--adam-betas", "0.8", "0.9"]
    )
    config = dataclass_from_options(TrainerConfig, args)
    assert (config.save_every_steps, config.keep_step_checkpoints) == (5, 3)
    assert config.adam_betas == (0.8, 0.9) and config.progress is False
    text = parser.format_help()
    assert "--keep-step-checkpoints" in text and "(default: 2)" in text
    assert "(default: 0.0001)" in text  # --lr


def test_config_file_sets_trainer_options(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("no_progress: true\nsave_every_steps: 4\nclip_grad_norm: 0.5\n")
    args = whisper_train.parse_args(
        ["--train-cuts", "c", "--init-from", "m", "--exp-dir", "e", "--config", str(conf)]
    )
    config = dataclass_from_options(TrainerConfig, args)
    assert (config.progress, config.save_every_steps, config.clip_grad_norm) == (False, 4, 0.5)


def test_save_every_steps_writes_step_checkpoints(inputs, tmp_path: Path, monkeypatch) -> None:
    written: list[tuple[Path, list[str], int]] = []
    save = WhisperTrainer.save_step_checkpoint

    def spy(self, *args, **kwargs):
        path = save(self, *args, **kwargs)
        names = sorted(p.name for p in path.iterdir())
        written.append((path, names, self.config.keep_step_checkpoints))
        return path

    monkeypatch.setattr(WhisperTrainer, "save_step_checkpoint", spy)
    exp = tmp_path / "exp"
    extra = ("--save-every-steps", "1", "--keep-step-checkpoints", "3")
    assert whisper_train.main(train_args(inputs, exp, *extra, epochs=1)) == 0
    assert [p.name for p, _, _ in written] == [f"step-{i}" for i in range(1, len(UTTERANCES) + 1)]
    assert all("model.safetensors" in names and keep == 3 for _, names, keep in written)
    assert latest_checkpoint(exp) == exp / "checkpoints" / "epoch-1"  # supersedes the steps
    log = (exp / "log" / "train.log").read_text()
    assert "step 1/8 (12%), ETA " in log and "step 8/8 (100%), ETA 0s" in log
    assert (exp / "loss-curve.png").read_bytes().startswith(b"\x89PNG")


def _run(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    for name in list(env):  # a single process, whatever job the tests run in
        if name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") or name.startswith("SLURM_"):
            del env[name]
    command = [sys.executable, "-m", "speechkd.bin.whisper_train", *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )


def _finish(proc: subprocess.Popen, what: str) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-6000:]}"


def _kill_at_first_step_checkpoint(proc: subprocess.Popen, checkpoints: Path) -> None:
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the run ended ({proc.returncode}) before it could be killed:\n{out}")
        if checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir()):
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            return
        time.sleep(0.005)
    proc.kill()
    pytest.fail("no step checkpoint appeared within the time limit")


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(inputs, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    reference = _run(train_args(inputs, tmp_path / "full"))
    killed = _run(train_args(inputs, tmp_path / "part", "--save-every-steps", "1"))
    _kill_at_first_step_checkpoint(killed, tmp_path / "part" / "checkpoints")
    assert killed.returncode == -signal.SIGKILL
    _finish(reference, "the uninterrupted run")
    last = latest_checkpoint(tmp_path / "part")
    assert last is not None and last.name.startswith("step-"), last  # killed mid-epoch
    assert not (tmp_path / "part" / "model").exists()

    resumed = _run(train_args(inputs, tmp_path / "part", "--save-every-steps", "1", "--resume"))
    _finish(resumed, "the resumed run")
    log = (tmp_path / "part" / "log" / "train.log").read_text()
    assert f"Resumed from {last}" in log
    summaries = [
        json.loads((tmp_path / d / "train-summary.json").read_text()) for d in ("full", "part")
    ]
    assert [h["valid_loss"] for h in summaries[0]["history"]] == [
        h["valid_loss"] for h in summaries[1]["history"]
    ]
    # the loss curve of the resumed run holds the steps logged before the kill
    state = load_trainer_state(tmp_path / "part" / "checkpoints" / "epoch-2" / STATE_FILE)
    assert [step for step, _ in state["train_curve"]] == list(range(1, 2 * len(UTTERANCES) + 1))
    assert (tmp_path / "part" / "loss-curve.png").is_file()
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_truncated_manifest_is_one_line_naming_the_file(inputs, tmp_path: Path) -> None:
    cuts = tmp_path / "train_cuts.jsonl.gz"
    data = inputs["cuts"].read_bytes()
    cuts.write_bytes(data[: len(data) // 2])  # a writer killed half-way
    args = train_args(inputs, tmp_path / "exp")
    args[args.index("--train-cuts") + 1] = str(cuts)
    proc = _run(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    error = [line for line in out.splitlines() if "error:" in line]
    assert len(error) == 1 and error[0].startswith("whisper_train.py: error: "), out[-3000:]
    assert f"{cuts}: truncated manifest" in error[0]
