"""Run a job array on Slurm: one ``sbatch --array`` per attempt, wait, read each exit code back.

For ``launch.sh --backend slurm JOB=1:N log/x.JOB.log COMMAND``:

* the batch script ``log/q/x.sh`` (``x.retry<K>.sh`` for retries) holds the resources as
  ``#SBATCH`` lines (from ``--config`` conf/slurm.conf for ``--class``, command-line options
  overriding them), ``cd``\\s to the submit directory, exports the environment speechkd's commands
  need (PATH, PYTHONPATH, VIRTUAL_ENV, HF_*, SPEECHKD_*, ...; sbatch propagates the rest as the
  site configures) and runs task ``SLURM_ARRAY_TASK_ID`` with ``SPEECHKD_JOB_INDEX`` and
  ``SPEECHKD_NUM_JOBS`` set, its output in ``log/x.<i>.log`` with the header and the
  ``# Ended (code N)`` footer of the local backend; it can be resubmitted by hand with sbatch;
* Slurm's own output of each task (errors before the log could be written) is ``log/q/x.<i>.out``;
* the launcher polls ``squeue`` until the array has left the queue (every 0.5 s, growing to
  10 s), warns about a pending reason that waiting cannot cure, then reads each task's exit code
  from its log's footer, falling back to ``sacct`` and then to ``scontrol show job`` for a task
  killed before the footer (time limit, node failure, scancel);
* failed tasks are resubmitted ``--retries`` times (only the failed indices);
* Ctrl-C or SIGTERM of the launcher cancels the job (scancel).

``--ntasks N`` / ``--nodes M`` request one allocation of N tasks on M nodes per array task: the
command then runs once, in the batch step, and starts its processes with ``srun`` (e.g.
``srun python -m speechkd.bin.whisper_train ...`` reading ``SLURM_PROCID``/``SLURM_NTASKS``, or
``srun torchrun --nnodes $SLURM_NNODES ...`` with one task per node).
The submit directory and the log directory must be on storage the compute nodes share.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from speechkd.errors import ConfigError, SpeechKDError
from speechkd.launch.spec import RESOURCE_OPTIONS, JobSpec

logger = logging.getLogger(__name__)

CONF_KEYS = ("partition", "gpus", "cpus", "mem", "time", "extra", "ntasks", "nodes")
_INTEGER_KEYS = {"gpus": 0, "cpus": 1, "ntasks": 1, "nodes": 1}  # key -> smallest valid value
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_TIME = re.compile(r"^((\d+-)?\d+(:\d+){0,2}|INFINITE|UNLIMITED)$", re.IGNORECASE)
_ENDED = re.compile(r"^# Ended \(code (-?\d+)\)", re.MULTILINE)
# environment written into the batch script (sbatch propagates the rest as the site configures)
_EXPORTED = re.compile(
    r"^(PATH|LD_LIBRARY_PATH|PYTHONPATH|PYTHONUNBUFFERED|PYTHONHASHSEED|VIRTUAL_ENV|CONDA_PREFIX"
    r"|LC_ALL|LANG|OMP_NUM_THREADS|MKL_NUM_THREADS|SLURM_CONF|SPEECHKD_\w+|speechkd_\w+"
    r"|HF_\w+|TRANSFORMERS_\w+)$"
)
_SECRET = re.compile(r"TOKEN|SECRET|PASSWORD|KEY", re.IGNORECASE)
_FINISHED_STATES = ("COMPLETED",)
# pending reasons that waiting alone does not cure
_HOPELESS = {
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "ReqNodeNotAvail",
}


class LaunchError(SpeechKDError):
    """Slurm refused the job or could not be asked about it; the message carries Slurm's words."""


@dataclass(frozen=True)
class Resource:
    """One resource value and where it came from (``conf/slurm.conf:7`` or ``--mem``)."""

    value: str
    origin: str


