"""DistillW2V2 waveform augmentation (volume gain, resampling pitch shift) and its fairseq task."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkd.data.augment import (
    AugmentConfig,
    AugmentParams,
    WaveformAugmenter,
    apply_augment,
    draw_params,
    pitch_ratio,
    pitch_shift,
    sample_rng,
)
from speechkd.errors import ConfigError

RATE = 16000


def sine(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wav: np.ndarray) -> float:
    """The strongest frequency (Hz), refined by parabolic interpolation around the FFT peak."""
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n=8 * len(wav)))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * RATE / (8 * len(wav))


def test_gain_is_applied_exactly():
    wav = sine(300)
    out = apply_augment(wav, AugmentParams(gain=2.5))
    np.testing.assert_array_equal(out, wav * np.float32(2.5))
    augmenter = WaveformAugmenter(AugmentConfig(gain_prob=1.0, pitch_prob=0.0), seed=3)
    out, params = augmenter(wav, epoch=1, index=7)
    assert 0.3 <= params.gain <= 3.0 and params.pitch is None
    np.testing.assert_array_equal(out, wav * np.float32(params.gain))


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.1])
def test_pitch_shift_scales_frequency_and_duration(factor):
    wav = sine(440.0)
    out = pitch_shift(wav, factor)
    assert peak_frequency(out) == pytest.approx(440.0 * factor, rel=2e-3)
    assert len(out) == pytest.approx(len(wav) / factor, abs=1)  # resampling changes the tempo
    assert out.dtype == wav.dtype
    # the amplitude of a sine well below Nyquist is kept
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert np.abs(middle).max() == pytest.approx(0.5, rel=0.02)


def test_pitch_ratio_is_close_to_the_factor():
    for factor in np.linspace(0.9, 1.1, 41):
        assert float(pitch_ratio(factor)) == pytest.approx(factor, rel=5e-4)
    assert pitch_ratio(1.1) == pytest.approx(1.1) and pitch_ratio(1.0) == 1
    np.testing.assert_array_equal(pitch_shift(sine(100), 1.0), sine(100))


def test_probability_zero_is_identity():
    wav = sine(200)
    augmenter = WaveformAugmenter(AugmentConfig(gain_prob=0.0, pitch_prob=0.0))
    for index in range(50):
        out, params = augmenter(wav, epoch=index % 3, index=index)
        assert out is wav and params == AugmentParams()


def test_draws_follow_the_probabilities_and_ranges():
    config = AugmentConfig()
    params = [draw_params(config, sample_rng(0, 1, i)) for i in range(2000)]
    gains = [p.gain for p in params if p.gain is not None]
    pitches = [p.pitch for p in params if p.pitch is not None]
    assert 0.45 < len(gains) / 2000 < 0.55 and 0.45 < len(pitches) / 2000 < 0.55
    assert min(gains) >= 0.3 and max(gains) <= 3.0 and max(gains) - min(gains) > 2.5
    assert min(pitches) >= 0.9 and max(pitches) <= 1.1 and max(pitches) - min(pitches) > 0.18
    # both applied independently: about a quarter of the utterances get both
    both = sum(p.gain is not None and p.pitch is not None for p in params)
    assert 0.2 < both / 2000 < 0.3


def test_draws_are_seeded_per_epoch_and_utterance():
    a = WaveformAugmenter(seed=5)
    b = WaveformAugmenter(seed=5)
    assert [a.params(2, i) for i in range(20)] == [b.params(2, i) for i in range(20)]
    assert [a.params(2, i) for i in range(20)] != [a.params(3, i) for i in range(20)]
    assert [a.params(2, i) for i in range(20)] != [WaveformAugmenter(seed=6).params(2, i)
                                                   for i in range(20)]  # fmt: skip


def test_torch_tensors_in_and_out():
    wav = torch.from_numpy(sine(300))
    augmenter = WaveformAugmenter(AugmentConfig(gain_prob=1.0, pitch_prob=1.0), seed=0)
    out, params = augmenter(wav, epoch=1, index=0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape[0] == pytest.approx(len(wav) / params.pitch, abs=1)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"gain_prob": 1.5}, "gain_prob"),
        ({"pitch_prob": -0.1}, "pitch_prob"),
        ({"gain_range": (3.0, 0.3)}, "gain_range"),
        ({"pitch_range": (0.0, 1.1)}, "pitch_range"),
    ],
)
def test_bad_config_is_a_config_error(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        AugmentConfig(**kwargs)


# ---------------------------------------------------------------- the fairseq task


def write_split(root, split: str, lengths: list[int], labels: list[str] | None = None) -> None:
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    lines = [str(wav_dir)]
    for i, n in enumerate(lengths):
        name = f"{split}{i}.wav"
        sf.write(wav_dir / name, sine(220 + 40 * i, n / RATE), RATE, subtype="FLOAT")
        lines.append(f"{name}\t{n}")
    (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    if labels is not None:
        (root / f"{split}.phn").write_text("".join(line + "\n" for line in labels))


def make_task(root, labels: str | None = None, **overrides):
    from omegaconf import OmegaConf

    from speechkd.fairseq_plugin.tasks.audio_augment import AudioAugmentConfig, AudioAugmentTask

    cfg = AudioAugmentConfig(
        data=str(root), labels=labels, augment_splits="train", seed=1, tpu=False, **overrides
    )
    return AudioAugmentTask.setup_task(OmegaConf.structured(cfg))


def test_task_augments_the_training_split_only(tmp_path):
    write_split(tmp_path, "train", [8000, 9600, 11200])
    write_split(tmp_path, "dev", [8000, 9600])
    task = make_task(tmp_path, gain_prob=1.0, pitch_prob=1.0)
    task.load_dataset("train")
    task.load_dataset("dev")
    train, dev = task.datasets["train"], task.datasets["dev"]
    raw = train.dataset[1]["source"]
    item = train[1]
    params = train.augmenter.params(train.epoch, 1)
    expected = apply_augment(raw.numpy(), params, 1000)
    np.testing.assert_allclose(item["source"].numpy(), expected, rtol=1e-6)
    assert len(item["source"]) != 9600  # pitch changed the length
    assert not hasattr(dev, "augmenter") and len(dev[1]["source"]) == 9600
    np.testing.assert_allclose(dev[1]["source"].numpy(), sine(260, 9600 / RATE), atol=1e-7)
    # a new epoch draws again; the collater pads the changed lengths
    train.set_epoch(2)
    assert train.augmenter.params(2, 1) != params
    batch = train.collater([train[0], train[2]])
    assert batch["net_input"]["source"].shape[0] == 2


def test_task_fine_tuning_labels_and_normalisation(tmp_path):
    from fairseq.data import AddTargetDataset

    write_split(tmp_path, "train", [8000, 9600], labels=["a b", "b"])
    (tmp_path / "dict.phn.txt").write_text("a 2\nb 1\n")
    task = make_task(tmp_path, labels="phn", normalize=True, gain_prob=1.0, pitch_prob=0.0)
    task.load_dataset("train")
    dataset = task.datasets["train"]
    assert isinstance(dataset, AddTargetDataset) and hasattr(dataset.dataset, "augmenter")
    item = dataset[0]
    assert item["label"].tolist() == [task.target_dictionary.index(s) for s in ("a", "b")]
    # normalised after the gain: zero mean, unit variance (the gain cancels)
    src = item["source"]
    assert float(src.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(src.std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)


def test_task_with_probability_zero_does_not_wrap(tmp_path):
    write_split(tmp_path, "train", [8000])
    task = make_task(tmp_path, gain_prob=0.0, pitch_prob=0.0)
    task.load_dataset("train")
    assert not hasattr(task.datasets["train"], "augmenter")
    with pytest.raises(ConfigError, match="gain_range"):
        make_task(tmp_path, gain_min=2.0, gain_max=1.0)
