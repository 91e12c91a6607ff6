"""Progress of training runs: ETA text, the loss-curve PNG, launcher log paths, TensorBoard."""

from __future__ import annotations

import importlib.util
import math
import subprocess
from pathlib import Path

import pytest

from speechkd.eval.loss_curve import plot_loss_curve
from speechkd.whisper.trainer import format_duration

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "0s"), (12, "12s"), (185, "3m05s"), (3720, "1h02m"), (math.nan, "?")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_loss_curve_png_is_written_atomically(tmp_path: Path) -> None:
    out = tmp_path / "exp" / "loss-curve.png"
    plot_loss_curve([(1, 5.0), (2, 4.0), (3, 3.5)], [(2, 4.2), (4, 3.9)], out, title="exp")
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in out.parent.iterdir()] == ["loss-curve.png"]  # no temporary left
    plot_loss_curve([], [], out)  # nothing logged yet: an empty chart
    assert out.stat().st_size > 0


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_launcher_prints_each_task_log_path(tmp_path: Path) -> None:
    out = _bash(f"{ROOT}/local/launch.sh --max-jobs-run 1 JOB=1:2 log/p.JOB.log echo JOB", tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("launch: ")
    assert lines[0].endswith("task 1 started, log: log/p.1.log")
    assert lines[1].endswith("task 2 started, log: log/p.2.log")
    single = _bash(f"{ROOT}/local/launch.sh log/one.log true", tmp_path)
    assert single.stderr.rstrip().endswith(" started, log: log/one.log")
    assert out.stdout == single.stdout == ""


def test_tensorboard_importable_follows_the_environment(tmp_path: Path) -> None:
    installed = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
    out = _bash(
        f". {ROOT}/path.sh >/dev/null 2>&1; . {ROOT}/local/stage_lib.sh; "
        "tensorboard_importable && echo yes || echo no",
        ROOT,
    )
    assert out.stdout.strip() == ("yes" if installed else "no"), out.stderr
    for recipe in ("distill_w2v2.sh", "st_kd.sh"):
        text = (ROOT / "local" / "recipes" / recipe).read_text()
        assert "tensorboard_importable && tb=(" in text and '"${tb[@]}"' in text, recipe
