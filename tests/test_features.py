"""Tests of speechkd.data.features and the compute_features command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, FeatureExtractor, LilcomChunkyWriter, Recording
from lhotse.features.kaldi.extractors import Fbank, FbankConfig
from lhotse.utils import compute_num_frames_from_samples

from speechkd.bin import compute_features
from speechkd.data.features import (
    KaldiNativeFbank,
    KaldiNativeFbankConfig,
    WhisperLogMel,
    WhisperLogMelConfig,
    load_mono_audio,
    pad_whisper_features,
    whisper_padding_value,
)
from speechkd.errors import ConfigError, DataError

LILCOM_TOLERANCE = 2.0**-5  # LilcomChunkyWriter's default tick_power=-5 quantisation step


def synth_speech(num_samples: int, seed: int, sampling_rate: int = 16000) -> np.ndarray:
    """A voiced-like signal: gliding harmonics with an amplitude envelope and a noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sampling_rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t + rng.uniform(0, 6)) ** 2
    noise = 0.003 * rng.standard_normal(num_samples)
    return (0.2 * envelope * voiced + noise).astype(np.float32)


def write_wav(path: Path, num_samples: int, seed: int, sampling_rate: int = 16000) -> Path:
    sf.write(path, synth_speech(num_samples, seed, sampling_rate), sampling_rate, subtype="PCM_16")
    return path


def make_cuts(tmp_path: Path, lengths: list[int], sampling_rate: int = 16000) -> CutSet:
    audio = tmp_path / "audio"
    audio.mkdir(exist_ok=True)
    recordings = [
        Recording.from_file(
            write_wav(audio / f"utt{i}.wav", n, seed=i, sampling_rate=sampling_rate)
        )
        for i, n in enumerate(lengths)
    ]
    return CutSet.from_manifests(recordings=recordings).to_eager()


@pytest.fixture(scope="module")
def waveform() -> np.ndarray:
    return synth_speech(47931, seed=0)  # not a multiple of the frame shift on purpose


def test_kaldi_native_fbank_matches_lhotse_fbank(waveform):
    ours = KaldiNativeFbank().extract(waveform, 16000)
    reference = Fbank(FbankConfig(num_filters=80)).extract(waveform, 16000)
    assert (
        ours.shape == reference.shape == (compute_num_frames_from_samples(47931, 0.01, 16000), 80)
    )
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-3)
    # a torch tensor in gives a tensor out
    as_tensor = KaldiNativeFbank().extract(torch.from_numpy(waveform), 16000)
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), ours)


def test_kaldi_native_fbank_config_and_registration():
    config = KaldiNativeFbankConfig(num_mel_bins=40, frame_shift=0.02)
    extractor = KaldiNativeFbank(config)
    assert extractor.frame_shift == 0.02 and extractor.feature_dim(16000) == 40
    restored = FeatureExtractor.from_dict(extractor.to_dict())
    assert isinstance(restored, KaldiNativeFbank) and restored.config == config
    feats = extractor.extract(synth_speech(16000, seed=1), 16000)
    assert feats.shape == (50, 40)
    with pytest.raises(DataError, match="8000 Hz"):
        extractor.extract(synth_speech(8000, seed=1, sampling_rate=8000), 8000)
    with pytest.raises(ConfigError, match="num_mel_bins"):
        KaldiNativeFbankConfig(num_mel_bins=0)


def test_lhotse_compute_and_store_features_round_trip(tmp_path):
    cuts = make_cuts(tmp_path, [16000, 24080, 9999])
    extractor = KaldiNativeFbank()
    with_feats = cuts.compute_and_store_features(
        extractor, tmp_path / "feats", storage_type=LilcomChunkyWriter, progress_bar=False
    )
    with_feats.to_file(tmp_path / "cuts.jsonl.gz")
    reloaded = CutSet.from_file(tmp_path / "cuts.jsonl.gz")
    for cut, original in zip(reloaded, cuts, strict=True):
        assert cut.features.type == "kaldi-native-fbank"
        stored = cut.load_features()
        direct = extractor.extract(original.load_audio()[0], 16000)
        assert stored.shape == direct.shape == (cut.num_frames, 80)
        np.testing.assert_allclose(stored, direct, atol=LILCOM_TOLERANCE)


