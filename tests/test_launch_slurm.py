"""The slurm backend of local/launch.sh on a real one-node Slurm cluster (local/slurm_cluster.sh).

The module fixture installs Debian slurm-wlm + munge when missing, starts munged, slurmctld and
slurmd on localhost and stops them at the end; the tests skip only where Slurm cannot be installed
or run (not root, no apt-get).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording, load_manifest

from speechkd.bin import compute_features
from speechkd.errors import ConfigError
from speechkd.launch import cli
from speechkd.launch.slurm_backend import (
    array_range,
    batch_script,
    job_resources,
    queue_dir,
    read_footer,
    read_slurm_conf,
)
from speechkd.launch.spec import parse_launch_args

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "local" / "slurm_cluster.sh"
LAUNCH = ROOT / "local" / "launch.sh"


def _free_port_pair() -> int:
    """A port P with P and P + 1 free (slurmctld and slurmd), so a running cluster is left alone."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node cluster: yields the environment (SLURM_CONF) to run launch.sh in."""
    directory = tmp_path_factory.mktemp("slurm")
    command = ["bash", str(CLUSTER), "start", "--dir", str(directory)]
    start = subprocess.run(
        [*command, "--port", str(_free_port_pair())], capture_output=True, text=True, timeout=900
    )
    if start.returncode == 3:
        pytest.skip(f"Slurm cannot be installed or started here: {start.stderr.strip()}")
    assert start.returncode == 0, start.stderr
    env = dict(os.environ, SLURM_CONF=str(directory / "slurm.conf"), SPEECHKD_ROOT=str(ROOT))
    yield env
    stop = subprocess.run(
        ["bash", str(CLUSTER), "stop", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stop.returncode == 0, stop.stderr
    status = subprocess.run(
        ["bash", str(CLUSTER), "status", "--dir", str(directory)], capture_output=True, text=True
    )
    assert status.returncode == 1 and status.stdout.count("stopped") == 3, status.stdout


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _body(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if not line.startswith("#")]


def test_array_output_matches_the_local_backend(slurm, tmp_path: Path) -> None:
    command = "JOB=1:3 log/x.JOB.log echo JOB"
    logs = {}
    for backend in ("local", "slurm"):
        work = tmp_path / backend
        work.mkdir()
        env_script = f"{LAUNCH} --backend {backend} JOB=1:3 log/e.JOB.log "
        env_script += "'echo $SPEECHKD_JOB_INDEX/$SPEECHKD_NUM_JOBS; pwd'"
        for script in (f"{LAUNCH} --backend {backend} {command}", env_script):
            out = _bash(script, work, slurm)
            assert out.returncode == 0, out.stderr
        logs[backend] = {  # the submit directory of each backend written as <cwd>
            str(log.relative_to(work)): [line.replace(str(work), "<cwd>") for line in _body(log)]
            for log in sorted(work.glob("log/*.log"))
        }
        for i in (1, 2, 3):
            text = (work / f"log/x.{i}.log").read_text()
            assert text.startswith(f"# echo {i}\n# Started at ")
            assert re.search(r"^# Ended \(code 0\) at .*, elapsed time \d+ seconds$", text, re.M)
    assert logs["slurm"] == logs["local"]
    assert len(logs["local"]) == 6 and logs["local"]["log/x.2.log"] == ["2"]
    assert logs["local"]["log/e.3.log"] == ["3/3", "<cwd>"]
    script = (tmp_path / "slurm/log/q/x.sh").read_text()
    assert "#SBATCH --array=1-3\n" in script and "set -e\n" in script
    assert f"cd {tmp_path / 'slurm'}\n" in script


def test_failed_task_is_named_with_log_and_exit_code(slurm, tmp_path: Path) -> None:
    out = _bash(
        f"{LAUNCH} --backend slurm JOB=1:3 log/f.JOB.log "
        "'echo task JOB; exit $((JOB == 2 ? 7 : 0))'",
        tmp_path,
        slurm,
    )
    assert out.returncode == 1
    assert "launch: task 2 failed with exit code 7; see log/f.2.log" in out.stderr
    assert "1 / 3 failed" in out.stderr
    assert read_footer(tmp_path / "log/f.2.log") == 7
    assert _body(tmp_path / "log/f.2.log") == ["task 2"]
    # a task killed before its log's footer: the exit code comes from Slurm (signal 9 -> 137)
    killed = _bash(
        f"{LAUNCH} --backend slurm JOB=1:2 log/k.JOB.log 'echo JOB; [ JOB = 1 ] || kill -9 $PPID'",
        tmp_path,
        slurm,
    )
    assert killed.returncode == 1
    assert "task 2: no '# Ended' line in log/k.2.log; Slurm: FAILED" in killed.stderr
    assert "task 2 failed with exit code 137; see log/k.2.log" in killed.stderr
    assert read_footer(tmp_path / "log/k.1.log") == 0


def test_max_jobs_run_runs_tasks_one_at_a_time(slurm, tmp_path: Path) -> None:
    out = _bash(
        f"{LAUNCH} --backend slurm --max-jobs-run 1 JOB=1:3 log/m.JOB.log "
        "'date +%s.%N; sleep 0.5; date +%s.%N'",
        tmp_path,
        slurm,
    )
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --array=1-3%1\n" in (tmp_path / "log/q/m.sh").read_text()
    spans = sorted(tuple(float(t) for t in _body(tmp_path / f"log/m.{i}.log")) for i in (1, 2, 3))
    for (_, end), (begin, _) in zip(spans, spans[1:], strict=False):
        assert begin >= end  # no two tasks overlapped


def test_retries_resubmit_only_failed_tasks(slurm, tmp_path: Path) -> None:
    # task 2 fails on its first run only; task 3 always fails
    command = (
        "'if [ JOB = 1 ] || { [ JOB = 2 ] && [ -e seen.JOB ]; }; then echo ok JOB; "
        "else touch seen.JOB; echo no JOB; exit 4; fi'"
    )
    out = _bash(
        f"{LAUNCH} --backend slurm --retries 2 JOB=1:3 log/r.JOB.log {command}", tmp_path, slurm
    )
    assert out.returncode == 1
    assert "resubmitting 2 failed task(s) 2-3 (retry 1 of 2)" in out.stderr
    assert "resubmitting 1 failed task(s) 3 (retry 2 of 2)" in out.stderr
    assert "task 3 failed with exit code 4; see log/r.3.log" in out.stderr
    assert "1 / 3 failed" in out.stderr
    q = tmp_path / "log/q"
    assert "#SBATCH --array=2-3\n" in (q / "r.retry1.sh").read_text()
    assert "#SBATCH --array=3\n" in (q / "r.retry2.sh").read_text()
    assert "# retry 1 of 2" in (tmp_path / "log/r.2.log").read_text()
    assert _body(tmp_path / "log/r.2.log") == ["ok 2"]
    assert "# retry 2 of 2" in (tmp_path / "log/r.3.log").read_text()
    assert _body(tmp_path / "log/r.1.log") == ["ok 1"]


def test_resources_reach_the_script_and_slurm(slurm, tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "default partition  gpu\ndefault mem 3G\ndefault time 1:00:00  # one hour\n"
        "small   cpus 1\nsmall   mem  700M\nsmall   extra --nice=5 --comment=speechkd-test\n"
    )
    probe = (
        "'echo $SLURM_JOB_PARTITION $SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE; "
        'scontrol show job $SLURM_JOB_ID | grep -oE "(TimeLimit|Nice|Comment)=[^ ]+"\''
    )
    out = _bash(
        f"{LAUNCH} --backend slurm --config {conf} --class small --time 20 log/res.log {probe}",
        tmp_path,
        slurm,
    )
    assert out.returncode == 0, out.stderr
    script = (tmp_path / "log/q/res.sh").read_text()
    for line in [
        "--partition=gpu",
        "--cpus-per-task=1",
        "--mem=700M",
        "--time=20",
        "--nice=5 --comment=speechkd-test",
    ]:
        assert f"#SBATCH {line}\n" in script
    assert "--array" not in script and "--gres" not in script
    body = _body(tmp_path / "log/res.log")
    assert body[0] == "gpu 1 700"
    assert sorted(body[1:]) == ["Comment=speechkd-test", "Nice=5", "TimeLimit=00:20:00"]
    # sbatch's own message for a partition that does not exist
    bad = _bash(f"{LAUNCH} --backend slurm --partition nope log/p.log true", tmp_path, slurm)
    assert bad.returncode == 2
    assert "sbatch refused" in bad.stderr and "invalid partition specified: nope" in bad.stderr
    assert "partition=nope (--partition)" in bad.stderr


def test_multi_task_job_starts_its_processes_with_srun(slurm, tmp_path: Path) -> None:
    command = "'srun bash -c \"echo rank \\$SLURM_PROCID of \\$SLURM_NTASKS\" | sort'"
    out = _bash(
        f"{LAUNCH} --backend slurm --ntasks 2 --num-threads 1 --mem 500M log/t.log {command}",
        tmp_path,
        slurm,
    )
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --ntasks=2\n" in (tmp_path / "log/q/t.sh").read_text()
    assert _body(tmp_path / "log/t.log") == ["rank 0 of 2", "rank 1 of 2"]


def test_sigterm_of_the_launcher_cancels_the_job(slurm, tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [str(LAUNCH), "--backend", "slurm", "JOB=1:2", "log/s.JOB.log", "echo started; sleep 60"],
        cwd=tmp_path,
        env=slurm,
        stderr=subprocess.PIPE,
        text=True,
    )
    logs = [tmp_path / f"log/s.{i}.log" for i in (1, 2)]
    deadline = time.monotonic() + 60
    while not all(log.is_file() and "started" in log.read_text() for log in logs):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.2)
    launcher.send_signal(signal.SIGTERM)
    err = launcher.communicate(timeout=60)[1]
    assert launcher.returncode == 2
    job = re.search(r"interrupted by SIGTERM; cancelled Slurm job (\d+)", err)
    assert job, err
    while any(read_footer(log) is None for log in logs):  # the tasks end with the footer
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for log in logs:
        assert read_footer(log) == 143  # 128 + SIGTERM, not the 60 s of sleep
        assert "# Received SIGTERM (time limit, preemption or scancel)" in log.read_text()
    # the cancelled tasks leave the queue once slurmd has reported them (completing state first)
    leave_by = time.monotonic() + 30
    while True:
        queue = subprocess.run(["squeue", "-h", "-j", job.group(1)], env=slurm, capture_output=True)
        if queue.stdout.strip() == b"" or time.monotonic() > leave_by:
            break
        time.sleep(0.5)
    assert queue.stdout.strip() == b"", queue.stdout


def _tiny_manifests(directory: Path) -> None:
    """Five short synthetic recordings as data/manifests/mini_asr_cuts_train.jsonl.gz."""
    audio = directory / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    recordings = []
    for i, n in enumerate([5000 + 1700 * k for k in range(5)]):
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * (150 + 30 * i) * t) + 0.01 * rng.standard_normal(n)
        sf.write(audio / f"u{i}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
        recordings.append(Recording.from_file(audio / f"u{i}.wav"))
    manifests = directory / "manifests"
    manifests.mkdir()
    CutSet.from_manifests(recordings=recordings).to_file(manifests / "mini_asr_cuts_train.jsonl.gz")


def test_feature_stage_through_cmd_sh_matches_local(slurm, tmp_path: Path) -> None:
    """egs/mini stage 2 (fbank, nj=2) with speechkd_backend=slurm and =local."""
    _tiny_manifests(tmp_path)
    features = {}
    for backend in ("slurm", "local"):
        fbank = tmp_path / f"fbank_{backend}"
        common = ["--from-dir", str(tmp_path / "manifests"), "--pattern", "mini_*_cuts_*.jsonl.gz"]
        common += ["--output-dir", str(fbank)]
        # the node of the test cluster may have fewer CPUs and less memory than the train class
        script = f"""set -e
. {shlex.quote(str(ROOT))}/path.sh
speechkd_backend={backend}
. {shlex.quote(str(ROOT))}/cmd.sh
$train_cmd --num-threads 1 --mem 1G JOB=1:2 {fbank}/log/fbank.JOB.log \\
  python -m speechkd.bin.compute_features {shlex.join(common)} --feature-type fbank \\
  --num-mel-bins 80 --shard JOB/2
"""
        out = _bash(script, tmp_path, slurm)
        assert out.returncode == 0, out.stderr
        compute_features.main([*common, "--merge", "2"])
        if backend == "slurm":
            assert "#SBATCH --array=1-2%2\n" in (fbank / "log/q/fbank.sh").read_text()
        cuts = load_manifest(fbank / "mini_asr_cuts_train.jsonl.gz")
        features[backend] = [(c.id, c.num_frames, c.load_features()) for c in cuts]
    assert [f[:2] for f in features["slurm"]] == [f[:2] for f in features["local"]]
    assert len(features["slurm"]) == 5
    for (_, _, a), (_, _, b) in zip(features["slurm"], features["local"], strict=True):
        np.testing.assert_array_equal(a, b)


# ---- without a cluster ------------------------------------------------------------------------


def test_class_resources_and_overrides_in_the_script() -> None:
    spec = parse_launch_args(
        ["--config", str(ROOT / "conf/slurm.conf"), "--class", "cuda", "--mem", "2G"]
        + ["--nodes", "2", "--ntasks", "4", "JOB=1:4", "exp/log/train.JOB.log", "python", "x.py"]
    )
    resources = job_resources(spec)
    assert resources["mem"].origin == "--mem"
    conf, line = resources["gpus"].origin.rsplit(":", 1)
    assert conf == str(ROOT / "conf/slurm.conf")
    assert Path(conf).read_text().splitlines()[int(line) - 1].split() == ["cuda", "gpus", "1"]
    script = batch_script(spec, spec.indices, resources, "exp/log/q/train.%a.out", cwd="/w")
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=train",
        "#SBATCH --chdir=/w",
        "#SBATCH --output=exp/log/q/train.%a.out",
        "#SBATCH --array=1-4",
        "#SBATCH --partition=gpu",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks=4",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --mem=2G",
        "#SBATCH --time=48:00:00",
    ]
    assert "  3) log=exp/log/train.3.log; cmd='python x.py' ;;" in script
    assert queue_dir(spec)[0] == Path("exp/log/q").resolve()
    assert array_range([1, 2, 3, 5, 7, 8], 2) == "1-3,5,7-8%2"
    per_dir = parse_launch_args(["JOB=1:2", "exp/JOB/log/decode.log", "true"])
    assert queue_dir(per_dir) == (Path("exp").resolve() / "q", "decode")


