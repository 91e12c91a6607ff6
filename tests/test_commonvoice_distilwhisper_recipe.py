"""The data stages of egs/commonvoice/distilwhisper/run.sh on miniature CV-13 and FLEURS corpora."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from fake_corpora import commonvoice as fake_cv
from fake_corpora import fleurs as fake_fleurs
from lhotse import load_manifest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "commonvoice" / "distilwhisper" / "run.sh"


def _run(tmp: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        "bash", str(RUN), "--cv-dir", str(tmp / "cv"), "--fleurs-dir", str(tmp / "fleurs"),
        "--languages", "ca th", "--dev-size", "2", "--nj", "1",
        "--data", str(tmp / "data"), "--expdir", str(tmp / "exp"), *options,
    ]  # fmt: skip
    env = dict(os.environ, speechkd_max_jobs="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def most_upvoted(locale: str, part: str, n: int | None) -> set[str]:
    """Recording ids of the n most up-voted clips of the fake corpus (fewer down-votes, name)."""
    clips = fake_cv.CLIPS[locale][part]
    ranked = sorted(clips, key=lambda c: (-c[2], c[3], fake_cv.clip_name(locale, c[0])))
    return {fake_cv.clip_name(locale, c[0]).removesuffix(".mp3") for c in ranked[:n]}


def by_language(cuts) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for cut in cuts:
        groups.setdefault(cut.supervisions[0].language, set()).add(cut.recording_id)
    return groups


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("cv_distilwhisper")
    fake_cv.build_commonvoice(tmp / "cv")
    fake_fleurs.build_fleurs(tmp / "fleurs")
    return tmp, _run(tmp, "--train-size", "3", "--stage", "0", "--stop-stage", "2")


def test_train_and_dev_are_the_most_upvoted_per_language(recipe) -> None:
    tmp, _ = recipe
    fbank = tmp / "data" / "fbank" / "cv13_3"
    train = by_language(load_manifest(fbank / "commonvoice_cuts_train.jsonl.gz"))
    dev = by_language(load_manifest(fbank / "commonvoice_cuts_dev.jsonl.gz"))
    # Catalan train: 8 clips, the 3 most up-voted kept; Thai has only 3
    assert train == {"ca": most_upvoted("ca", "train", 3), "th": most_upvoted("th", "train", 3)}
    assert {len(v) for v in train.values()} == {3}
    assert dev == {"ca": most_upvoted("ca", "dev", 2), "th": most_upvoted("th", "dev", 2)}
    assert len(dev["ca"]) == 2 and len(dev["th"]) == 1
    for lang in ("ca", "th"):
        assert not train[lang] & dev[lang]


def test_whole_test_sets_and_fleurs(recipe) -> None:
    tmp, _ = recipe
    fbank = tmp / "data" / "fbank" / "eval"
    test = by_language(load_manifest(fbank / "commonvoice_cuts_test.jsonl.gz"))
    assert test == {lang: most_upvoted(lang, "test", None) for lang in ("ca", "th")}
    fleurs = load_manifest(fbank / "fleurs_cuts_test.jsonl.gz")
    expected = {
        code[:2]: {fake_fleurs.wav_name(row[1])[:-4] for row in parts["test"]}
        for code, parts in fake_fleurs.ROWS.items()
    }
    assert by_language(fleurs) == expected
    assert {c.supervisions[0].text for c in fleurs} >= {"adéu joan", "ลาก่อน"}


def test_features_are_whisper_logmel_at_16k(recipe) -> None:
    tmp, _ = recipe
    for path in [
        tmp / "data/fbank/cv13_3/commonvoice_cuts_train.jsonl.gz",
        tmp / "data/fbank/eval/commonvoice_cuts_test.jsonl.gz",
        tmp / "data/fbank/eval/fleurs_cuts_test.jsonl.gz",
    ]:
        for cut in load_manifest(path):
            assert cut.sampling_rate == 16000  # CV mp3 are 48 kHz: resampled in stage 1
            assert cut.features.type == "whisper-logmel" and cut.num_features == 80
            feats = cut.load_features()
            assert feats.shape == (cut.num_frames, 80)
            assert abs(cut.num_frames - 100 * cut.duration) <= 1
    assert not list((tmp / "data").rglob(".tmp-*")), "temporary files left behind"


def test_other_train_size_reuses_the_prepared_data(recipe) -> None:
    tmp, _ = recipe
    proc = _run(tmp, "--train-size", "2", "--stage", "0", "--stop-stage", "1")
    for name in ("prepare_commonvoice", "prepare_fleurs", "subsets_eval"):
        assert f"stage '{name}': skipped" in proc.stderr
    assert "stage 'subsets_cv13_2': running" in proc.stderr
    subsets = tmp / "data" / "subsets"
    two = by_language(load_manifest(subsets / "cv13_2" / "commonvoice_cuts_train.jsonl.gz"))
    three = by_language(load_manifest(subsets / "cv13_3" / "commonvoice_cuts_train.jsonl.gz"))
    assert two["ca"] == most_upvoted("ca", "train", 2) and two["ca"] < three["ca"]


def test_bad_options_fail_early(recipe) -> None:
    tmp, _ = recipe
    bad = _run(tmp, "--train-size", "3x", check=False)
    assert bad.returncode != 0 and "--train-size must be a count" in bad.stderr
    big = _run(tmp, "--train-size", "30k", check=False)
    assert big.returncode != 0 and "exceeds --train-pool 28000" in big.stderr
    usage = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True)
    assert (
        "--train-size 10k" in usage.stdout and "--teacher openai/whisper-large-v2" in usage.stdout
    )


def test_local_model_directories_are_used_as_they_are(recipe) -> None:
    tmp, _ = recipe
    small, large = tmp / "models" / "small", tmp / "models" / "large"
    small.mkdir(parents=True)
    large.mkdir(parents=True)
    proc = _run(
        tmp, "--student", str(small), "--teacher", str(large), "--stage", "3",
        "--stop-stage", "3",
    )  # fmt: skip
    assert f"{small}: a local model directory, used as it is" in proc.stderr
    assert f"{large}: a local model directory, used as it is" in proc.stderr
    assert not (tmp / "data" / "models").exists()  # nothing downloaded
