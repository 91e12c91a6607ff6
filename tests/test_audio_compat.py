"""fairseq's convert_waveform without torchaudio (speechkd.fairseq_plugin.audio_compat)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkd.errors import DataError
from speechkd.fairseq_plugin import audio_compat
from speechkd.fairseq_plugin.audio_compat import convert_waveform


def _sine(freq: float, rate: int, seconds: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x * (c + 1) / channels for c in range(channels)])


def _peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[np.argmax(spectrum)])


def test_identity_returns_the_same_object():
    x = _sine(440, 16000)
    y, rate = convert_waveform(x, 16000, to_mono=True, to_sample_rate=16000)
    assert y is x and rate == 16000
    t = torch.from_numpy(x)
    y, rate = convert_waveform(t, 16000, to_mono=True, to_sample_rate=None)
    assert y is t and rate == 16000


def test_mono_downmix_is_the_channel_mean():
    x = np.stack([np.linspace(-1, 1, 100), np.linspace(1, 0, 100)]).astype(np.float32)
    y, rate = convert_waveform(x, 8000, to_mono=True)
    assert rate == 8000 and y.shape == (1, 100) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], x.mean(axis=0), atol=1e-7)
    t, _ = convert_waveform(torch.from_numpy(x), 8000, to_mono=True)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), y, atol=1e-7)


@pytest.mark.parametrize(("src", "dst"), [(48000, 16000), (8000, 16000), (22050, 16000)])
def test_resampling_keeps_the_frequency(src, dst):
    x = _sine(1000, src, channels=2)
    y, rate = convert_waveform(x, src, to_mono=True, to_sample_rate=dst)
    assert rate == dst and y.shape == (1, dst)
    assert abs(_peak_frequency(y[0], dst) - 1000) <= 2
    # amplitude kept (the mean of the 0.25 and 0.5 amplitude channels), away from the edges
    mid = y[0, dst // 4 : 3 * dst // 4]
    assert np.max(np.abs(mid)) == pytest.approx(0.375, rel=0.02)


def test_volume_normalisation_is_peak_normalisation():
    x = _sine(300, 16000) * 0.1
    y, rate = convert_waveform(x, 16000, normalize_volume=True)
    assert rate == 16000 and np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(y, x / np.max(np.abs(x)), atol=1e-6)


def test_bad_input_raises_data_error():
    with pytest.raises(DataError, match="positive integer rate"):
        convert_waveform(_sine(300, 16000), 16000, to_sample_rate=0)
    with pytest.raises(DataError, match="channels, samples"):
        convert_waveform(np.zeros(10, dtype=np.float32), 16000, normalize_volume=True)


def test_fairseq_get_waveform_uses_the_patch():
    from fairseq.data.audio import audio_utils

    audio_compat.install()
    assert audio_utils.convert_waveform is convert_waveform
    buf = io.BytesIO()
    stereo = _sine(500, 8000, channels=2)
    sf.write(buf, stereo.T, 8000, format="WAV", subtype="PCM_16")
    buf.seek(0)
    wav, rate = audio_utils.get_waveform(buf, mono=True, output_sample_rate=16000)
    assert rate == 16000 and wav.shape == (1, 16000)
    assert abs(_peak_frequency(wav[0], 16000) - 500) <= 2
