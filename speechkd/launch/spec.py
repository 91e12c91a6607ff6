"""Parsing of a Kaldi-style launcher command line into a job-array specification."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from speechkd.errors import ConfigError

_ARRAY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")
# command-line options that override the resources of the job class (conf/slurm.conf keys)
RESOURCE_OPTIONS = {
    "--gpu": "gpus",
    "--mem": "mem",
    "--num-threads": "cpus",
    "--time": "time",
    "--partition": "partition",
    "--ntasks": "ntasks",
    "--nodes": "nodes",
}


@dataclass
class JobSpec:
    """What to run: ``command`` once per index in ``[first, last]`` (``variable`` substituted).

    ``resources`` holds the command-line overrides of the job class's resources, keyed as in
    conf/slurm.conf (``gpus``, ``mem``, ``cpus``, ``time``, ``partition``, ``ntasks``, ``nodes``);
    the local backend ignores them.
    """

    command: list[str]
    log_path: str
    variable: str | None = None
    first: int = 1
    last: int = 1
    backend: str = "local"
    job_class: str = "default"
    max_jobs_run: int = 0
    config: str | None = None
    retries: int = 0
    resources: dict[str, str] = field(default_factory=dict)

    @property
    def indices(self) -> list[int]:
        return list(range(self.first, self.last + 1))

    def substitute(self, text: str, index: int) -> str:
        """Replace the array variable (e.g. ``JOB``) by ``index`` in ``text``."""
        if self.variable is None:
            return text
        return re.sub(rf"\b{re.escape(self.variable)}\b", str(index), text)

    def command_for(self, index: int) -> str:
        """The shell command line of one task.

        A single argument is a shell script run as given (pipes, ``;``); several arguments are a
        command and its arguments, each quoted.
        """
        if len(self.command) == 1:
            return self.substitute(self.command[0], index)
        return " ".join(shlex.quote(self.substitute(arg, index)) for arg in self.command)

    def log_for(self, index: int) -> str:
        return self.substitute(self.log_path, index)


def parse_launch_args(argv: list[str]) -> JobSpec:
    """Parse ``[options] [VAR=a:b] LOG COMMAND...`` as Kaldi's run.pl/slurm.pl do."""
    args = list(argv)
    options: dict[str, str] = {}
    resources: dict[str, str] = {}
    while args and args[0].startswith("--"):
        name = args.pop(0)
        if not args:
            raise ConfigError(f"launch: option {name} needs a value")
        value = args.pop(0)
        if name in RESOURCE_OPTIONS:
            resources[RESOURCE_OPTIONS[name]] = value
        elif name in ("--backend", "--class", "--max-jobs-run", "--config", "--retries"):
            options[name] = value
        else:
            valid = sorted(
                [
                    *RESOURCE_OPTIONS,
                    "--backend",
                    "--class",
                    "--max-jobs-run",
                    "--config",
                    "--retries",
                ]
            )
            raise ConfigError(f"launch: unknown option {name}; valid options: {' '.join(valid)}")
    variable, first, last = None, 1, 1
    if args and (match := _ARRAY.match(args[0])):
        variable, first, last = match.group(1), int(match.group(2)), int(match.group(3))
        args.pop(0)
        if last < first:
            raise ConfigError(f"launch: empty job range {variable}={first}:{last}")
    if len(args) < 2:
        raise ConfigError("launch: usage: launch.sh [options] [JOB=1:N] LOG COMMAND [ARGS...]")
    log_path, command = args[0], args[1:]
    if variable is not None and variable not in log_path and last > first:
        raise ConfigError(f"launch: the log path {log_path} must contain {variable} for an array")
    try:
        max_jobs = int(options.get("--max-jobs-run", "0"))
        retries = int(options.get("--retries", "0"))
    except ValueError as err:
        raise ConfigError(f"launch: --max-jobs-run/--retries must be integers ({err})") from None
    return JobSpec(
        command=command,
        log_path=log_path,
        variable=variable,
        first=first,
        last=last,
        backend=options.get("--backend", "local"),
        job_class=options.get("--class", "default"),
        max_jobs_run=max_jobs,
        config=options.get("--config"),
        retries=retries,
        resources=resources,
    )