@pytest.mark.parametrize("num_mel_bins", [80, 128])
def test_whisper_logmel_matches_openai_whisper_and_transformers(waveform, num_mel_bins):
    import whisper
    from transformers import WhisperFeatureExtractor

    ours = WhisperLogMel(WhisperLogMelConfig(num_mel_bins)).extract(waveform, 16000)
    num_frames = compute_num_frames_from_samples(len(waveform), 0.01, 16000)
    assert ours.shape == (num_frames, num_mel_bins)
    # openai-whisper's reference implementation (librosa filters) on the 30 s padded audio
    reference = whisper.log_mel_spectrogram(
        torch.from_numpy(waveform), n_mels=num_mel_bins, padding=480000
    ).numpy()
    np.testing.assert_allclose(ours, reference.T[:num_frames], atol=1e-4)
    # transformers on the audio padded to 30 s: the model input
    hf = WhisperFeatureExtractor(feature_size=num_mel_bins)(
        waveform, sampling_rate=16000, return_tensors="np"
    )["input_features"][0].T
    np.testing.assert_allclose(ours, hf[:num_frames], atol=1e-5)
    padded = pad_whisper_features(ours).numpy()
    assert padded.shape == (3000, num_mel_bins)
    # padded silence equals transformers' except the frames straddling the end of the audio
    np.testing.assert_allclose(padded[num_frames + 2 :], hf[num_frames + 2 :], atol=1e-5)
    assert whisper_padding_value(ours) == pytest.approx(float(hf[-1, 0]), abs=1e-5)


def test_whisper_config_and_length_limits():
    with pytest.raises(ConfigError, match="80 or 128"):
        WhisperLogMelConfig(num_mel_bins=64)
    with pytest.raises(DataError, match="3001 frames"):
        pad_whisper_features(np.zeros((3001, 80), dtype=np.float32))


def test_load_mono_audio(tmp_path):
    cut16 = make_cuts(tmp_path, [16000])[0]
    audio = load_mono_audio(cut16)
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    np.testing.assert_allclose(audio, sf.read(cut16.recording.sources[0].source)[0], atol=1e-6)

    low = tmp_path / "low"
    low.mkdir()
    cut8 = make_cuts(low, [8000], sampling_rate=8000)[0]
    with pytest.raises(DataError, match=r"utt0.*8000 Hz, expected 16000 Hz") as err:
        load_mono_audio(cut8)
    assert str(cut8.recording.sources[0].source) in str(err.value)
    resampled = load_mono_audio(cut8, resample=True)
    assert resampled.dtype == np.float32 and resampled.shape == (16000,)


def _feature_table(manifest: Path) -> list[tuple]:
    """Everything of a features manifest except where the features are stored."""
    rows = []
    for cut in CutSet.from_file(manifest):
        d = cut.to_dict()
        d["features"].pop("storage_path")
        d["features"].pop("storage_key")
        rows.append((cut.id, d, cut.load_features()))
    return rows


