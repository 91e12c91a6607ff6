"""``--shard J/N`` of job-array stages: which of N near-equal parts a task processes."""

from __future__ import annotations

from speechkd.errors import ConfigError


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"J/N"`` (1 <= J <= N) into ``(J, N)``."""
    try:
        job, num = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like J/N (e.g. 2/4), got {text!r}") from None
    if not 1 <= job <= num:
        raise ConfigError(f"--shard {text}: need 1 <= J <= N")
    return job, num
