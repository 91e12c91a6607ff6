"""Data-parallel Whisper training: 2 processes (gloo, torchrun) equal 1 process, batch for batch.

The same file is the training script each process runs (``python tests/test_distributed_training.py
...``). Mapping of batches: the sampler's epoch order B0, B1, ... is the same in every process;
with 2 processes, rank 0 trains on B0, B2, B4, ... and rank 1 on B1, B3, B5, ...; one optimizer
step of 2 processes with ``accum_grad = a`` covers the batches one process with
``accum_grad = 2a`` covers. Every batch loss is the per-token mean (label-smoothed cross-entropy
plus the extra terms) divided by ``accum_grad``; DDP averages the gradients over processes, so both
runs apply the mean gradient of the same batch losses. Dropout, CLSR gate noise and gate skipping
are seeded per batch from its epoch position, so they match too. The logged step loss is the mean
over the step's batches (and processes).

Tolerance: weights, step losses and epoch losses agree within rtol 1e-5 / atol 1e-6 (the sums
differ at most in float rounding order).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-6
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
SCENARIOS = ("plain", "clsr", "resume")


# -------------------------------------------------------------------------------------------
# The training script (one per process)
# -------------------------------------------------------------------------------------------


def _tiny_model(tokenizer, dropout: float):
    from speechkd.whisper.decode import configure_special_tokens
    from speechkd.whisper.params import build_whisper, small_whisper_config

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
    config.dropout = config.attention_dropout = config.activation_dropout = dropout
    configure_special_tokens(config, tokenizer)
    torch.manual_seed(0)
    return build_whisper(config, device="cpu")


class _Stop(Exception):
    """Raised after a given step checkpoint: a preempted job."""


def _run_scenario(name: str, args, tokenizer, cuts, out: Path) -> None:
    from speechkd.launch import distributed
    from speechkd.whisper.clsr import add_clsr
    from speechkd.whisper.data import DurationBatchSampler, WhisperAsrDataset
    from speechkd.whisper.distil import DistilOptions, distil_extra_loss
    from speechkd.whisper.selection import DevErrorRate
    from speechkd.whisper.trainer import (
        TrainerConfig,
        TrainingHooks,
        WhisperTrainer,
        clsr_training_hooks,
        save_model_weights,
    )

    seen: list[list] = []

    def build(stop_at: int | None = None):
        model = _tiny_model(tokenizer, dropout=0.1)
        hooks = TrainingHooks()
        gate = None
        if name == "clsr":
            model = add_clsr(model, ["en", "ca"], noise_ramp_steps=4, gate_dim=8)
            hooks = clsr_training_hooks(model)
            gate = distil_extra_loss(DistilOptions(kd_weight=0.0, gate_budget=0.5))

        def extra_loss(model, batch, outputs):
            seen.append([trainer.epoch + 1, batch["cut_ids"], batch["language"]])
            parts = {"l2": 1e-4 * outputs.logits.float().pow(2).mean()}
            if gate is not None:
                parts.update(gate(model, batch, outputs))
            return parts

        accum = {"plain": args.accum, "clsr": args.accum, "resume": 2 * args.accum}[name]
        config = TrainerConfig(
            exp_dir=str(out / name),
            epochs=3 if name == "resume" else 2,
            lr=3e-3,
            warmup_steps=1,
            accum_grad=accum,
            label_smoothing=0.1,
            log_interval=1,
            progress=False,
            save_every_steps=1 if name == "resume" else None,
            seed=11,
            select_by="wer" if name == "plain" else "loss",
        )
        dataset = WhisperAsrDataset(tokenizer, num_frames=300)
        sampler = DurationBatchSampler(
            cuts, 100.0, seed=5, max_cuts=1, language_homogeneous=name == "clsr"
        )
        valid = DurationBatchSampler(cuts, 100.0, shuffle=False, max_cuts=3)
        trainer_cls = WhisperTrainer
        if stop_at is not None:

            class StoppingTrainer(WhisperTrainer):
                def save_step_checkpoint(self, *a, **k):
                    path = super().save_step_checkpoint(*a, **k)
                    if self.global_step == stop_at:
                        raise _Stop
                    return path

            trainer_cls = StoppingTrainer
        trainer = trainer_cls(
            model,
            config,
            dataset,
            sampler,
            valid_dataset=dataset,
            valid_sampler=valid,
            extra_loss=extra_loss,
            # the best epoch by dev WER, each process decoding every other cut
            dev_scorer=DevErrorRate(tokenizer, cuts, tokens_per_second=3.0)
            if name == "plain"
            else None,
            **hooks.kwargs(),
        )
        return trainer

    resumed_from = None
    if name == "resume" and args.interrupt:
        trainer = build(stop_at=3)
        try:
            trainer.fit()
            raise AssertionError("the run was not interrupted")
        except _Stop:
            pass
        trainer.close()
        trainer = build()
        assert trainer.resume()
        resumed_from = trainer.resume_position
    else:
        trainer = build()
    trainer.fit()
    rank = distributed.get_rank()
    (out / f"{name}-batches-rank{rank}.json").write_text(json.dumps(seen))
    if trainer.is_main:
        save_model_weights(trainer.model, out / f"{name}-final.safetensors")
        result = {
            "steps": [r["loss"] for r in trainer.log_records],
            "step_numbers": [r["step"] for r in trainer.log_records],
            "history": trainer.history,
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "resumed_from": resumed_from,
            "checkpoints": sorted(p.name for p in (out / name / "checkpoints").iterdir()),
        }
        (out / f"{name}-result.json").write_text(json.dumps(result))
    trainer.close()


def main(argv: list[str] | None = None) -> int:
    from lhotse import CutSet

    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.launch import distributed

    parser = argparse.ArgumentParser()
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--interrupt", action="store_true")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tokenizer = load_whisper_tokenizer(args.tokenizer)
    cuts = CutSet.from_file(args.cuts).to_eager()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.scenarios:
        _run_scenario(name, args, tokenizer, cuts, out)
    distributed.teardown_distributed()
    return 0


# -------------------------------------------------------------------------------------------
# Tests
# -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight one-cut batches (tones, en and ca) and a saved Whisper tokenizer."""
    import soundfile as sf
    from lhotse import CutSet, Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.utils.atomic import save_manifest

    root = tmp_path_factory.mktemp("ddp-data")
    rng = np.random.default_rng(0)
    cuts = []
    for index, (utt, lang, text, duration) in enumerate(UTTERANCES):
        t = np.arange(int(duration * 16000)) / 16000
        audio = sum(np.sin(2 * np.pi * (200 + 90 * index * k) * t) for k in (1, 2)) * 0.2
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


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    for name in list(env):  # the runs must not think they are part of another job
        if name in ("RANK", "WORLD_SIZE", "LOCAL_RANK") or name.startswith("SLURM_"):
            del env[name]
    return env


