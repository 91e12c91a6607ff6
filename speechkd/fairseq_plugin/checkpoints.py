"""Loading fairseq checkpoints: the one documented exception to ``weights_only`` loading.

A fairseq checkpoint (``checkpoint_best.pt``, a public wav2vec2/mBART release) stores its config
and task state as pickled Python objects, so it can only be read with full unpickling. speechkd
therefore loads one only when the caller says the file is trusted (``trust_pickle=True``, the
``--trust-fairseq-checkpoint`` flag of the recipes); otherwise it refuses with a ConfigError.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from speechkd.errors import ConfigError, DataError


def check_trusted(path: str | os.PathLike, trust_pickle: bool) -> Path:
    """The checkpoint path, after checking it exists and the caller trusts its pickle."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: fairseq checkpoint not found")
    if not trust_pickle:
        raise ConfigError(
            f"{path}: fairseq checkpoints are pickles and can run code when loaded; pass "
            "trust_pickle=True (recipes: --trust-fairseq-checkpoint true) for files you trust"
        )
    return path


@contextmanager
def trusted_pickle_loads(trusted: bool) -> Iterator[None]:
    """Inside, fairseq's own ``torch.load`` calls (which pass no ``weights_only``) unpickle fully.

    torch >= 2.6 defaults to ``weights_only=True``, which refuses the pickled ``Namespace`` /
    ``DictConfig`` of public fairseq checkpoints; use only around files accepted by
    :func:`check_trusted`.
    """
    if not trusted:
        yield
        return
    with mock.patch.dict(os.environ, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}):
        yield


def student_shape_overrides(path: Path) -> dict:
    """Output size and prediction-layer width of a saved ``speechkd_w2v2_student``, read from its
    weights: a student initialised from a teacher takes them from the teacher when it is created,
    and the config that fairseq saves does not record them."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)  # trusted by the caller
    cfg = state.get("cfg") or {}
    model_cfg = cfg.get("model") if isinstance(cfg, dict) else None
    weights = state.get("model") or {}
    if not isinstance(model_cfg, dict) or model_cfg.get("_name") != "speechkd_w2v2_student":
        return {}
    output = weights.get("output_proj.weight")
    if output is None:
        return {}
    has_adapter = "pred_adapter.weight" in weights
    return {
        "num_outputs": int(output.shape[0]),
        "pred_dim": int(output.shape[1]) if has_adapter else 0,
    }


def load_fairseq_model(
    path: str | os.PathLike, trust_pickle: bool, arg_overrides: dict | None = None
):
    """(model, cfg, task) of a trusted fairseq checkpoint, on CPU, in eval mode.

    A saved model is rebuilt without re-running its initialisation from another checkpoint
    (``init_from`` of speechkd's students is overridden with None).
    """
    from fairseq import checkpoint_utils

    path = check_trusted(path, trust_pickle)
    overrides = {"init_from": None, **student_shape_overrides(path), **(arg_overrides or {})}
    try:
        with trusted_pickle_loads(True):
            models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
                [str(path)], arg_overrides=overrides
            )
    except (KeyError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: not a readable fairseq checkpoint ({exc})") from exc
    model = models[0].eval()
    return model, cfg, task
