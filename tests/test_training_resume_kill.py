"""A training process killed with SIGKILL mid-epoch resumes to exactly the uninterrupted result.

The file is also the training script (``python tests/test_training_resume_kill.py ...``): a tiny
Whisper model with dropout, two epochs of eight one-cut batches, a DataLoader worker, and a
checkpoint after every optimizer step (``save_every_steps=1``; the reference run saves at the
end of epochs only). The killed run blocks while it writes the checkpoint of step 3 (in its
``.tmp-*`` directory, after steps 1 and 2 were saved) and is killed there with SIGKILL. The
restarted run resumes from the newest complete step checkpoint (the unfinished one is never
trusted and is removed) and must end with the weights of an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import argparse
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
STEPS_PER_EPOCH = len(UTTERANCES)  # one cut per batch, accum_grad 1
REPO = Path(__file__).resolve().parents[1]


# -------------------------------------------------------------------------------------------
# The training script
# -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from lhotse import CutSet

    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.whisper.data import DurationBatchSampler, WhisperAsrDataset
    from speechkd.whisper.decode import configure_special_tokens
    from speechkd.whisper.params import build_whisper, small_whisper_config
    from speechkd.whisper.trainer import TrainerConfig, WhisperTrainer, save_model_weights

    parser = argparse.ArgumentParser()
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--exp-dir", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--hang-at-step", type=int, default=0, help="block writing this step")
    parser.add_argument("--save-every-steps", type=int, default=1, help="0: epoch ends only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.hang_at_step:
        save = torch.save

        def hanging_save(obj, f, *a, **k):
            save(obj, f, *a, **k)
            if isinstance(obj, dict) and obj.get("global_step") == args.hang_at_step:
                time.sleep(600)  # inside the .tmp-* directory of that checkpoint: killed here

        torch.save = hanging_save
    tokenizer = load_whisper_tokenizer(args.tokenizer)
    cuts = CutSet.from_file(args.cuts).to_eager()
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
    torch.manual_seed(1 if args.resume else 0)  # a resumed run must not depend on its init
    model = build_whisper(config, device="cpu")
    trainer = WhisperTrainer(
        model,
        TrainerConfig(
            exp_dir=args.exp_dir,
            epochs=2,
            lr=3e-3,
            warmup_steps=2,
            label_smoothing=0.1,
            log_interval=1,
            progress=False,
            num_workers=1,
            save_every_steps=args.save_every_steps or None,
            keep_step_checkpoints=2,
            seed=3,
        ),
        WhisperAsrDataset(tokenizer, num_frames=300),
        DurationBatchSampler(cuts, 100.0, seed=5, max_cuts=1),
        valid_dataset=WhisperAsrDataset(tokenizer, num_frames=300),
        valid_sampler=DurationBatchSampler(cuts, 100.0, shuffle=False, max_cuts=4),
    )
    resumed = trainer.resume() if args.resume else False
    position = trainer.resume_position
    start_step = trainer.global_step
    trainer.fit()
    save_model_weights(trainer.model, Path(args.result).with_suffix(".safetensors"))
    result = {
        "resumed": resumed,
        "position": position,
        "start_step": start_step,
        "steps": {r["step"]: r["loss"] for r in trainer.log_records},
        "history": trainer.history,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


# -------------------------------------------------------------------------------------------
# The test
# -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.utils.atomic import save_manifest

    root = tmp_path_factory.mktemp("kill-data")
    rng = np.random.default_rng(1)
    cuts = []
    for index, (utt, lang, text, duration) in enumerate(UTTERANCES):
        t = np.arange(int(duration * 16000)) / 16000
        audio = sum(np.sin(2 * np.pi * (220 + 80 * index * k) * t) for k in (1, 2)) * 0.2
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
    return root / "cuts.jsonl.gz", root / "tokenizer"


def _start(inputs, exp_dir: Path, result: Path, *extra: str) -> subprocess.Popen:
    cuts, tokenizer = inputs
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    for name in list(env):  # a single process, whatever job the tests run in
        if name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") or name.startswith("SLURM_"):
            del env[name]
    command = [sys.executable, str(Path(__file__).resolve()), "--cuts", str(cuts)]
    command += ["--tokenizer", str(tokenizer), "--exp-dir", str(exp_dir)]
    command += ["--result", str(result), *extra]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc: subprocess.Popen, what: str) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-6000:]}"


def _kill_while_writing(proc: subprocess.Popen, checkpoints: Path, step: int) -> list[str]:
    """SIGKILL ``proc`` while it writes the state file of step ``step`` (in a ``.tmp-*``)."""
    from speechkd.whisper.trainer import STATE_FILE

    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the run ended ({proc.returncode}) before it could be killed:\n{out}")
        names = sorted(p.name for p in checkpoints.iterdir()) if checkpoints.is_dir() else []
        writing = [n for n in names if n.startswith(".tmp-") and n.endswith(f"-step-{step}")]
        if any((checkpoints / n / STATE_FILE).is_file() for n in writing):
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
            return names
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no checkpoint was being written within the time limit")


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(inputs, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from speechkd.whisper.trainer import STATE_FILE, latest_checkpoint

    # the reference writes no step checkpoints: saving one must not change the training
    reference = _start(inputs, tmp_path / "full", tmp_path / "full.json", "--save-every-steps", "0")
    killed = _start(inputs, tmp_path / "part", tmp_path / "killed.json", "--hang-at-step", "3")
    checkpoints = tmp_path / "part" / "checkpoints"
    names = _kill_while_writing(killed, checkpoints, step=3)
    assert killed.returncode == -signal.SIGKILL
    _finish(reference, "the uninterrupted run")

    # what the kill left: complete step checkpoints and an unfinished .tmp-* directory
    steps = sorted(int(n.split("-")[1]) for n in names if n.startswith("step-"))
    partial = [checkpoints / n for n in names if n.startswith(".tmp-")]
    assert steps == [1, 2] and len(partial) == 1 and partial[0].name.endswith("-step-3")
    assert sorted(p.name for p in partial[0].iterdir()) == ["model.safetensors", STATE_FILE]
    assert not (checkpoints / "step-3").exists()
    assert steps[-1] < STEPS_PER_EPOCH  # killed in the middle of the first epoch
    assert latest_checkpoint(tmp_path / "part") == checkpoints / f"step-{steps[-1]}"
    assert not (tmp_path / "killed.json").exists()

    resumed = _start(inputs, tmp_path / "part", tmp_path / "resumed.json", "--resume")
    _finish(resumed, "the resumed run")
    result = json.loads((tmp_path / "resumed.json").read_text())
    full = json.loads((tmp_path / "full.json").read_text())
    assert result["resumed"] and result["start_step"] == steps[-1]
    assert result["position"]["epoch"] == 1 and result["position"]["batches"] == steps[-1]
    assert not any(p.exists() for p in partial)  # the unfinished checkpoint was removed
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch-1", "epoch-2"]

    # the same losses from the resumption on, the same epoch losses, the same weights
    assert sorted(int(s) for s in result["steps"]) == list(
        range(steps[-1] + 1, 2 * STEPS_PER_EPOCH + 1)
    )
    for step, loss in result["steps"].items():
        assert loss == full["steps"][step], step
    assert [h["train_loss"] for h in result["history"]] == [
        h["train_loss"] for h in full["history"]
    ]
    assert [h["valid_loss"] for h in result["history"]] == [
        h["valid_loss"] for h in full["history"]
    ]
    a = load_file(str(tmp_path / "full.safetensors"))
    b = load_file(str(tmp_path / "resumed.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_step_checkpoints_rotate_and_yield_to_epochs(inputs, tmp_path: Path) -> None:
    """The last K step checkpoints are kept; an epoch checkpoint supersedes them."""
    from lhotse import CutSet

    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.errors import ConfigError
    from speechkd.whisper.data import DurationBatchSampler, WhisperAsrDataset
    from speechkd.whisper.decode import configure_special_tokens
    from speechkd.whisper.params import build_whisper, small_whisper_config
    from speechkd.whisper.trainer import (
        TrainerConfig,
        WhisperTrainer,
        latest_checkpoint,
        remove_stale_temporaries,
        step_checkpoint_dirs,
    )

    cuts_path, tok_dir = inputs
    tokenizer = load_whisper_tokenizer(str(tok_dir))
    config = small_whisper_config(
        d_model=16, layers=1, heads=2, ffn_dim=32, vocab_size=len(tokenizer), num_mel_bins=80
    )
    config.max_source_positions = 150
    configure_special_tokens(config, tokenizer)
    seen: dict[int, list[int]] = {}

    def after_step(model, step: int) -> None:  # runs before the step's own checkpoint
        seen[step] = [s for s, _ in step_checkpoint_dirs(tmp_path)]

    trainer = WhisperTrainer(
        build_whisper(config, device="cpu"),
        TrainerConfig(
            exp_dir=str(tmp_path),
            epochs=1,
            progress=False,
            save_every_steps=2,
            keep_step_checkpoints=2,
        ),
        WhisperAsrDataset(tokenizer, num_frames=300),
        DurationBatchSampler(CutSet.from_file(cuts_path).to_eager(), 100.0, max_cuts=1),
        after_optimizer_step=after_step,
    )
    trainer.fit()
    assert seen[3] == [2] and seen[5] == [2, 4] and seen[7] == [4, 6] and seen[8] == [4, 6]
    assert step_checkpoint_dirs(tmp_path) == []  # step 8 ended the epoch: epoch-1 supersedes
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "epoch-1"
    stale = tmp_path / "checkpoints" / ".tmp-123-abcd-step-9"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "epoch-1"
    assert remove_stale_temporaries(tmp_path) == [stale] and not stale.exists()
    with pytest.raises(ConfigError, match="save_every_steps must be >= 1"):
        TrainerConfig(exp_dir=str(tmp_path), save_every_steps=0)
    with pytest.raises(ConfigError, match="pad_last_round"):
        TrainerConfig(exp_dir=str(tmp_path), pad_last_round="wrap")


if __name__ == "__main__":
    sys.exit(main())