def _check(proc: subprocess.Popen, what: str) -> None:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out[-6000:]}"


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same scenarios with 1 process (accum 2) and with torchrun 2 processes (accum 1)."""
    cuts, tokenizer = inputs
    root = tmp_path_factory.mktemp("ddp-runs")
    script = [str(Path(__file__).resolve()), "--cuts", str(cuts), "--tokenizer", str(tokenizer)]
    one = [sys.executable, *script, "--out", str(root / "one"), "--accum", "2"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc-per-node", "2", "--max-restarts", "0"]
    two = [*torchrun, *script, "--out", str(root / "two"), "--accum", "1", "--interrupt"]
    common = {"env": _env(), "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = [subprocess.Popen(one, **common), subprocess.Popen(two, **common)]
    _check(procs[0], "the 1-process run")
    _check(procs[1], "the 2-process torchrun run")
    return root / "one", root / "two"


def _assert_same_run(one: Path, two: Path, name: str) -> tuple[dict, dict]:
    a = json.loads((one / f"{name}-result.json").read_text())
    b = json.loads((two / f"{name}-result.json").read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["global_step"] == b["global_step"]
    # the step losses b logged (all of them, or those after its resumption) match a's
    assert b["step_numbers"] == a["step_numbers"][-len(b["step_numbers"]) :]
    np.testing.assert_allclose(b["steps"], a["steps"][-len(b["steps"]) :], rtol=RTOL, atol=ATOL)
    for key in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(
            [h[key] for h in b["history"]], [h[key] for h in a["history"]], rtol=RTOL, atol=ATOL
        )
    wa, wb = _load(one / f"{name}-final.safetensors"), _load(two / f"{name}-final.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=RTOL, atol=ATOL, msg=key)
    return a, b


def _batches(run: Path, name: str, rank: int) -> list:
    return json.loads((run / f"{name}-batches-rank{rank}.json").read_text())


def _assert_dealt_in_rounds(one: Path, two: Path, name: str) -> list:
    """Rank r of 2 trained on global batches r, r+2, ... of each epoch's order."""
    single = _batches(one, name, 0)
    ranks = [_batches(two, name, r) for r in (0, 1)]
    epochs = sorted({e for e, _, _ in single})
    rounds = []
    for epoch in epochs:
        order = [(ids, lang) for e, ids, lang in single if e == epoch]
        assert len(order) == len(UTTERANCES)  # one cut per batch, every cut once
        got = [[(ids, lang) for e, ids, lang in ranks[r] if e == epoch] for r in (0, 1)]
        assert got[0] == order[0::2] and got[1] == order[1::2], f"epoch {epoch}"
        rounds += list(zip(got[0], got[1], strict=True))
    return rounds


