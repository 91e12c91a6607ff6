"""Data-parallel fairseq training on CPU: 2 processes (gloo, torchrun) equal 1 process.

The run is the mini recipe's DistillW2V2 step 1 (``fairseq-hydra-train --config-name
distill_tiny distill=M1``: a ``speechkd_w2v2_student`` SN learns from a frozen teacher on
unlabelled audio, with volume/pitch augmentation), shrunk to six training utterances of distinct
lengths, ``dataset.batch_size=1`` and 6 updates (2 epochs). The student has no dropout; the
augmentation draws depend on (seed, epoch, utterance) only, so the loss of an update is a
function of its utterances and the weights.

Same global batch: 1 process with ``optimization.update_freq=[2]`` against 2 processes with
``update_freq=[1]``. fairseq shuffles the epoch's batches with the same seed in every process and
deals them out in rounds (rank r trains on batches r, r + 2, ...; ``ShardedIterator``), so update
k of the 2-process run sees the two batches that update k of the 1-process run accumulates. Both
runs divide the summed gradient by the global number of frames (``sample_size``, summed over
the accumulated batches or all-reduced over the processes), so they apply the same update.

CPU distributed training needs one thing fairseq does not infer: under torchrun it derives the
device from ``RANK % torch.cuda.device_count()``, which divides by zero without a GPU
(``fairseq.distributed.utils._infer_torch_distributed_launch_init``). Giving the init method
and the ranks explicitly skips that inference; the stock entry point then runs on CPU::

    python -m torch.distributed.run --standalone --nproc_per_node 2 $(which fairseq-hydra-train) \\
      --config-dir conf/distill_w2v2 --config-name distill_tiny ... common.cpu=true \\
      distributed_training.distributed_world_size=2 \\
      distributed_training.distributed_backend=gloo \\
      distributed_training.distributed_init_method=env:// \\
      distributed_training.distributed_no_spawn=true \\
      'distributed_training.distributed_rank=${oc.env:RANK}' \\
      'distributed_training.device_id=${oc.env:LOCAL_RANK}'

This file is also the program each process runs: fairseq-hydra-train's ``cli_main`` with two
recording hooks on fairseq's Trainer (the utterance ids of every update's batches and the
update's loss from the all-reduced logging outputs, in float64, before fairseq rounds it for
its log).

Tolerance: per-update losses, gradient norms and the final weights must agree within rtol 1e-5 /
atol 1e-7. The 2-process run sums the two batches' gradients in the gloo all-reduce (after
fairseq's legacy DDP divides them by the world size, a power of two, undone exactly by the
``world_size / sample_size`` rescaling) where the single process accumulates them in autograd.
With two processes that is the same float32 addition, so the runs are in fact bit-identical
here; the tolerance leaves room for all-reduce algorithms (or more processes) whose summation
order differs, which changes the last bits. Validation losses (each process scores one of the two
dev utterances) are compared as fairseq logs them, to 4 decimals.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-7
SAMPLE_RATE = 16000
TRAIN_LENGTHS = (8000, 9600, 11200, 12800, 14400, 16000)  # samples; one utterance a batch
DEV_LENGTHS = (8800, 12000)
UPDATES = 6  # 2 epochs of 3 updates of 2 batches


# -------------------------------------------------------------------------------------------
# The training program (one per process)
# -------------------------------------------------------------------------------------------


def _install_recorder(record_dir: Path) -> None:
    """Record each update's batch ids (per rank) and its global loss, gradient norm."""
    from fairseq.trainer import Trainer

    records: list[dict] = []
    train_step = Trainer.train_step
    reduce_and_log = Trainer._reduce_and_log_stats

    def recording_train_step(self, samples, raise_oom=False):
        ids = [s["id"].tolist() for s in samples if s]
        records.append({"update": self.get_num_updates() + 1, "ids": ids})
        return train_step(self, samples, raise_oom)

    def recording_reduce(self, logging_outputs, sample_size, grad_norm=None):
        if records and "loss" not in records[-1] and self.model.training:
            loss = sum(float(log["loss"]) for log in logging_outputs)
            frames = sum(float(log["sample_size"]) for log in logging_outputs)
            records[-1].update(
                loss=loss / frames,
                frames=frames,
                grad_norm=float(grad_norm) if grad_norm is not None else None,
            )
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            (record_dir / f"rank{rank}.json").write_text(json.dumps(records))
        return reduce_and_log(self, logging_outputs, sample_size, grad_norm)

    Trainer.train_step = recording_train_step
    Trainer._reduce_and_log_stats = recording_reduce


