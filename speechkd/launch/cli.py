"""Command-line launcher behind ``local/launch.sh`` (and so ``$train_cmd``/``$cuda_cmd``).

Usage: ``launch.sh [--backend local] [--max-jobs-run N] [--gpu G] [--mem M] [--num-threads T]
[--time T] [--class C] [--config conf/slurm.conf] [--retries R] [JOB=1:N] LOG COMMAND...``.
Every occurrence of the array variable (``JOB``) in LOG and COMMAND is replaced by the task index.
The exit status is 0 only if every task succeeded; each failed task is named with its log.
"""

from __future__ import annotations

import sys

from speechkd.errors import ConfigError
from speechkd.launch.local_backend import run_local
from speechkd.launch.spec import parse_launch_args
from speechkd.utils.cli import run_cli

BACKENDS = ("local",)


def main(argv: list[str] | None = None) -> int:
    try:
        spec = parse_launch_args(sys.argv[1:] if argv is None else argv)
        if spec.backend not in BACKENDS:
            raise ConfigError(
                f"launch: unknown backend {spec.backend!r}; available: {', '.join(BACKENDS)}"
            )
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    codes = run_local(spec)
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
