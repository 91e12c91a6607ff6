"""Acoustic front-ends as lhotse feature extractors, and raw audio for wav2vec2.

* :class:`KaldiNativeFbank` -- Kaldi log-mel filter banks computed by ``kaldi-native-fbank``
  (registered with lhotse as ``"kaldi-native-fbank"``), used by the LF-MMI / wav2vec2-free
  recipes and anything that wants icefall-style fbank.
* :class:`WhisperLogMel` -- Whisper's log-mel spectrogram computed by
  ``transformers.WhisperFeatureExtractor`` (registered as ``"whisper-logmel"``). This is the one
  front-end the Whisper recipes use. lhotse 1.33 ships a ``WhisperFbank`` too, but it needs
  librosa (not a dependency here) for its filters; the transformers implementation is the one
  the Whisper checkpoints are used with, so recipes store exactly what the model sees.
  Stored features are not padded to 30 s: :func:`pad_whisper_features` pads a matrix to 3000
  frames with the value the transformers extractor gives to padded silence.
* :func:`load_mono_audio` -- a cut's waveform as float32 mono at a fixed rate (wav2vec2 input).
* :func:`compute_and_store` -- features of a CutSet into one lilcom archive, failing loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lhotse import CutSet, FeatureExtractor, LilcomChunkyWriter
from lhotse.cut import Cut
from lhotse.features.base import register_extractor
from lhotse.utils import EPSILON, Seconds, compute_num_frames_from_samples, fastcopy
from tqdm import tqdm

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_path

logger = logging.getLogger(__name__)

WHISPER_SAMPLING_RATE = 16000
WHISPER_HOP_LENGTH = 160
WHISPER_N_FFT = 400
WHISPER_NUM_FRAMES = 3000  # 30 s at 100 frames per second


@dataclass
class KaldiNativeFbankConfig:
    """Options of Kaldi's ``compute-fbank-feats`` (Kaldi names; lhotse-friendly defaults).

    Defaults follow lhotse's ``Fbank``: 80 bins, 25 ms / 10 ms frames, no dither (deterministic
    features), ``snip_edges=False`` (frames = round(duration / frame_shift)), high_freq -400.
    """

    sampling_rate: int = 16000
    frame_shift: Seconds = 0.01
    frame_length: Seconds = 0.025
    dither: float = 0.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window_type: str = "povey"
    round_to_power_of_two: bool = True
    blackman_coeff: float = 0.42
    snip_edges: bool = False
    num_mel_bins: int = 80
    low_freq: float = 20.0
    high_freq: float = -400.0
    vtln_low: float = 100.0
    vtln_high: float = -500.0
    use_energy: bool = False
    energy_floor: float = 0.0
    raw_energy: bool = True
    htk_compat: bool = False
    use_log_fbank: bool = True
    use_power: bool = True

    def __post_init__(self) -> None:
        if self.num_mel_bins <= 0:
            raise ConfigError(f"num_mel_bins must be positive, got {self.num_mel_bins}")
        if self.frame_shift <= 0 or self.frame_length <= 0:
            raise ConfigError(
                f"frame_shift and frame_length must be positive, got "
                f"{self.frame_shift} and {self.frame_length}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> KaldiNativeFbankConfig:
        return KaldiNativeFbankConfig(**data)

    def to_knf_options(self) -> Any:
        """The equivalent ``kaldi_native_fbank.FbankOptions``."""
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        frame = opts.frame_opts
        frame.samp_freq = float(self.sampling_rate)
        frame.frame_shift_ms = self.frame_shift * 1000.0
        frame.frame_length_ms = self.frame_length * 1000.0
        frame.dither = self.dither
        frame.preemph_coeff = self.preemph_coeff
        frame.remove_dc_offset = self.remove_dc_offset
        frame.window_type = self.window_type
        frame.round_to_power_of_two = self.round_to_power_of_two
        frame.blackman_coeff = self.blackman_coeff
        frame.snip_edges = self.snip_edges
        mel = opts.mel_opts
        mel.num_bins = self.num_mel_bins
        mel.low_freq = self.low_freq
        mel.high_freq = self.high_freq
        mel.vtln_low = self.vtln_low
        mel.vtln_high = self.vtln_high
        opts.use_energy = self.use_energy
        opts.energy_floor = self.energy_floor
        opts.raw_energy = self.raw_energy
        opts.htk_compat = self.htk_compat
        opts.use_log_fbank = self.use_log_fbank
        opts.use_power = self.use_power
        return opts


def _as_mono_numpy(samples: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Samples as a 1-D float32 numpy array; (1, N) is accepted, more channels are not."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2 and samples.shape[0] == 1:
        samples = samples[0]
    if samples.ndim != 1:
        raise DataError(
            f"{name} works on single-channel audio, got samples of shape {samples.shape}"
        )
    return samples


def _check_rate(name: str, expected: int, got: int) -> None:
    if got != expected:
        raise DataError(
            f"{name} is configured for {expected} Hz audio but got {got} Hz; resample the "
            f"cuts first (CutSet.resample)"
        )


def _log_energy_mix(features_a: np.ndarray, features_b: np.ndarray, scale_b: float) -> np.ndarray:
    return np.log(np.maximum(EPSILON, np.exp(features_a) + scale_b * np.exp(features_b)))


@register_extractor
class KaldiNativeFbank(FeatureExtractor):
    """Kaldi log-mel filter banks via ``kaldi-native-fbank`` (CPU, no torch kernels needed).

    Samples are taken as floats in [-1, 1] (lhotse's convention), like lhotse's own ``Fbank``;
    Kaldi's int16 scaling would only add the constant ``2*log(32768)`` to every log energy.
    """

    name = "kaldi-native-fbank"
    config_type = KaldiNativeFbankConfig

    def __init__(self, config: KaldiNativeFbankConfig | None = None) -> None:
        super().__init__(config=config)
        self._options = self.config.to_knf_options()

    @property
    def frame_shift(self) -> Seconds:
        return self.config.frame_shift

    def feature_dim(self, sampling_rate: int) -> int:
        return self.config.num_mel_bins

    def extract(
        self, samples: np.ndarray | torch.Tensor, sampling_rate: int
    ) -> np.ndarray | torch.Tensor:
        import kaldi_native_fbank as knf

        _check_rate(type(self).__name__, self.config.sampling_rate, sampling_rate)
        is_tensor = isinstance(samples, torch.Tensor)
        waveform = _as_mono_numpy(samples, type(self).__name__)
        fbank = knf.OnlineFbank(self._options)
        fbank.accept_waveform(float(sampling_rate), waveform)
        fbank.input_finished()
        num_frames = fbank.num_frames_ready
        feats = np.empty((num_frames, self.config.num_mel_bins), dtype=np.float32)
        for i in range(num_frames):
            feats[i] = fbank.get_frame(i)
        return torch.from_numpy(feats) if is_tensor else feats

    @staticmethod
    def mix(features_a: np.ndarray, features_b: np.ndarray, energy_scaling_factor_b: float):
        return _log_energy_mix(features_a, features_b, energy_scaling_factor_b)

    @staticmethod
    def compute_energy(features: np.ndarray) -> float:
        return float(np.sum(np.exp(features)))


@dataclass
class WhisperLogMelConfig:
    """Whisper front-end: 80 bins (whisper tiny..large-v2) or 128 bins (large-v3)."""

    num_mel_bins: int = 80

    def __post_init__(self) -> None:
        if self.num_mel_bins not in (80, 128):
            raise ConfigError(
                f"num_mel_bins for Whisper must be 80 or 128, got {self.num_mel_bins}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> WhisperLogMelConfig:
        return WhisperLogMelConfig(**data)


@register_extractor
class WhisperLogMel(FeatureExtractor):
    """Whisper log-mel features from ``transformers.WhisperFeatureExtractor``, unpadded.

    For every frame that covers audio the values equal those of the transformers extractor on
    the audio zero-padded to 30 s (the model input), because the audio is followed by enough
    zeros here that the STFT reflection and the ``max - 8`` floor see the same signal.
    Returns ``compute_num_frames_from_samples(len(samples))`` frames (lhotse's frame count).
    """

    name = "whisper-logmel"
    config_type = WhisperLogMelConfig

    def __init__(self, config: WhisperLogMelConfig | None = None) -> None:
        super().__init__(config=config)
        from transformers import WhisperFeatureExtractor

        self._hf = WhisperFeatureExtractor(
            feature_size=self.config.num_mel_bins,
            sampling_rate=WHISPER_SAMPLING_RATE,
            hop_length=WHISPER_HOP_LENGTH,
            n_fft=WHISPER_N_FFT,
        )

    @property
    def frame_shift(self) -> Seconds:
        return WHISPER_HOP_LENGTH / WHISPER_SAMPLING_RATE

    def feature_dim(self, sampling_rate: int) -> int:
        return self.config.num_mel_bins

    def extract(
        self, samples: np.ndarray | torch.Tensor, sampling_rate: int
    ) -> np.ndarray | torch.Tensor:
        _check_rate(type(self).__name__, WHISPER_SAMPLING_RATE, sampling_rate)
        is_tensor = isinstance(samples, torch.Tensor)
        waveform = _as_mono_numpy(samples, type(self).__name__)
        num_frames = compute_num_frames_from_samples(
            len(waveform), self.frame_shift, WHISPER_SAMPLING_RATE
        )
        padded = np.concatenate([waveform, np.zeros(WHISPER_N_FFT, dtype=np.float32)])
        out = self._hf(
            padded,
            sampling_rate=WHISPER_SAMPLING_RATE,
            padding="max_length",
            max_length=len(padded),
            truncation=False,
            return_tensors="np",
        )
        feats = np.ascontiguousarray(out["input_features"][0].T[:num_frames], dtype=np.float32)
        return torch.from_numpy(feats) if is_tensor else feats

    @staticmethod
    def mix(features_a: np.ndarray, features_b: np.ndarray, energy_scaling_factor_b: float):
        raise NotImplementedError("Whisper log-mel features are normalised per utterance")


def whisper_padding_value(features: np.ndarray | torch.Tensor) -> float:
    """The value WhisperFeatureExtractor gives to padded silence for an utterance's features.

    Padding zeros have log10 energy -10, floored at ``max - 8`` and mapped by ``(x + 4) / 4``:
    ``max(-1.5, features.max() - 2)``.
    """
    return max(-1.5, float(features.max()) - 2.0)


def pad_whisper_features(
    features: np.ndarray | torch.Tensor, num_frames: int = WHISPER_NUM_FRAMES
) -> torch.Tensor:
    """Pad (frames, bins) Whisper features to ``num_frames`` frames as the model input expects.

    Raises DataError when the features are longer than ``num_frames`` (Whisper's 30 s window).
    """
    feats = torch.as_tensor(features, dtype=torch.float32)
    if feats.shape[0] > num_frames:
        raise DataError(
            f"Whisper features have {feats.shape[0]} frames, more than the {num_frames} "
            f"frames (30 s) the model accepts"
        )
    value = whisper_padding_value(feats) if feats.numel() else -1.5
    return torch.nn.functional.pad(feats, (0, 0, 0, num_frames - feats.shape[0]), value=value)


def recording_location(cut: Cut) -> str:
    """A human-readable location of a cut's audio: its file path(s) or source type."""
    recording = getattr(cut, "recording", None)
    if recording is None:
        return "<no recording>"
    return ", ".join(
        str(s.source) if s.type == "file" else f"<{s.type}>" for s in recording.sources
    )


def load_mono_audio(cut: Cut, sampling_rate: int = 16000, resample: bool = False) -> np.ndarray:
    """Load a cut's audio as a float32 mono array at ``sampling_rate`` (wav2vec2 input).

    A cut at another rate is an error naming the recording, unless ``resample=True``.
    Multi-channel audio is an error too: choose a channel in the manifest first.
    """
    if not cut.has_recording:
        raise DataError(f"cut {cut.id}: has no recording to load audio from")
    where = f"cut {cut.id} (recording {cut.recording_id}, {recording_location(cut)})"
    if cut.sampling_rate != sampling_rate:
        if not resample:
            raise DataError(
                f"{where}: sampling rate is {cut.sampling_rate} Hz, expected {sampling_rate} Hz "
                f"(resample the data, or pass resample=True)"
            )
        logger.debug("resampling cut %s from %d to %d Hz", cut.id, cut.sampling_rate, sampling_rate)
        cut = cut.resample(sampling_rate)
    try:
        audio = cut.load_audio()
    except Exception as err:
        raise DataError(f"{where}: cannot load audio ({err})") from err
    if audio.ndim == 2:
        if audio.shape[0] != 1:
            raise DataError(f"{where}: expected mono audio, got {audio.shape[0]} channels")
        audio = audio[0]
    return np.ascontiguousarray(audio, dtype=np.float32)


def check_sampling_rates(cuts: Iterable[Cut], sampling_rate: int) -> None:
    """Raise DataError naming the first cuts whose audio is not at ``sampling_rate``."""
    wrong = [c for c in cuts if c.sampling_rate != sampling_rate]
    if wrong:
        listed = "; ".join(
            f"cut {c.id} ({recording_location(c)}) is {c.sampling_rate} Hz" for c in wrong[:10]
        )
        more = f" and {len(wrong) - 10} more" if len(wrong) > 10 else ""
        raise DataError(
            f"{len(wrong)} cut(s) not at the expected {sampling_rate} Hz: {listed}{more}"
        )


def archive_path(storage_path: str | Path) -> Path:
    """The file a ``LilcomChunkyWriter(storage_path)`` writes: ``.lca`` appended if missing."""
    p = Path(storage_path)
    return p if p.suffix == ".lca" else p.with_suffix(p.suffix + ".lca")


def compute_and_store(
    cuts: CutSet, extractor: FeatureExtractor, storage_path: str | Path
) -> tuple[CutSet, Path]:
    """Extract features of every cut, in order, into one lilcom chunky archive.

    Unlike ``CutSet.compute_and_store_features`` (which drops cuts whose audio fails to load),
    a failure raises DataError naming the cut and its audio. The archive is written under a
    ``.tmp-`` name and renamed to ``storage_path`` plus ``.lca`` only when complete, so a killed
    run never leaves an archive that looks finished. Returns the cuts with features attached
    (pointing at the final archive) and the archive's path.
    """
    archive = archive_path(storage_path)
    out = []
    with atomic_path(archive) as tmp, LilcomChunkyWriter(tmp) as storage:
        for cut in tqdm(cuts, desc=f"{extractor.name} features", total=len(cuts)):
            try:
                stored = cut.compute_and_store_features(extractor, storage)
            except (DataError, ConfigError):
                raise
            except Exception as err:
                raise DataError(
                    f"cut {cut.id} ({recording_location(cut)}): feature extraction failed ({err})"
                ) from err
            stored.features = fastcopy(stored.features, storage_path=str(archive))
            out.append(stored)
    return CutSet.from_cuts(out), archive
