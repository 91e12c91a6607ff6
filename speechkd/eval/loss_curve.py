"""The loss curve of a training run: training loss per logged step, dev loss per epoch (PNG).

Drawn with matplotlib's Agg backend and written atomically, so a viewer never sees half a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from speechkd.utils.atomic import atomic_path


def plot_loss_curve(
    train: Sequence[tuple[int, float]],
    dev: Sequence[tuple[int, float]],
    out: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Write ``out`` (PNG): ``train`` (step, loss) as a line, ``dev`` (step, loss) as points.

    ``dev`` holds one point per epoch at the optimizer step that ended it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    if train:
        steps, losses = zip(*train, strict=True)
        ax.plot(steps, losses, lw=1.2, color="tab:blue", label="train loss (logged steps)")
    if dev:
        steps, losses = zip(*dev, strict=True)
        ax.plot(steps, losses, "o-", color="tab:orange", label="dev loss (end of epoch)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title, fontsize=10)
    if train or dev:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out = Path(out)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(fig)
    return out