def test_two_processes_equal_one_with_accumulation(runs) -> None:
    one, two = runs
    a, b = _assert_same_run(one, two, "plain")
    # the dev WER of each epoch (cuts decoded half by each rank, counts summed) is the same
    assert [h["valid_wer"] for h in b["history"]] == pytest.approx(
        [h["valid_wer"] for h in a["history"]]
    )
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb["valid_wer_per_language"] == pytest.approx(ha["valid_wer_per_language"])
    assert set(a["history"][0]["valid_wer_per_language"]) == {"ca", "en"}
    assert b["step_numbers"] == list(range(1, 9))  # 2 epochs of 4 steps of 2 batches
    assert a["steps"][-1] < a["steps"][0]
    _assert_dealt_in_rounds(one, two, "plain")
    # only rank 0 wrote: one checkpoint per epoch, nothing left half-written
    result = json.loads((two / "plain-result.json").read_text())
    assert result["checkpoints"] == ["epoch-1", "epoch-2"]


def test_clsr_experts_of_other_ranks_languages(runs) -> None:
    """Language-homogeneous CLSR batches: in a round each rank may train another language.

    An expert used on one rank only gets half of its gradient from the average; one used on
    neither keeps no gradient (AdamW skips it), exactly as in the single process.
    """
    one, two = runs
    _assert_same_run(one, two, "clsr")
    rounds = _assert_dealt_in_rounds(one, two, "clsr")
    languages = [(r0[1], r1[1]) for r0, r1 in rounds]
    assert any(x != y for x, y in languages), languages  # experts unused on one rank
    assert any(x == y for x, y in languages), languages  # an expert unused on both


def test_distributed_resume_mid_epoch(runs) -> None:
    """2 processes (accum 2) stopped after step 3, resumed: equal to 1 process (accum 4)."""
    one, two = runs
    a, b = _assert_same_run(one, two, "resume")
    assert a["resumed_from"] is None
    assert b["resumed_from"]["epoch"] == 2 and b["resumed_from"]["batches"] == 4
    assert b["resumed_from"]["world_size"] == 2
    assert b["step_numbers"] == [4, 5, 6]  # the resumed trainer's steps
    # step checkpoints superseded by an epoch checkpoint are removed, the last K kept
    assert b["checkpoints"] == ["epoch-1", "epoch-2", "epoch-3"]


# -------------------------------------------------------------------------------------------
# Launcher environments and sharding, in-process
# -------------------------------------------------------------------------------------------


