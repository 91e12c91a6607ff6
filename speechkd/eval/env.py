"""The software and hardware a result was produced on, and the git revision (for RESULTS.md).

Package versions come from the installed distributions' metadata, so nothing heavy is imported;
the GPU is what ``nvidia-smi`` lists (none without it).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    ("torch", ("torch",)),
    ("transformers", ("transformers",)),
    ("lhotse", ("lhotse",)),
    ("fairseq", ("fairseq-fixed", "fairseq")),
    ("peft", ("peft",)),
    ("sacrebleu", ("sacrebleu",)),
    ("kaldialign", ("kaldialign",)),
    ("openai-whisper", ("openai-whisper",)),
)


def package_version(distributions: tuple[str, ...]) -> str:
    """Version of the first installed distribution of ``distributions``, else "not installed"."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux) and the number of logical CPUs."""
    name = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    name = name or platform.processor() or platform.machine() or "unknown"
    return f"{name} ({os.cpu_count()} logical CPUs)"


def gpu_names() -> list[str]:
    """GPU names reported by ``nvidia-smi``; empty when there is none (or no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def git_revision(repo_dir: str | os.PathLike = ".") -> dict[str, object] | None:
    """``{"hash": ..., "dirty": bool}`` of the checkout at ``repo_dir``; None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"hash": head, "dirty": bool(status.strip())}


def collect_environment() -> dict[str, object]:
    """Python, key package versions, CPU, GPUs and OS."""
    return {
        "python": platform.python_version(),
        "packages": {label: package_version(dists) for label, dists in PACKAGES},
        "cpu": cpu_model(),
        "gpus": gpu_names(),
        "os": platform.platform(),
    }