def main(argv: list[str]) -> NoReturn:
    """``test_fairseq_distributed.py RECORD_DIR <fairseq-hydra-train arguments>``."""
    from fairseq_cli.hydra_train import cli_main

    record_dir = Path(argv[0]).resolve()
    record_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    _install_recorder(record_dir)
    sys.argv = [sys.argv[0], *argv[1:]]
    cli_main()  # returns after fairseq's final barrier: every rank has finished and saved
    # skip the interpreter's teardown of torch/fairseq (seconds of the test's time budget)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# -------------------------------------------------------------------------------------------
# Tests
# -------------------------------------------------------------------------------------------


def _write_split(root: Path, split: str, lengths: tuple[int, ...], seed: int) -> None:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    lines = [str(root / "wav")]
    for i, n in enumerate(lengths):
        t = np.arange(n) / SAMPLE_RATE
        f0 = 120 + 40 * i
        audio = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)) * 0.2
        audio = (audio + 0.02 * rng.standard_normal(n)).astype(np.float32)
        name = f"{split}-{i}.wav"
        sf.write(root / "wav" / name, audio, SAMPLE_RATE)
        lines.append(f"{name}\t{n}")
    (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def _save_teacher(path: Path) -> Path:
    """A tiny SN (``speechkd_w2v2_student``, conf arch tiny_student) saved as fairseq does."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
    from omegaconf import OmegaConf, open_dict

    from speechkd.fairseq_plugin.models.w2v2_student import W2V2Student, load_arch

    model_cfg = load_arch("tiny_student", "sn")
    torch.manual_seed(123)
    model = W2V2Student(model_cfg)
    cfg = OmegaConf.structured(FairseqConfig)
    with open_dict(cfg):
        cfg.task = OmegaConf.structured(AudioPretrainingConfig(data=str(path.parent)))
        cfg.task._name = "audio_pretraining"
        cfg.model = OmegaConf.structured(model_cfg)
        cfg.model._name = "speechkd_w2v2_student"
    state = {
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "optimizer_history": [
            {"criterion_name": "x", "optimizer_name": "y", "lr_scheduler_state": {}}
        ],
        "extra_state": {},
    }
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The distillation run with 1 process (update_freq 2) and 2 processes (update_freq 1)."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    if importlib.util.find_spec("torch.distributed.run") is None:
        pytest.skip("torchrun (torch.distributed.run) is not available")
    root = tmp_path_factory.mktemp("fairseq-ddp")
    data = root / "data"
    (data / "wav").mkdir(parents=True)
    _write_split(data, "train", TRAIN_LENGTHS, seed=0)
    _write_split(data, "dev", DEV_LENGTHS, seed=1)
    teacher = _save_teacher(root / "teacher.pt")

    def command(name: str, update_freq: int) -> list[str]:
        out = root / name
        return [
            str(Path(__file__).resolve()),
            str(out / "record"),
            "--config-dir",
            str(REPO / "conf" / "distill_w2v2"),
            "--config-name",
            "distill_tiny",
            "distill=M1",
            f"task.data={data}",
            f"++criterion.teacher_path={teacher}",
            "++criterion.trust_teacher_checkpoint=true",
            f"++model.init_from={teacher}",
            "++model.trust_init_checkpoint=true",
            "++model.extractor_mode=group_norm",
            "++model.causal_pos_conv=true",
            "++model.dropout=0.0",
            "++model.attention_dropout=0.0",
            f"checkpoint.save_dir={out / 'ckpt'}",
            f"hydra.run.dir={out / 'hydra'}",
            f"common.user_dir={REPO / 'speechkd' / 'fairseq_plugin'}",
            "common.log_format=json",
            "common.log_interval=1",
            "dataset.max_tokens=null",
            "dataset.batch_size=1",
            "dataset.required_batch_size_multiple=1",
            f"optimization.max_update={UPDATES}",
            f"optimization.update_freq=[{update_freq}]",
            "optimization.lr=[0.002]",
        ]

    distributed = [
        "distributed_training.distributed_world_size=2",
        "distributed_training.distributed_backend=gloo",
        "distributed_training.distributed_init_method=env://",
        "distributed_training.distributed_no_spawn=true",
        "distributed_training.distributed_rank=${oc.env:RANK}",
        "distributed_training.device_id=${oc.env:LOCAL_RANK}",
    ]
    one = [sys.executable, *command("one", 2)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc-per-node", "2", "--max-restarts", "0"]
    two = [*torchrun, *command("two", 1), *distributed]
    env = _env()
    popen = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    procs = {"one": subprocess.Popen(one, **popen), "two": subprocess.Popen(two, **popen)}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        (root / f"{name}.log").write_text(out)
        assert proc.returncode == 0, f"run {name} failed ({proc.returncode}):\n{out[-6000:]}"
    return {"one": root / "one", "two": root / "two"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    for name in list(env):  # the runs must not think they are part of another job
        if name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            del env[name]
        elif name.startswith("SLURM_"):
            del env[name]
    return env


def _records(run: Path, rank: int) -> list[dict]:
    return json.loads((run / "record" / f"rank{rank}.json").read_text())


def test_two_processes_equal_one_with_update_freq(runs) -> None:
    one = _records(runs["one"], 0)
    ranks = [_records(runs["two"], r) for r in (0, 1)]
    assert [r["update"] for r in one] == list(range(1, UPDATES + 1))
    for records in ranks:
        assert [r["update"] for r in records] == list(range(1, UPDATES + 1))
    # update k: the 1-process run accumulates batches (a, b); rank 0 trains on a, rank 1 on b
    for k in range(UPDATES):
        assert len(one[k]["ids"]) == 2
        assert ranks[0][k]["ids"] == one[k]["ids"][:1], k
        assert ranks[1][k]["ids"] == one[k]["ids"][1:], k
    # every epoch covers every utterance once, in a new order
    epochs = [[i for r in one[e * 3 : e * 3 + 3] for ids in r["ids"] for i in ids] for e in (0, 1)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(len(TRAIN_LENGTHS)))
    assert epochs[0] != epochs[1]
    # both ranks see the global statistics; they match the single process's
    for key in ("frames", "loss", "grad_norm"):
        a = [r[key] for r in one]
        for records in ranks:
            np.testing.assert_allclose([r[key] for r in records], a, rtol=RTOL, atol=ATOL)
    losses = [r["loss"] for r in one]
    assert losses[-1] < losses[0]  # it trains
    assert len(set(losses)) == UPDATES
    # the recorded losses are those fairseq logs (to 4 decimals), in both runs
    for name in ("one", "two"):
        logged = _logged(runs[name].parent / f"{name}.log", "train_inner", "loss")
        np.testing.assert_allclose(logged, losses, rtol=0, atol=6e-5)


def test_same_final_weights_and_validation(runs) -> None:
    from speechkd.fairseq_plugin.checkpoints import load_fairseq_model

    weights = {}
    for name, run in runs.items():
        model, _, _ = load_fairseq_model(run / "ckpt" / "checkpoint_last.pt", trust_pickle=True)
        weights[name] = model.state_dict()
    assert weights["one"].keys() == weights["two"].keys()
    for key, value in weights["one"].items():
        torch.testing.assert_close(weights["two"][key], value, rtol=RTOL, atol=ATOL, msg=key)
    valid = {n: _logged(runs[n].parent / f"{n}.log", "dev", "dev_loss") for n in runs}
    assert len(valid["one"]) == 2  # one validation an epoch
    np.testing.assert_allclose(valid["two"], valid["one"], rtol=0, atol=1e-4)


def _logged(log: Path, logger: str, key: str) -> list[float]:
    """``key`` of fairseq's json log lines ``[<logger>][INFO] - {...}`` (log_format=json)."""
    values = []
    for line in log.read_text().splitlines():
        if f"[{logger}][INFO] - {{" in line:
            values.append(float(json.loads(line[line.index("{") :])[key]))
    return values


if __name__ == "__main__":
    main(sys.argv[1:])