def read_slurm_conf(path: str | Path) -> dict[str, dict[str, Resource]]:
    """Parse ``class key value`` lines (``#`` comments) into ``{class: {key: Resource}}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"launch: Slurm config {path} not found")
    classes: dict[str, dict[str, Resource]] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            raise ConfigError(f"launch: {path}:{number}: expected 'class key value', got {raw!r}")
        job_class, key, value = parts
        if key not in CONF_KEYS:
            raise ConfigError(
                f"launch: {path}:{number}: unknown key {key!r}; valid keys: {' '.join(CONF_KEYS)}"
            )
        classes.setdefault(job_class, {})[key] = Resource(value.strip(), f"{path}:{number}")
    return classes


def job_resources(spec: JobSpec) -> dict[str, Resource]:
    """The resources of one job: class ``default``, then ``spec.job_class``, then the options."""
    resources: dict[str, Resource] = {}
    if spec.config is not None:
        classes = read_slurm_conf(spec.config)
        resources.update(classes.get("default", {}))
        if spec.job_class != "default":
            resources.update(classes.get(spec.job_class, {}))
    option = {key: name for name, key in RESOURCE_OPTIONS.items()}
    for key, value in spec.resources.items():
        resources[key] = Resource(value, option.get(key, key))
    for key, resource in resources.items():
        _check_resource(key, resource)
    return resources


def _check_resource(key: str, resource: Resource) -> None:
    value, where = resource.value, resource.origin
    if key in _INTEGER_KEYS:
        if not value.isdigit() or int(value) < _INTEGER_KEYS[key]:
            raise ConfigError(
                f"launch: {key} must be an integer >= {_INTEGER_KEYS[key]}, got {value!r} ({where})"
            )
    elif key == "mem" and not _MEM.match(value):
        raise ConfigError(f"launch: mem must look like 4G or 500M, got {value!r} ({where})")
    elif key == "time" and not _TIME.match(value):
        raise ConfigError(
            f"launch: time must be minutes, [D-]H:M:S or similar, got {value!r} ({where})"
        )


def sbatch_options(resources: dict[str, Resource]) -> list[str]:
    """The sbatch options of the resources (``extra`` verbatim, last)."""
    value = {key: r.value for key, r in resources.items()}
    options = []
    if "partition" in value:
        options.append(f"--partition={value['partition']}")
    if "nodes" in value:
        options.append(f"--nodes={value['nodes']}")
    if "ntasks" in value:
        options.append(f"--ntasks={value['ntasks']}")
    if "cpus" in value:
        options.append(f"--cpus-per-task={value['cpus']}")
    if int(value.get("gpus", "0")) > 0:
        options.append(f"--gres=gpu:{value['gpus']}")
    if "mem" in value:
        options.append(f"--mem={value['mem']}")
    if "time" in value:
        options.append(f"--time={value['time']}")
    if value.get("extra"):
        options.append(value["extra"])
    return options


def array_range(indices: list[int], max_jobs_run: int = 0) -> str:
    """``1-3`` or ``2,5,7`` (consecutive runs collapsed), with ``%max_jobs_run`` when bounded."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"{text}%{max_jobs_run}" if max_jobs_run > 0 else text


def queue_dir(spec: JobSpec) -> tuple[Path, str]:
    """Where the batch scripts go (``<log dir>/q``) and their base name (``x`` for x.JOB.log)."""
    log = Path(spec.log_path)
    parent = log.parent
    if spec.variable is not None:
        while parent != parent.parent and re.search(rf"\b{spec.variable}\b", str(parent)):
            parent = parent.parent
    name = log.name
    if spec.variable is not None:
        name = re.sub(rf"[._-]?\b{re.escape(spec.variable)}\b", "", name)
    name = re.sub(r"\.log$", "", name) or "job"
    return Path(os.path.abspath(parent)) / "q", name


def exported_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The variables written into the batch script (no secrets, no Slurm job variables)."""
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in sorted(env.items()) if _EXPORTED.match(k) and not _SECRET.search(k)}


def batch_script(
    spec: JobSpec,
    indices: list[int],
    resources: dict[str, Resource],
    output: str,
    attempt: int = 0,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """The text of the sbatch script running tasks ``indices`` of ``spec``."""
    cwd = os.getcwd() if cwd is None else cwd
    is_array = spec.variable is not None
    name = queue_dir(spec)[1]
    lines = [
        "#!/usr/bin/env bash",
        "# Written by speechkd's launcher (local/launch.sh --backend slurm); resubmit with sbatch.",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --chdir={cwd}",
        f"#SBATCH --output={output}",
    ]
    if is_array:
        lines.append(f"#SBATCH --array={array_range(indices, spec.max_jobs_run)}")
    lines += [f"#SBATCH {option}" for option in sbatch_options(resources)]
    lines += ["set -e", f"cd {shlex.quote(cwd)}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in exported_environment(env).items()]
    # a job that is not an array may inherit SLURM_ARRAY_TASK_ID from an enclosing array task
    lines.append("task=$SLURM_ARRAY_TASK_ID" if is_array else f"task={indices[0]}")
    lines.append('case "$task" in')
    for index in indices:
        log, command = shlex.quote(spec.log_for(index)), shlex.quote(spec.command_for(index))
        lines.append(f"  {index}) log={log}; cmd={command} ;;")
    lines.append('  *) echo "$0: no task $task in this script" >&2; exit 2 ;;')
    lines.append("esac")
    if is_array:
        lines.append(
            f'export SPEECHKD_JOB_INDEX="$task" SPEECHKD_NUM_JOBS={spec.last - spec.first + 1}'
        )
        where = "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else:
        where = "${SLURM_JOB_ID}"
    threads = resources["cpus"].value if "cpus" in resources else "1"
    retry = f"\n  echo '# retry {attempt} of {spec.retries}'" if attempt else ""
    lines.append(
        f"""mkdir -p "$(dirname "$log")"
