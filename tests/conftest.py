"""Test-wide settings: offline hubs, deterministic seeds, repository paths."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
        # tiny models: one thread is faster and steadier than two competing ones
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is always installed by local/install.sh
        pass


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory: pytest.TempPathFactory):
    """egs/mini/run.sh stages 0-100 at tiny scale with tiny foundation models: (dir, process)."""
    from tests.mini_recipe import run_mini

    tmp = tmp_path_factory.mktemp("mini")
    return tmp, run_mini(tmp, "--stage", "0", "--stop-stage", "100")
