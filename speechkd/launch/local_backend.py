"""Run a job array as local processes, at most ``max_jobs_run`` at a time."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechkd.launch.spec import JobSpec


def _now() -> str:
    return datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Z %Y").replace("  ", " ")


def announce(spec: JobSpec, index: int, attempt: int = 0) -> None:
    """Tell stderr that a task starts and where its log is (to follow it with ``tail -f``)."""
    task = f"task {index} " if spec.variable is not None else ""
    retry = f" (retry {attempt} of {spec.retries})" if attempt else ""
    print(
        f"launch: {_clock()} {task}started{retry}, log: {spec.log_for(index)}",
        file=sys.stderr,
        flush=True,
    )


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def run_task(spec: JobSpec, index: int) -> int:
    """Run one task with its output in its log file (Kaldi run.pl header and footer)."""
    log = Path(spec.log_for(index))
    log.parent.mkdir(parents=True, exist_ok=True)
    command = spec.command_for(index)
    env = dict(os.environ)
    if spec.variable is not None:
        env["SPEECHKD_JOB_INDEX"] = str(index)
        env["SPEECHKD_NUM_JOBS"] = str(spec.last - spec.first + 1)
    returncode = 1
    for attempt in range(spec.retries + 1):
        start = time.time()
        announce(spec, index, attempt)
        with open(log, "w", encoding="utf-8") as f:
            f.write(f"# {command}\n# Started at {_now()}\n")
            if attempt:
                f.write(f"# retry {attempt} of {spec.retries}\n")
            f.write("#\n")
            f.flush()
            proc = subprocess.run(
                ["bash", "-c", command],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            returncode = proc.returncode
            elapsed = time.time() - start
            f.write(f"# Accounting: time={elapsed:.0f} threads=1\n")
            f.write(
                f"# Ended (code {returncode}) at {_now()}, elapsed time {elapsed:.0f} seconds\n"
            )
        if returncode == 0:
            break
    return returncode


def run_local(spec: JobSpec) -> dict[int, int]:
    """Run every task of ``spec``; returns the exit code per index."""
    workers = spec.max_jobs_run if spec.max_jobs_run > 0 else len(spec.indices)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        codes = list(pool.map(lambda i: run_task(spec, i), spec.indices))
    return dict(zip(spec.indices, codes, strict=True))
