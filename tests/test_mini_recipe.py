"""End to end: the data stages of egs/mini/run.sh at tiny scale, skipping and re-running."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "mini" / "run.sh"


def _run(tmp: Path, *options: str) -> subprocess.CompletedProcess:
    cmd = [
        "bash",
        str(RUN),
        "--scale",
        "tiny",
        "--data",
        str(tmp / "data"),
        "--expdir",
        str(tmp / "exp"),
        "--bpe-vocab-size",
        "100",
        "--probe-epochs",
        "1",
        "--results",
        str(tmp / "RESULTS.md"),
        *options,
    ]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("mini")
    return tmp, _run(tmp, "--stage", "0", "--stop-stage", "100")


def test_data_stages_make_manifests_features_units(mini_run) -> None:
    tmp, _ = mini_run
    data = tmp / "data"
    for corpus, split in [
        ("mini_asr", "train"),
        ("mini_asr", "test_ood"),
        ("mini_st", "dev"),
        ("mini_child", "test"),
    ]:
        for kind in ("recordings", "supervisions", "cuts"):
            assert (data / "manifests" / f"{corpus}_{kind}_{split}.jsonl.gz").is_file()
        assert (data / "fbank" / f"{corpus}_cuts_{split}.jsonl.gz").is_file()
    assert (data / "lang_bpe_100" / "bpe.model").is_file()
    assert (data / "lang_whisper" / "tokenizer.json").is_file()
    for den in ("lang_phone_en", "lang_char_en"):
        assert (data / den / "den.fst.txt").is_file()
    for name, metrics in [
        ("phone_ctc", {"per"}),
        ("char_ctc", {"wer", "cer"}),
        ("char_mmi", {"wer", "cer"}),
    ]:
        summary = json.loads(
            (tmp / f"exp/intelligibility_probe/{name}/probe-summary.json").read_text()
        )
        assert set(summary) == {"test", "test_ood"}
        assert set(summary["test"]) == metrics | {"num_utts"}
    assert not list(data.rglob(".tmp-*")), "temporary files left behind"
    report = (tmp / "RESULTS.md").read_text()
    assert "conv256-phone-ctc-greedy (per)" in report and "## Environment" in report
    assert "./run.sh --scale tiny" in report  # the recipe command is recorded


def test_rerun_skips_and_changed_config_reruns(mini_run) -> None:
    tmp, _ = mini_run
    again = _run(tmp, "--stage", "0", "--stop-stage", "5")
    for name in (
        "corpus",
        "validate",
        "fbank",
        "units",
        "probe_phone_ctc",
        "probe_char_ctc",
        "probe_char_mmi",
    ):
        assert f"stage '{name}': skipped" in again.stderr
    changed = _run(tmp, "--stage", "3", "--stop-stage", "3", "--bpe-vocab-size", "90")
    assert "stage 'units': running (parameters changed)" in changed.stderr
    assert "stage 'corpus'" not in changed.stderr
    assert (tmp / "data" / "lang_bpe_90" / "bpe.model").is_file()