now() {{ date '+%a %b %d %H:%M:%S %Y'; }}
start=$(date +%s)
{{
  printf '# %s\\n' "$cmd"
  echo "# Started at $(now)"
  echo "# Running on $(hostname) as Slurm job {where}"{retry}
  echo '#'
}} >"$log"
trap 'echo "# Received SIGTERM (time limit, preemption or scancel)" >>"$log"' TERM
ret=0
bash -c "$cmd" >>"$log" 2>&1 </dev/null || ret=$?
elapsed=$(( $(date +%s) - start ))
echo "# Accounting: time=$elapsed threads={threads}" >>"$log"
echo "# Ended (code $ret) at $(now), elapsed time $elapsed seconds" >>"$log"
exit "$ret"
"""
    )
    return "\n".join(lines)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def submit(script: Path) -> str:
    """``sbatch --parsable script``; returns the job id or raises with sbatch's message."""
    result = _run(["sbatch", "--parsable", str(script)])
    job_id = result.stdout.strip().split(";")[0]
    if result.returncode != 0 or not job_id.isdigit():
        message = (result.stderr or result.stdout).strip()
        raise LaunchError(f"launch: sbatch refused {script}: {message}")
    return job_id


def wait_for(
    job_id: str, poll: float = 0.5, max_poll: float = 10.0, give_up_after: float = 1800.0
) -> None:
    """Return once job ``job_id`` (all its array tasks) has left Slurm's queue."""
    delay, failing_since = poll, None
    warned: set[str] = set()
    while True:
        result = _run(["squeue", "-h", "-j", job_id, "-o", "%i %T %r"])
        if result.returncode == 0 and not result.stdout.strip():
            return
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            task, state, reason = (line.split(None, 2) + ["", ""])[:3]
            if state == "PENDING" and reason in _HOPELESS and reason not in warned:
                warned.add(reason)
                print(
                    f"launch: Slurm job {task} is pending with reason {reason}: the request "
                    f"exceeds what the partition or account allows and may never run "
                    f"(scontrol show job {job_id}; scancel {job_id})",
                    file=sys.stderr,
                )
        if result.returncode != 0 and "Invalid job id" in result.stderr:
            return  # finished and already purged from slurmctld's memory
        if result.returncode != 0:
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
                logger.warning("squeue failed, retrying: %s", result.stderr.strip())
            elif now - failing_since > give_up_after:
                raise LaunchError(
                    f"launch: squeue has failed for {give_up_after:.0f} s while waiting for job "
                    f"{job_id}: {result.stderr.strip()}"
                )
        else:
            failing_since = None
        time.sleep(delay)
        delay = min(max_poll, delay * 1.25)


def read_footer(log: str | Path) -> int | None:
    """The exit code of the ``# Ended (code N)`` line at the end of a task log, if any."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    codes = _ENDED.findall(tail)
    return int(codes[-1]) if codes else None


def _exit_code(state: str, exit_code: str) -> int:
    """Slurm's ``State`` and ``ExitCode`` (``code:signal``) as a shell-style exit code."""
    code, _, sig = exit_code.partition(":")
    value = 128 + int(sig) if sig.isdigit() and int(sig) > 0 else int(code or 0)
    if value == 0 and not state.startswith(_FINISHED_STATES):
        value = 1
    return value


