"""Whether a trained system learned anything: a zero update is a collapse, not a result.

A system is collapsed when any of these shows that its learned update is zero:

* its merged model equals the model it started from: the relative weight change
  ‖θ − θ₀‖ / ‖θ₀‖ over every tensor of the two models' safetensors files is at most
  ``UPDATE_RTOL`` (float32 rounding; a few real optimizer steps change it by orders of
  magnitude more);
* rank 0 in every adapted matrix (S2-LoRA coefficients |s_k| below 1e-4, AdaLoRA singular values
  all zero).

Its decodes are then those of the starting model and must not be read as the method's result.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from speechkd.errors import DataError
from speechkd.eval.report_inputs import load_json_object

UPDATE_RTOL = 1e-6


def weight_files(model_dir: str | os.PathLike) -> dict[str, Path]:
    """Tensor name → safetensors file of a ``save_pretrained`` directory (sharded or not)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise DataError(f"{model_dir}: no safetensors weights")
    names: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            names.update((name, path) for name in f.keys())
    return names


def relative_update(model_dir: str | os.PathLike, start_dir: str | os.PathLike) -> float:
    """‖θ − θ₀‖ / ‖θ₀‖ over all tensors of ``model_dir`` (θ) and ``start_dir`` (θ₀), read one
    tensor at a time; the two must hold the same tensor names and shapes."""
    from safetensors import safe_open

    mine, start = weight_files(model_dir), weight_files(start_dir)
    if set(mine) != set(start):
        odd = sorted(set(mine) ^ set(start))
        raise DataError(f"{model_dir} and {start_dir} hold different tensors, e.g. {odd[:3]}")
    diff2 = ref2 = 0.0
    with contextlib.ExitStack() as stack:
        handles = {
            path: stack.enter_context(safe_open(str(path), framework="pt"))
            for path in {*mine.values(), *start.values()}
        }
        for name in sorted(mine):
            x = handles[mine[name]].get_tensor(name).double()
            x0 = handles[start[name]].get_tensor(name).double()
            if x.shape != x0.shape:
                raise DataError(
                    f"{name}: shape {tuple(x.shape)} in {model_dir}, {tuple(x0.shape)} in "
                    f"{start_dir}"
                )
            diff2 += float((x - x0).square().sum())
            ref2 += float(x0.square().sum())
    return math.sqrt(diff2 / ref2) if ref2 > 0 else math.sqrt(diff2)


def decoded_model_dir(decode_dir: str | os.PathLike, sets: Sequence[str]) -> Path | None:
    """The model a decode directory's ``scores-<set>.json`` files name (``model_dir``), if one
    of them names an existing directory."""
    for set_name in sets:
        path = Path(decode_dir) / f"scores-{set_name}.json"
        if not path.is_file():
            continue
        model_dir = load_json_object(path, "scores file").get("model_dir")
        if isinstance(model_dir, str) and Path(model_dir).is_dir():
            return Path(model_dir)
    return None


def zero_rank(per_matrix: Mapping[str, Sequence[int]]) -> bool:
    """Whether every adapted matrix (every layer of every matrix type) has rank 0."""
    values = [v for ranks in per_matrix.values() for v in ranks]
    return bool(values) and not any(values)


def collapse_reason(
    update: float | None, per_matrix: Mapping[str, Sequence[int]] | None = None
) -> str | None:
    """Why a system's learned update is zero (None: not collapsed, or nothing to tell).

    ``update``: its :func:`relative_update` against the starting model (None: unknown);
    ``per_matrix``: its ranks per matrix type and layer (None: not a rank-adaptive method).
    """
    reasons = []
    if per_matrix is not None and zero_rank(per_matrix):
        n = sum(len(ranks) for ranks in per_matrix.values())
        reasons.append(f"rank 0 in all {n} adapted matrices")
    if update is not None and update <= UPDATE_RTOL:
        reasons.append(f"the merged model equals the starting model (weight change {update:.1e})")
    return "; ".join(reasons) or None


__all__ = [
    "UPDATE_RTOL",
    "collapse_reason",
    "decoded_model_dir",
    "relative_update",
    "weight_files",
    "zero_rank",
]