def test_sharded_features_merge_to_the_same_result(tmp_path):
    cuts = make_cuts(tmp_path, [8000 + 1601 * i for i in range(7)])
    cuts_file = tmp_path / "mini_cuts_train.jsonl.gz"
    cuts.to_file(cuts_file)
    common = ["--cuts", str(cuts_file), "--prefix", "mini", "--split", "train"]

    single = tmp_path / "single"
    compute_features.main(common + ["--output-dir", str(single)])
    for num_shards in (1, 4):
        out = tmp_path / f"n{num_shards}"
        for job in range(1, num_shards + 1):
            compute_features.main(
                common + ["--output-dir", str(out), "--shard", f"{job}/{num_shards}"]
            )
        assert (out / f"mini_feats_train.{num_shards}.lca").is_file()
        compute_features.main(
            [
                "--output-dir",
                str(out),
                "--prefix",
                "mini",
                "--split",
                "train",
                "--merge",
                str(num_shards),
            ]
        )

    # recomputing a shard invalidates the merged manifest that points into its archive
    compute_features.main(common + ["--output-dir", str(tmp_path / "n4"), "--shard", "3/4"])
    assert not (tmp_path / "n4" / "mini_cuts_train.jsonl.gz").exists()
    compute_features.main(
        ["--output-dir", str(tmp_path / "n4"), "--prefix", "mini", "--split", "train"]
        + ["--merge", "4"]
    )

    expected = _feature_table(single / "mini_cuts_train.jsonl.gz")
    assert [row[0] for row in expected] == list(cuts.ids)  # input order kept
    for num_shards in (1, 4):
        got = _feature_table(tmp_path / f"n{num_shards}" / "mini_cuts_train.jsonl.gz")
        assert [row[:2] for row in got] == [row[:2] for row in expected]
        for (_, _, a), (_, _, b) in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_shards_cover_every_cut_once(tmp_path):
    cuts = make_cuts(tmp_path, [1600] * 3)
    shards = [compute_features.select_shard(cuts, j, 5) for j in range(1, 6)]
    assert [c.id for shard in shards for c in shard] == list(cuts.ids)
    with pytest.raises(ConfigError, match="J/N"):
        compute_features.parse_shard("2of4")
    with pytest.raises(ConfigError, match="1 <= J <= N"):
        compute_features.parse_shard("5/4")


def test_merge_with_a_missing_shard_fails(tmp_path):
    with pytest.raises(DataError, match=r"mini_cuts_train\.2\.jsonl\.gz"):
        compute_features.merge(tmp_path, "mini", "train", 2)


def test_whisper_features_cli(tmp_path):
    cuts_file = tmp_path / "c.jsonl.gz"
    make_cuts(tmp_path, [16000, 12345]).to_file(cuts_file)
    compute_features.main(
        ["--cuts", str(cuts_file), "--output-dir", str(tmp_path / "fbank"), "--prefix", "mini"]
        + ["--split", "dev", "--feature-type", "whisper", "--num-mel-bins", "128"]
    )
    out = CutSet.from_file(tmp_path / "fbank" / "mini_cuts_dev.jsonl.gz")
    for cut in out:
        assert cut.features.type == "whisper-logmel"
        expected = WhisperLogMel(WhisperLogMelConfig(128)).extract(cut.load_audio()[0], 16000)
        np.testing.assert_allclose(cut.load_features(), expected, atol=LILCOM_TOLERANCE)


def test_wrong_sampling_rate_names_the_cut(tmp_path):
    cuts_file = tmp_path / "c.jsonl.gz"
    make_cuts(tmp_path, [8000], sampling_rate=8000).to_file(cuts_file)
    with pytest.raises(DataError, match=r"cut utt0.*utt0\.wav.*8000 Hz"):
        compute_features.main(
            ["--cuts", str(cuts_file), "--output-dir", str(tmp_path / "f"), "--prefix", "x"]
            + ["--split", "train"]
        )


def test_killed_run_leaves_no_trusted_manifest(tmp_path, monkeypatch):
    cuts_file = tmp_path / "c.jsonl.gz"
    make_cuts(tmp_path, [16000, 16000, 16000]).to_file(cuts_file)
    args = ["--cuts", str(cuts_file), "--output-dir", str(tmp_path / "f"), "--prefix", "x"]
    args += ["--split", "train"]
    compute_features.main(args)
    manifest = tmp_path / "f" / "x_cuts_train.jsonl.gz"
    assert manifest.is_file()

    calls = {"n": 0}
    original = KaldiNativeFbank.extract

    def failing_extract(self, samples, sampling_rate):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return original(self, samples, sampling_rate)

    monkeypatch.setattr(KaldiNativeFbank, "extract", failing_extract)
    with pytest.raises(DataError, match=r"cut utt1.*simulated crash"):
        compute_features.main(args)
    # the old manifest would point into the half-rewritten archive: it must be gone
    assert not manifest.exists()
    assert not list((tmp_path / "f").glob(".tmp-*"))
    monkeypatch.undo()
    compute_features.main(args)
    assert len(CutSet.from_file(manifest)) == 3
