"""fairseq 0.12's ``convert_waveform`` without torchaudio.

fairseq's ``fairseq.data.audio.audio_utils.convert_waveform`` (called by ``get_waveform`` for
every clip its speech-to-text datasets read) imports ``torchaudio.sox_effects`` before looking at
what has to be done, so reading audio fails in an environment without torchaudio even when the
clip is already mono at the requested rate. :func:`convert_waveform` is a drop-in replacement that
applies the same effects, in sox's order, with numpy/scipy:

1. ``normalize_volume`` (sox ``gain -n``): scale so the peak over all channels is 0 dBFS
   (``x / max|x|``; an all-zero clip stays zero);
2. ``to_sample_rate`` != ``sample_rate`` (sox ``rate``): polyphase resampling,
   :func:`scipy.signal.resample_poly` with ``up/down = to_sample_rate/sample_rate`` reduced by
   their gcd (zero-phase Kaiser-windowed FIR, scipy's default window ``("kaiser", 5.0)``), per
   channel; rates must be positive integers;
3. ``to_mono`` with more than one channel (sox ``channels 1``): the mean of the channels.

With nothing to do the input object itself is returned (no copy), like fairseq's. Input and
output are ``(channels, samples)`` numpy arrays or torch tensors (the output has the input's type
and floating dtype). :func:`install` (called when the plugin is imported) replaces the function in
``fairseq.data.audio.audio_utils`` and in already imported modules that bound it by name.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import torch

from speechkd.errors import DataError

_PATCHED_ATTR = "__speechkd_audio_compat__"


def _check_rate(name: str, value: Any) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or float(value) <= 0:
        raise DataError(f"convert_waveform: {name}={value!r} must be a positive integer rate")
    return int(value)


def _resample(x: np.ndarray, sample_rate: int, to_sample_rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(sample_rate, to_sample_rate)
    up, down = to_sample_rate // g, sample_rate // g
    return resample_poly(x, up, down, axis=-1)


def convert_waveform(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    normalize_volume: bool = False,
    to_mono: bool = False,
    to_sample_rate: int | None = None,
) -> tuple[np.ndarray | torch.Tensor, int]:
    """fairseq's ``convert_waveform`` (same signature and result layout) without torchaudio.

    ``waveform``: ``(channels, samples)``. Returns ``(waveform, sample_rate)``; the input itself
    when no effect applies. Raises :class:`DataError` when an effect applies to a waveform that
    is not 2-D or with a rate that is not a positive integer.
    """
    resample = to_sample_rate is not None and to_sample_rate != sample_rate
    downmix = bool(to_mono) and waveform.ndim == 2 and waveform.shape[0] > 1
    if not (normalize_volume or resample or downmix):
        return waveform, sample_rate
    if waveform.ndim != 2:
        raise DataError(
            f"convert_waveform: expected a (channels, samples) waveform, got shape "
            f"{tuple(waveform.shape)}"
        )
    is_tensor = isinstance(waveform, torch.Tensor)
    if is_tensor:
        dtype = waveform.dtype if waveform.is_floating_point() else torch.float32
        x = waveform.detach().cpu().to(torch.float64).numpy()
    else:
        dtype = waveform.dtype if np.issubdtype(waveform.dtype, np.floating) else np.float32
        x = np.asarray(waveform, dtype=np.float64)
    rate = _check_rate("sample_rate", sample_rate)
    if normalize_volume:
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak > 0.0:
            x = x / peak
    if resample:
        target = _check_rate("to_sample_rate", to_sample_rate)
        x = _resample(x, rate, target)
        rate = target
    if downmix:
        x = x.mean(axis=0, keepdims=True)
    if is_tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype=dtype), rate
    return np.ascontiguousarray(x, dtype=dtype), rate


setattr(convert_waveform, _PATCHED_ATTR, True)


def install() -> None:
    """Make fairseq use :func:`convert_waveform` (idempotent)."""
    from fairseq.data.audio import audio_utils

    original = audio_utils.convert_waveform
    if getattr(original, _PATCHED_ATTR, False):
        return
    audio_utils.convert_waveform = convert_waveform
    # modules that did ``from fairseq.data.audio.audio_utils import convert_waveform [as ...]``
    for module in list(sys.modules.values()):
        if module is None or not getattr(module, "__name__", "").startswith(
            ("fairseq", "examples")
        ):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, convert_waveform)


install()
