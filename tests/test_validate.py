"""Tests of speechkd.data.validate and the validate_data command."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import (
    CutSet,
    Recording,
    RecordingSet,
    SupervisionSegment,
    SupervisionSet,
)

from speechkd.bin import validate_data
from speechkd.data.validate import (
    check_recording,
    check_supervision,
    check_text_file,
    validate_manifests,
)
from speechkd.errors import ConfigError, DataError


def write_tone(path: Path, seconds: float, sampling_rate: int = 16000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sampling_rate))
    t = np.arange(n) / sampling_rate
    samples = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(n)
    sf.write(path, samples.astype(np.float32), sampling_rate, subtype="PCM_16")
    return path


def supervision(sup_id: str, rec_id: str, text: str, start=0.0, duration=0.9):
    return SupervisionSegment(
        id=sup_id, recording_id=rec_id, start=start, duration=duration, text=text, language="en"
    )


@pytest.fixture
def corpus(tmp_path) -> tuple[RecordingSet, SupervisionSet]:
    """Three good one-second recordings with one supervision each."""
    audio = tmp_path / "wav"
    audio.mkdir()
    recs = [Recording.from_file(write_tone(audio / f"r{i}.wav", 1.0, seed=i)) for i in range(3)]
    sups = [supervision(f"s{i}", f"r{i}", f"hello number {i}") for i in range(3)]
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups)


def with_recording(recs: RecordingSet, rec: Recording) -> RecordingSet:
    return RecordingSet.from_recordings(list(recs) + [rec])


def test_good_corpus_passes(corpus):
    recs, sups = corpus
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    result = validate_manifests(recs, sups, cuts, sampling_rate=16000)
    assert result.problems == [] and len(result.recordings) == 3 and len(result.cuts) == 3


def test_missing_wav(corpus, tmp_path):
    recs, sups = corpus
    gone = write_tone(tmp_path / "wav" / "gone.wav", 1.0)
    rec = Recording.from_file(gone)
    gone.unlink()
    with pytest.raises(DataError, match=r"recording gone \(.*gone\.wav\): audio file does not"):
        validate_manifests(with_recording(recs, rec), sups)


def test_corrupt_wav(corpus, tmp_path):
    recs, sups = corpus
    path = write_tone(tmp_path / "wav" / "bad.wav", 1.0)
    rec = Recording.from_file(path)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(
        DataError, match=r"recording bad \(.*bad\.wav\): audio file cannot be decoded"
    ):
        validate_manifests(with_recording(recs, rec), sups)


def test_truncated_wav_fails_full_decode_or_duration(corpus, tmp_path):
    recs, sups = corpus
    path = write_tone(tmp_path / "wav" / "cut_short.wav", 1.0)
    rec = Recording.from_file(path)
    path.write_bytes(path.read_bytes()[: 44 + 3200])  # header claims 1 s, 0.1 s of data left
    problems = check_recording(rec, 16000)
    assert problems and all(p.item_id == "cut_short" for p in problems)
    assert "cut_short.wav" in problems[0].path


def test_zero_length_wav(corpus, tmp_path):
    recs, sups = corpus
    path = tmp_path / "wav" / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    rec = Recording(
        id="empty",
        sources=Recording.from_file(write_tone(tmp_path / "x.wav", 1.0)).sources,
        sampling_rate=16000,
        num_samples=16000,
        duration=1.0,
    )
    rec.sources[0].source = str(path)
    with pytest.raises(DataError, match=r"recording empty \(.*empty\.wav\): audio file has zero"):
        validate_manifests(with_recording(recs, rec), sups)


def test_8khz_wav_when_16khz_expected(corpus, tmp_path):
    recs, sups = corpus
    rec = Recording.from_file(write_tone(tmp_path / "wav" / "narrow.wav", 1.0, 8000))
    with pytest.raises(
        DataError, match=r"recording narrow \(.*narrow\.wav\).*8000 Hz, expected 16000"
    ):
        validate_manifests(with_recording(recs, rec), sups, sampling_rate=16000)
    # without an expected rate it is fine: the manifest says 8000 Hz too
    validate_manifests(with_recording(recs, rec), sups)


def test_manifest_rate_and_duration_disagree_with_file(corpus, tmp_path):
    recs, _ = corpus
    rec = Recording.from_file(write_tone(tmp_path / "wav" / "liar.wav", 1.0))
    rec.sampling_rate, rec.num_samples, rec.duration = 16000, 32000, 2.0
    reasons = [p.reason for p in check_recording(rec)]
    assert any("lasts 1.000 s, the manifest says 2.000 s" in r for r in reasons)


def test_empty_transcript(corpus):
    recs, sups = corpus
    bad = SupervisionSet.from_segments(list(sups) + [supervision("blank", "r0", " \t ")])
    with pytest.raises(DataError, match=r"supervision blank \(.*r0\.wav\): transcript is empty"):
        validate_manifests(recs, bad)


def test_supervision_pointing_to_missing_recording(corpus):
    recs, sups = corpus
    bad = SupervisionSet.from_segments(list(sups) + [supervision("orphan", "nowhere", "hi")])
    with pytest.raises(DataError, match=r"supervision orphan .*recording nowhere does not exist"):
        validate_manifests(recs, bad)


def test_supervision_outside_its_recording(corpus):
    recs, _ = corpus
    problems = check_supervision(
        supervision("late", "r1", "hi", start=0.5, duration=0.9), {r.id: r for r in recs}
    )
    assert len(problems) == 1 and "outside recording r1" in problems[0].reason


def test_cut_with_unknown_supervision(corpus):
    recs, sups = corpus
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups)
    fewer = SupervisionSet.from_segments([s for s in sups if s.id != "s2"])
    with pytest.raises(DataError, match=r"cut .*supervision s2 is not in the supervisions"):
        validate_manifests(recs, fewer, cuts)


def test_non_utf8_text_file(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"good line\ncaf\xe9 latin-1\n")
    with pytest.raises(DataError, match=r"text:2: not valid UTF-8"):
        check_text_file(path)
    with pytest.raises(DataError, match=r"text:2"):
        validate_data.main(["--recordings", "r", "--supervisions", "s", "--text", str(path)])


def test_every_problem_is_listed_in_one_error(corpus):
    recs, sups = corpus
    bad = SupervisionSet.from_segments(
        list(sups) + [supervision("blank", "r0", ""), supervision("orphan", "nowhere", "x")]
    )
    with pytest.raises(DataError) as err:
        validate_manifests(recs, bad)
    assert "2 problem(s)" in str(err.value)
    assert "supervision blank" in str(err.value) and "supervision orphan" in str(err.value)


def write_bad_corpus(corpus, tmp_path) -> tuple[Path, Path, Path]:
    """Manifests with one missing, one corrupt and one 8 kHz recording, and a blank transcript."""
    recs, sups = corpus
    wav = tmp_path / "wav"
    missing = Recording.from_file(write_tone(wav / "missing.wav", 1.0))
    (wav / "missing.wav").unlink()
    corrupt = Recording.from_file(write_tone(wav / "corrupt.wav", 1.0))
    (wav / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    narrow = Recording.from_file(write_tone(wav / "narrow.wav", 1.0, 8000))
    all_recs = RecordingSet.from_recordings(list(recs) + [missing, corrupt, narrow])
    all_sups = SupervisionSet.from_segments(
        list(sups)
        + [supervision(f"s_{r.id}", r.id, "words") for r in (missing, corrupt, narrow)]
        + [supervision("blank", "r1", "  ", start=0.0, duration=0.5)]
    )
    cuts = CutSet.from_manifests(recordings=all_recs, supervisions=all_sups)
    paths = tmp_path / "recs.jsonl.gz", tmp_path / "sups.jsonl.gz", tmp_path / "cuts.jsonl.gz"
    for manifest, path in zip((all_recs, all_sups, cuts), paths, strict=True):
        manifest.to_file(path)
    return paths


def test_cli_strict_mode_fails_naming_items(corpus, tmp_path):
    recs_file, sups_file, _ = write_bad_corpus(corpus, tmp_path)
    with pytest.raises(DataError) as err:
        validate_data.main(
            ["--recordings", str(recs_file), "--supervisions", str(sups_file)]
            + ["--sampling-rate", "16000"]
        )
    for name in ("recording missing", "recording corrupt", "recording narrow", "supervision blank"):
        assert name in str(err.value)


def test_cli_skip_bad_writes_clean_manifests_and_bad_list(corpus, tmp_path, capfd):
    recs_file, sups_file, cuts_file = write_bad_corpus(corpus, tmp_path)
    out = tmp_path / "clean"
    validate_data.main(
        ["--recordings", str(recs_file), "--supervisions", str(sups_file), "--cuts", str(cuts_file)]
        + ["--sampling-rate", "16000", "--skip-bad", "--output-dir", str(out)]
        + ["--bad-list", str(tmp_path / "bad.tsv")]
    )
    assert list(RecordingSet.from_file(out / recs_file.name).ids) == ["r0", "r1", "r2"]
    assert list(SupervisionSet.from_file(out / sups_file.name).ids) == ["s0", "s1", "s2"]
    # r1's cut carries the blank supervision too, so it is dropped with it
    assert list(CutSet.from_file(out / cuts_file.name).ids) == [
        c.id for c in CutSet.from_file(cuts_file) if c.recording_id in ("r0", "r2")
    ]
    log = capfd.readouterr().err
    assert "recordings: 3 kept, 3 dropped" in log
    assert "supervisions: 3 kept, 4 dropped" in log
    assert "cuts: 2 kept, 4 dropped" in log
    bad_lines = (tmp_path / "bad.tsv").read_text(encoding="utf-8").splitlines()
    bad_ids = {tuple(line.split("\t")[:2]) for line in bad_lines}
    assert {("recording", "missing"), ("recording", "corrupt"), ("recording", "narrow")} <= bad_ids
    assert ("supervision", "blank") in bad_ids and ("supervision", "s_narrow") in bad_ids


def test_cli_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="--output-dir"):
        validate_data.main(["--recordings", "r", "--supervisions", "s", "--skip-bad"])
    with pytest.raises(ConfigError, match="overwrite"):
        validate_data.main(
            ["--recordings", str(tmp_path / "r.jsonl.gz"), "--supervisions", "s", "--skip-bad"]
            + ["--output-dir", str(tmp_path)]
        )


def test_failure_while_writing_leaves_no_manifest(corpus, tmp_path, monkeypatch):
    recs_file, sups_file, _ = write_bad_corpus(corpus, tmp_path)
    out = tmp_path / "clean"

    def crash_mid_write(self, path):
        with gzip.open(path, "wt") as f:
            f.write('{"id": "s0", "recording_id"')  # half a line, then the process dies
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(SupervisionSet, "to_file", crash_mid_write)
    with pytest.raises(OSError, match="simulated"):
        validate_data.main(
            ["--recordings", str(recs_file), "--supervisions", str(sups_file), "--skip-bad"]
            + ["--output-dir", str(out)]
        )
    # neither the cleaned supervisions nor the recordings written just before them appear
    assert sorted(p.name for p in out.iterdir()) == ["bad_list.tsv"]


def test_lhotse_validator_in_process(corpus, tmp_path):
    """--lhotse-validate and --lhotse-manifests run lhotse's validator and name the bad file."""
    recs, sups = corpus
    recs.to_file(tmp_path / "c_recordings_train.jsonl.gz")
    sups.to_file(tmp_path / "c_supervisions_train.jsonl.gz")
    cuts_path = tmp_path / "cuts.jsonl.gz"
    CutSet.from_manifests(recordings=recs, supervisions=sups).to_file(cuts_path)
    validate_data.main(["--from-dir", str(tmp_path), "--lhotse-validate"])
    validate_data.main(["--lhotse-manifests", str(cuts_path)])
    # a cut whose audio is gone
    bad_path = tmp_path / "bad_cuts.jsonl.gz"
    bad = CutSet.from_manifests(recordings=recs, supervisions=sups)
    bad.to_file(bad_path)
    Path(next(iter(recs)).sources[0].source).unlink()
    with pytest.raises(DataError, match=r"bad_cuts.jsonl.gz: lhotse validation failed"):
        validate_data.main(["--lhotse-manifests", str(bad_path)])
    with pytest.raises(ConfigError, match="runs alone"):
        validate_data.main(["--lhotse-manifests", str(cuts_path), "--from-dir", str(tmp_path)])