def test_configuration_errors_name_the_value(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("default cpus 2\ntrain memory 4G\n")
    with pytest.raises(ConfigError, match=r"bad.conf:2: unknown key 'memory'"):
        read_slurm_conf(bad)
    spec = parse_launch_args(["--gpu", "one", "log/x.log", "true"])
    with pytest.raises(ConfigError, match=r"gpus must be an integer >= 0, got 'one' \(--gpu\)"):
        job_resources(spec)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cli.main(["--backend", "slurm", "log/x.log", "true"]) == 2
    assert "needs sbatch and squeue on PATH" in capsys.readouterr().err
    assert cli.main(["--backend", "pbs", "log/x.log", "true"]) == 2
    assert "available: local, slurm" in capsys.readouterr().err


def test_two_task_training_step_through_slurm(slurm, tmp_path: Path) -> None:
    """whisper_train as a 2-task Slurm job: srun starts both ranks, which meet through
    torch.distributed (gloo) and train one epoch together; rank 0 writes the model."""
    from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
    from speechkd.utils.atomic import save_manifest
    from speechkd.whisper.trainer import export_model
    from tests.test_whisper_trainer import UTTERANCES, tiny_model

    tokenizer = load_whisper_tokenizer(
        "openai/whisper-small", cache_dir=tmp_path / "tok", hf_cache_dir=tmp_path / "hf"
    )
    student = export_model(tiny_model(tokenizer, 0), tmp_path / "student", tokenizer)
    cuts = _tone_cuts(tmp_path / "audio", UTTERANCES)
    save_manifest(cuts, tmp_path / "cuts.jsonl.gz")
    exp = tmp_path / "exp"
    train = [
        "srun", "python", "-m", "speechkd.bin.whisper_train", "--train-cuts",
        str(tmp_path / "cuts.jsonl.gz"), "--init-from", str(student), "--exp-dir", str(exp),
        "--epochs", "1", "--lr", "1e-3", "--max-duration", "3", "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    script = f"""set -e
. {shlex.quote(str(ROOT))}/path.sh
speechkd_backend=slurm
. {shlex.quote(str(ROOT))}/cmd.sh
$cuda_cmd --gpu 0 --partition cpu --ntasks 2 --num-threads 1 --mem 3G {exp}/log/job.log \\
  {shlex.quote(shlex.join(train))}
"""
    out = _bash(script, tmp_path, slurm)
    assert out.returncode == 0, out.stderr + (exp / "log" / "job.log").read_text()[-3000:]
    assert "#SBATCH --ntasks=2\n" in (exp / "log/q/job.sh").read_text()
    assert (exp / "model" / "model.safetensors").is_file()
    assert (exp / "log" / "train.rank1.log").is_file()
    assert "world_size: 2" in (exp / "config.yaml").read_text()


def _tone_cuts(directory: Path, utterances) -> CutSet:
    """Cuts of synthetic tones with transcripts (as in tests/test_whisper_trainer.py)."""
    from lhotse import SupervisionSegment
    from lhotse.cut import MonoCut

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for index, (utt, lang, text, duration) in enumerate(utterances):
        t = np.arange(int(duration * 16000)) / 16000
        audio = (0.2 * np.sin(2 * np.pi * (200 + 150 * index) * t)).astype(np.float32)
        sf.write(directory / f"{utt}.wav", audio, 16000)
        rec = Recording.from_file(directory / f"{utt}.wav", recording_id=utt)
        sup = SupervisionSegment(utt, utt, 0.0, rec.duration, text=text, language=lang)
        out.append(MonoCut(utt, 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(out)
