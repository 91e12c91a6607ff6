"""torch.distributed set-up from the launcher's environment: torchrun, Slurm ``srun``, or none.

* **torchrun** (or any ``env://`` launcher) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR`` and ``MASTER_PORT``; they win over everything else (so ``srun torchrun ...``,
  one task per node, works too).
* **Slurm**: every task started by ``srun`` has ``SLURM_PROCID`` (rank), ``SLURM_LOCALID`` (rank
  on its node) and ``SLURM_STEP_NUM_TASKS`` (world size; ``SLURM_NTASKS`` when a site does not
  export the step variable but an ``srun`` step is recognisable by ``SLURM_STEP_ID``). The
  rendezvous host is the first host of ``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``),
  expanded with ``scontrol show hostnames`` (a built-in parser when scontrol is absent); the port
  is ``MASTER_PORT`` if set, else derived from the job and step ids. The batch script itself (no
  ``srun`` step) is a single process even though ``SLURM_NTASKS`` > 1 there.
* Otherwise: one process, nothing is initialised.

The backend is ``nccl`` when the process trains on CUDA, else ``gloo`` (CPU). Each CUDA process
uses the GPU ``cuda:<local rank>`` (``cuda:0`` when the launcher already restricted
``CUDA_VISIBLE_DEVICES`` to one GPU per task). Use :func:`init_distributed` once per process (the
Whisper trainer calls it itself) and :func:`teardown_distributed` at the end (also registered at
exit).
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from speechkd.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 29500
_SLURM_PORT_BASE, _SLURM_PORT_RANGE = 20000, 20000


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    launcher: str = "none"  # "torchrun" | "slurm" | "none"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _int(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def expand_hostlist(nodelist: str) -> list[str]:
    """Host names of a Slurm node list such as ``gpu[01-03,7],login1`` (no scontrol needed)."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?([^,]*)", nodelist):
        prefix, ranges, suffix = match.group(1), match.group(2), match.group(3)
        if not ranges:
            hosts.append(prefix + suffix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            if not high:
                hosts.append(f"{prefix}{low}{suffix}")
                continue
            width = len(low)
            for number in range(int(low), int(high) + 1):
                hosts.append(f"{prefix}{number:0{width}d}{suffix}")
    return hosts


def first_host(nodelist: str) -> str:
    """First host of a Slurm node list: ``scontrol show hostnames`` if available, else parsed."""
    scontrol = shutil.which("scontrol")
    if scontrol is not None:
        try:
            out = subprocess.run(
                [scontrol, "show", "hostnames", nodelist],
                check=True,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError) as err:
            logger.warning("scontrol show hostnames %s failed (%s): parsing it", nodelist, err)
        else:
            if out:
                return out[0]
    hosts = expand_hostlist(nodelist)
    if not hosts:
        raise ConfigError(f"Slurm node list {nodelist!r} names no host")
    return hosts[0]


def _slurm_port(environ: Mapping[str, str]) -> int:
    if "MASTER_PORT" in environ:
        return _int(environ, "MASTER_PORT")
    job = int(environ.get("SLURM_JOB_ID", "0") or 0)
    step = int(re.sub(r"\D", "", environ.get("SLURM_STEP_ID", "0")) or 0)
    return _SLURM_PORT_BASE + (job * 31 + step) % _SLURM_PORT_RANGE


def detect_distributed_env(
    environ: Mapping[str, str] | None = None, resolve_host: bool = True
) -> DistributedEnv:
    """The process's rank and world from torchrun's or Slurm's variables (see the module doc).

    ``resolve_host=False`` leaves a Slurm job's ``master_addr`` unresolved (no scontrol call)
    when only the ranks are needed.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistributedEnv(
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE"),
            local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=_int(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_PORT,
            launcher="torchrun",
        )
    if "SLURM_PROCID" in env:
        if "SLURM_STEP_NUM_TASKS" in env:
            world = _int(env, "SLURM_STEP_NUM_TASKS")
        elif "SLURM_STEP_ID" in env and "SLURM_NTASKS" in env:
            world = _int(env, "SLURM_NTASKS")
        else:
            world = 1  # the batch script of an allocation, not an srun task
        if world > 1:
            nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
            if not nodelist:
                raise ConfigError(
                    "Slurm task without SLURM_STEP_NODELIST / SLURM_JOB_NODELIST: cannot find the "
                    "rendezvous host"
                )
            return DistributedEnv(
                rank=_int(env, "SLURM_PROCID"),
                world_size=world,
                local_rank=_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
                master_addr=env.get("MASTER_ADDR")
                or (first_host(nodelist) if resolve_host else nodelist),
                master_port=_slurm_port(env),
                launcher="slurm",
            )
    return DistributedEnv()


def local_device(env: DistributedEnv, device: str | torch.device | None = None) -> torch.device:
    """The device of this process: ``device`` if it names an index or the CPU; else its GPU.

    ``None`` means CUDA when available, else CPU; a bare ``"cuda"`` becomes ``cuda:<local rank>``
    (modulo the visible GPUs, so one GPU per task under Slurm is ``cuda:0``).
    """
    if device is not None and str(device) != "cuda":
        return torch.device(device)
    if device is None and not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    return torch.device("cuda", env.local_rank % count if count else 0)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if get_world_size() > 1:
        dist.barrier()


def init_distributed(
    device: str | torch.device | None = None,
    backend: str | None = None,
    timeout_s: float = 1800.0,
    environ: Mapping[str, str] | None = None,
) -> DistributedEnv:
    """Initialise the default process group from the environment when the job has > 1 process.

    Returns the detected :class:`DistributedEnv` (a single-process one does nothing). An already
    initialised group is kept (its rank and size are returned). ``backend``: default ``nccl`` on
    CUDA, ``gloo`` on CPU.
    """
    env = detect_distributed_env(environ)
    if is_initialized():
        return DistributedEnv(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=env.local_rank,
            master_addr=env.master_addr,
            master_port=env.master_port,
            launcher=env.launcher,
        )
    if not env.is_distributed:
        return env
    if not 0 <= env.rank < env.world_size:
        raise ConfigError(f"rank {env.rank} is outside the world of {env.world_size} processes")
    target = local_device(env, device)
    if backend is None:
        backend = "nccl" if target.type == "cuda" else "gloo"
    if target.type == "cuda":
        torch.cuda.set_device(target)
    os.environ["MASTER_ADDR"] = env.master_addr
    os.environ["MASTER_PORT"] = str(env.master_port)
    logger.info(
        "Initialising torch.distributed (%s, %s): rank %d of %d, local rank %d, %s:%d",
        env.launcher,
        backend,
        env.rank,
        env.world_size,
        env.local_rank,
        env.master_addr,
        env.master_port,
    )
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    atexit.register(teardown_distributed)
    return env


def teardown_distributed() -> None:
    """Destroy the default process group if there is one."""
    if is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device | None = None) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64; identity when alone)."""
    if get_world_size() == 1:
        return [float(v) for v in values]
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if _nccl() else None
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def all_reduce_mean(values: Mapping[str, float], device: torch.device | None = None) -> dict:
    """Mean over all processes of named values (every process must pass the same names)."""
    names = sorted(values)
    sums = all_reduce_sum([values[n] for n in names], device)
    world = get_world_size()
    return {n: s / world for n, s in zip(names, sums, strict=True)}


def _nccl() -> bool:
    return is_initialized() and dist.get_backend() == "nccl"