def test_environment_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from speechkd.errors import ConfigError
    from speechkd.launch.distributed import detect_distributed_env, expand_hostlist

    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n1"}
    env = detect_distributed_env({**torchrun, "MASTER_PORT": "1234", "SLURM_PROCID": "0"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (
        3,
        4,
        1,
        "n1",
        1234,
    )
    assert env.launcher == "torchrun"
    assert not detect_distributed_env({}).is_distributed
    # the batch script of a 2-task allocation is one process; its srun tasks are two
    batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert not detect_distributed_env(batch).is_distributed
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol: the node list is parsed
    task = {**batch, "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_STEP_NUM_TASKS": "2"}
    task.update(SLURM_STEP_NODELIST="gpu[07-08]", SLURM_JOB_ID="4242", SLURM_STEP_ID="0")
    env = detect_distributed_env(task)
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (1, 2, 0, "slurm")
    assert env.master_addr == "gpu07" and 20000 <= env.master_port < 40000
    assert env.master_port == detect_distributed_env(task).master_port  # same in every task
    assert expand_hostlist("a[01-03,7],login1,b[9-10]x") == [
        "a01",
        "a02",
        "a03",
        "a7",
        "login1",
        "b9x",
        "b10x",
    ]
    fake = tmp_path / "scontrol"
    fake.write_text('#!/bin/sh\necho "$@" > "$0.args"\necho hostA\necho hostB\n')
    fake.chmod(0o755)
    assert detect_distributed_env(task).master_addr == "hostA"
    assert (tmp_path / "scontrol.args").read_text().split() == ["show", "hostnames", "gpu[07-08]"]
    with pytest.raises(ConfigError, match="RANK='x'"):
        detect_distributed_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_slurm_tasks_form_a_process_group(tmp_path: Path) -> None:
    """Two processes with the variables ``srun --ntasks 2`` sets rendezvous and all-reduce."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    (tmp_path / "scontrol").chmod(0o755)
    code = (
        "import json, torch, torch.distributed as dist\n"
        "from speechkd.launch.distributed import init_distributed, teardown_distributed\n"
        "env = init_distributed('cpu')\n"
        "t = torch.tensor([float(env.rank + 1)])\n"
        "dist.all_reduce(t)\n"
        "print(json.dumps([env.rank, env.world_size, env.master_addr, dist.get_backend(),"
        " float(t)]))\n"
        "teardown_distributed()\n"
    )
    procs = []
    for rank in (0, 1):
        env = _env()
        env["PATH"] = os.pathsep.join([str(tmp_path), env["PATH"]])
        env.update(
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            SLURM_NTASKS="2",
            SLURM_STEP_NUM_TASKS="2",
            SLURM_STEP_ID="0",
            SLURM_JOB_ID="77",
            SLURM_STEP_NODELIST="node[1]",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results == [[0, 2, "localhost", "gloo", 3.0], [1, 2, "localhost", "gloo", 3.0]]


def test_rank_batches_deal_pad_and_skip() -> None:
    from speechkd.errors import ConfigError
    from speechkd.whisper.data import RankBatches, num_rounds

    order = [f"b{i}" for i in range(7)]
    deal = {r: list(RankBatches(order, r, 3)) for r in range(3)}
    assert deal == {
        0: ["b0", "b3", "b6"],
        1: ["b1", "b4", "b0"],  # the last round is filled with the epoch's first batches
        2: ["b2", "b5", "b1"],
    }
    assert [list(RankBatches(order, r, 3, pad="drop")) for r in range(3)] == [
        ["b0", "b3"],
        ["b1", "b4"],
        ["b2", "b5"],
    ]
    assert [list(RankBatches(order, r, 3, pad="none")) for r in range(3)] == [
        ["b0", "b3", "b6"],
        ["b1", "b4"],
        ["b2", "b5"],
    ]
    skipped = RankBatches(order, 1, 3, start=2)
    assert list(skipped) == ["b0"] and len(skipped) == 1 and skipped.global_indices() == [7]
    assert list(RankBatches(order[:1], 1, 3)) == ["b0"]  # fewer batches than processes
    assert list(RankBatches(order, 0, 1, start=5)) == ["b5", "b6"]
    assert num_rounds(7, 3) == 3 and num_rounds(7, 3, "drop") == 2
    with pytest.raises(ConfigError, match="start round 4"):
        RankBatches(order, 0, 3, start=4)
    with pytest.raises(ConfigError, match="pad must be"):
        num_rounds(7, 2, "wrap")


if __name__ == "__main__":
    sys.exit(main())
