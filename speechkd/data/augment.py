"""Waveform augmentation of DistillW2V2: random volume gain and resampling-based pitch shift.

Each utterance independently gets, with probability ``gain_prob`` (0.5), a volume gain drawn
uniformly from ``gain_range`` (0.3 .. 3.0, linear amplitude), and with probability ``pitch_prob``
(0.5) a pitch factor drawn uniformly from ``pitch_range`` (0.9 .. 1.1). The paper's settings are
the defaults.

The pitch shift is resampling-based, i.e. Kaldi/sox-style *speed* perturbation: the waveform is
resampled by ``1 / factor`` and played at the original rate, so every frequency is multiplied by
``factor`` **and the tempo too**: the output has ``len / factor`` samples (a factor of 1.1 gives
a 10 % higher, 10 % shorter utterance). The factor is applied as the nearest ratio ``p / q`` with
``q <= max_denominator`` (1000: relative error at most 5e-4 in 0.9 .. 1.1) by polyphase
filtering (``scipy.signal.resample_poly``, Kaiser-windowed anti-aliasing filter; about 5 ms for
5 s of audio).

The gain is applied to float waveforms without clipping. A model whose input is normalised per
utterance (fairseq's ``task.normalize=true``, e.g. the wav2vec 2.0 large models) cancels it;
models trained on unnormalised audio (wav2vec 2.0 base-style, the tiny recipes) see it.

Draws are reproducible: :func:`sample_rng` seeds a generator from ``(seed, epoch, index)``, so an
utterance gets the same augmentation in a given epoch whatever the data-loader worker or order.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from scipy.signal import resample_poly

from speechkd.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Volume and pitch augmentation settings (defaults: DistillW2V2, Sec. 5.1.3)."""

    gain_range: tuple[float, float] = (0.3, 3.0)
    gain_prob: float = 0.5
    pitch_range: tuple[float, float] = (0.9, 1.1)
    pitch_prob: float = 0.5
    max_denominator: int = 1000

    def __post_init__(self) -> None:
        for name in ("gain_prob", "pitch_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value}: must be a probability in [0, 1]")
        for name in ("gain_range", "pitch_range"):
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ConfigError(f"{name}=({low}, {high}): expected 0 < min <= max")
        if self.max_denominator < 1:
            raise ConfigError(f"max_denominator={self.max_denominator}: expected >= 1")

    @property
    def active(self) -> bool:
        return self.gain_prob > 0.0 or self.pitch_prob > 0.0


@dataclass(frozen=True)
class AugmentParams:
    """What was applied to one utterance (``None``: not applied)."""

    gain: float | None = None
    pitch: float | None = None


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of utterance ``index`` in ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def draw_params(config: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one utterance's augmentation (always four draws, so streams stay aligned)."""
    use_gain, gain = rng.random() < config.gain_prob, rng.uniform(*config.gain_range)
    use_pitch, pitch = rng.random() < config.pitch_prob, rng.uniform(*config.pitch_range)
    return AugmentParams(
        gain=float(gain) if use_gain else None, pitch=float(pitch) if use_pitch else None
    )


def pitch_ratio(factor: float, max_denominator: int = 1000) -> Fraction:
    """The ratio ``p / q`` nearest to ``factor`` with ``q <= max_denominator``."""
    if not factor > 0:
        raise ConfigError(f"pitch factor {factor}: expected > 0")
    return Fraction(factor).limit_denominator(max_denominator)


def pitch_shift(wav: np.ndarray, factor: float, max_denominator: int = 1000) -> np.ndarray:
    """Multiply every frequency (and the tempo) of ``wav`` by ``factor`` by resampling.

    The output has about ``len(wav) / factor`` samples (see the module docstring).
    """
    ratio = pitch_ratio(factor, max_denominator)
    if ratio == 1:
        return wav
    out = resample_poly(wav, up=ratio.denominator, down=ratio.numerator, axis=-1)
    return out.astype(wav.dtype, copy=False)


def apply_augment(
    wav: np.ndarray, params: AugmentParams, max_denominator: int = 1000
) -> np.ndarray:
    """``wav`` (``[..., samples]``) with ``params`` applied: pitch first, then gain."""
    if params.pitch is not None:
        wav = pitch_shift(wav, params.pitch, max_denominator)
    if params.gain is not None:
        wav = wav * np.asarray(params.gain, dtype=wav.dtype)
    return wav


class WaveformAugmenter:
    """Seeded per-utterance augmentation: ``augmenter(wav, epoch, index) -> (wav, params)``.

    Accepts and returns numpy arrays or torch tensors (float, ``[..., samples]``).
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.seed = seed

    def params(self, epoch: int, index: int) -> AugmentParams:
        return draw_params(self.config, sample_rng(self.seed, epoch, index))

    def __call__(self, wav, epoch: int, index: int):
        params = self.params(epoch, index)
        if params.gain is None and params.pitch is None:
            return wav, params
        if isinstance(wav, torch.Tensor):
            out = apply_augment(wav.detach().cpu().numpy(), params, self.config.max_denominator)
            return torch.from_numpy(np.ascontiguousarray(out)).to(wav.dtype), params
        return apply_augment(np.asarray(wav), params, self.config.max_denominator), params
