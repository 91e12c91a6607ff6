"""Command-line launcher behind ``local/launch.sh`` (and so ``$train_cmd``/``$cuda_cmd``).

Usage: ``launch.sh [--backend local|slurm] [--max-jobs-run N] [--gpu G] [--mem M]
[--num-threads T] [--time T] [--partition P] [--ntasks N] [--nodes M] [--class C]
[--config conf/slurm.conf] [--retries R] [JOB=1:N] LOG COMMAND...``.
Every occurrence of the array variable (``JOB``) in LOG and COMMAND is replaced by the task index.
The exit status is 0 only if every task succeeded (1 otherwise, each failed task named with its log
and exit code); 2 for a usage, configuration or submission error.

Backends: ``local`` runs the tasks as processes here, at most ``--max-jobs-run`` at once; ``slurm``
submits them as one ``sbatch --array`` (see :mod:`speechkd.launch.slurm_backend`) with the
resources of ``--class`` in ``--config`` (partition, gpus, cpus, mem, time, extra), which
``--gpu``/``--num-threads``/``--mem``/``--time``/``--partition`` override. ``--ntasks``/``--nodes``
ask Slurm for a multi-task allocation in which the command starts its processes with ``srun``;
the local backend ignores every resource option.
"""

from __future__ import annotations

import sys

from speechkd.errors import ConfigError, SpeechKDError
from speechkd.launch.local_backend import run_local
from speechkd.launch.slurm_backend import run_slurm
from speechkd.launch.spec import parse_launch_args
from speechkd.utils.cli import run_cli

BACKENDS = ("local", "slurm")


def main(argv: list[str] | None = None) -> int:
    try:
        spec = parse_launch_args(sys.argv[1:] if argv is None else argv)
        if spec.backend not in BACKENDS:
            raise ConfigError(
                f"launch: unknown backend {spec.backend!r}; available: {', '.join(BACKENDS)}"
            )
        codes = run_slurm(spec) if spec.backend == "slurm" else run_local(spec)
    except SpeechKDError as err:
        print(err, file=sys.stderr)
        return 2
    failed = {i: c for i, c in codes.items() if c != 0}
    for index, code in failed.items():
        print(
            f"launch: task {index} failed with exit code {code}; see {spec.log_for(index)}",
            file=sys.stderr,
        )
    if failed:
        print(f"launch: {len(failed)} / {len(codes)} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