def slurm_states(job_id: str, indices: list[int], is_array: bool) -> dict[int, tuple[str, int]]:
    """``(state, exit code)`` per task index from sacct, else from ``scontrol show job``."""
    states: dict[int, tuple[str, int]] = {}
    key = {f"{job_id}_{i}" if is_array else job_id: i for i in indices}
    result = _run(["sacct", "-j", job_id, "--format=JobID,State,ExitCode", "-P", "-n"])
    if result.returncode == 0:
        for line in result.stdout.splitlines():
            fields = line.split("|")
            if len(fields) == 3 and fields[0] in key:
                states[key[fields[0]]] = (fields[1], _exit_code(fields[1], fields[2]))
    missing = [i for i in indices if i not in states]
    if missing:
        result = _run(["scontrol", "-o", "show", "job", job_id])
        for line in result.stdout.splitlines() if result.returncode == 0 else []:
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            task = fields.get("ArrayTaskId", "")
            index = int(task) if task.isdigit() else (indices[0] if not is_array else None)
            if index in missing and "JobState" in fields:
                state = fields["JobState"]
                states[index] = (state, _exit_code(state, fields.get("ExitCode", "0:0")))
    return states


def exit_codes(
    spec: JobSpec, indices: list[int], job_id: str, output_for: dict[int, str], settle: float = 3.0
) -> dict[int, int]:
    """Each task's exit code: its log's footer, else what Slurm says (explained on stderr)."""
    codes = {i: read_footer(spec.log_for(i)) for i in indices}
    deadline = time.monotonic() + settle  # shared file systems may show a log late
    while any(c is None for c in codes.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
        codes.update({i: read_footer(spec.log_for(i)) for i, c in codes.items() if c is None})
    missing = [i for i, c in codes.items() if c is None]
    if missing:
        states = slurm_states(job_id, missing, spec.variable is not None)
        for index in missing:
            state, code = states.get(index, ("unknown to sacct and scontrol", 1))
            codes[index] = code
            print(
                f"launch: task {index}: no '# Ended' line in {spec.log_for(index)}; "
                f"Slurm: {state}, exit code {code}; Slurm's output: {output_for[index]}",
                file=sys.stderr,
            )
    return {i: int(c) for i, c in codes.items() if c is not None}


class _Terminated(Exception):
    pass


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated(signum)


def run_attempt(
    spec: JobSpec, indices: list[int], attempt: int, poll: float = 0.5
) -> dict[int, int]:
    """Submit tasks ``indices`` as one sbatch job, wait for it, return their exit codes."""
    resources = job_resources(spec)
    qdir, name = queue_dir(spec)
    qdir.mkdir(parents=True, exist_ok=True)
    suffix = f".retry{attempt}" if attempt else ""
    script = qdir / f"{name}{suffix}.sh"
    if spec.variable is not None:
        output = str(qdir / f"{name}{suffix}.%a.out")
        output_for = {i: output.replace("%a", str(i)) for i in indices}
    else:
        output = str(qdir / f"{name}{suffix}.out")
        output_for = {i: output for i in indices}
    for index in indices:  # no footer of an earlier run may be read back
        Path(spec.log_for(index)).unlink(missing_ok=True)
    script.write_text(batch_script(spec, indices, resources, output, attempt), encoding="utf-8")
    try:
        job_id = submit(script)
    except LaunchError as err:
        origins = ", ".join(f"{k}={r.value} ({r.origin})" for k, r in resources.items())
        raise LaunchError(f"{err}\nlaunch: resources asked for: {origins or 'none'}") from None
    logger.info("submitted %s as Slurm job %s", script, job_id)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        wait_for(job_id, poll=poll)
    except (KeyboardInterrupt, _Terminated) as err:
        _run(["scancel", job_id])
        how = "SIGTERM" if isinstance(err, _Terminated) else "SIGINT"
        raise LaunchError(f"launch: interrupted by {how}; cancelled Slurm job {job_id}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return exit_codes(spec, indices, job_id, output_for)


def run_slurm(spec: JobSpec, poll: float = 0.5) -> dict[int, int]:
    """Run every task of ``spec`` on Slurm (with retries); returns the exit code per index."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise ConfigError(
            "launch: the slurm backend needs sbatch and squeue on PATH (Slurm's client "
            "commands); install them, or use --backend local (speechkd_backend=local in cmd.sh)"
        )
    job_resources(spec)  # configuration errors before anything is submitted
    codes: dict[int, int] = {}
    pending = spec.indices
    for attempt in range(spec.retries + 1):
        if attempt:
            print(
                f"launch: resubmitting {len(pending)} failed task(s) {array_range(pending)} "
                f"(retry {attempt} of {spec.retries})",
                file=sys.stderr,
            )
        codes.update(run_attempt(spec, pending, attempt, poll=poll))
        pending = [i for i in pending if codes[i] != 0]
        if not pending:
            break
    return codes
