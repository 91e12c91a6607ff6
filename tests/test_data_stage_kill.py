"""A data stage killed with SIGKILL leaves nothing a rerun trusts; the rerun equals a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording

from speechkd.bin import compute_features

ROOT = Path(__file__).resolve().parents[1]


def _corpus(directory: Path, num_cuts: int = 120) -> Path:
    """``num_cuts`` two-second sine-plus-noise recordings as a CutSet file."""
    audio = directory / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    recordings = []
    t = np.arange(32000) / 16000
    for i in range(num_cuts):
        wave = 0.3 * np.sin(2 * np.pi * (100 + 7 * i) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(audio / f"u{i:03d}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
        recordings.append(Recording.from_file(audio / f"u{i:03d}.wav"))
    cuts = directory / "x_cuts_train.jsonl.gz"
    CutSet.from_manifests(recordings=recordings).to_file(cuts)
    return cuts


def _args(cuts: Path | None, out: Path, *extra: str) -> list[str]:
    inputs = ["--cuts", str(cuts)] if cuts is not None else []
    return [*inputs, "--output-dir", str(out), "--prefix", "x", "--split", "train", *extra]


def _command(cuts: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "speechkd.bin.compute_features", *_args(cuts, out, *extra)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}


def _kill_mid_run(cmd: list[str], out: Path, min_bytes: int = 50_000) -> None:
    """Start ``cmd``, wait until its temporary archive holds ``min_bytes``, then SIGKILL it."""
    before = set(out.glob(".tmp-*.lca"))
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            partial = list(set(out.glob(".tmp-*.lca")) - before)
            if partial and partial[0].stat().st_size >= min_bytes:
                break
            assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
            time.sleep(0.01)
        else:
            raise AssertionError("no progress in the feature archive within 60 s")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _features(manifest: Path) -> list[tuple]:
    return [(c.id, c.num_frames, c.load_features()) for c in CutSet.from_file(manifest)]


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert [r[:2] for r in a] == [r[:2] for r in b]
    for (_, _, x), (_, _, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_killed_feature_stage_leaves_only_temporary_files(tmp_path: Path) -> None:
    cuts = _corpus(tmp_path)
    clean = tmp_path / "clean"
    compute_features.main(_args(cuts, clean))
    expected = _features(clean / "x_cuts_train.jsonl.gz")
    assert len(expected) == 120

    # a fresh run killed mid-way: nothing but .tmp-* files
    out = tmp_path / "fbank"
    _kill_mid_run(_command(cuts, out), out)
    assert {p.name for p in out.iterdir() if not p.name.startswith(".tmp-")} == set()
    assert list(out.glob(".tmp-*.lca"))

    # the rerun ignores the leftovers and equals the uninterrupted run
    compute_features.main(_args(cuts, out))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".tmp-")) == [
        "x_cuts_train.jsonl.gz",
        "x_feats_train.lca",
    ]
    _assert_same(_features(out / "x_cuts_train.jsonl.gz"), expected)

    # a rerun over finished outputs, killed: the old manifest is gone, the old archive intact
    old_archive = (out / "x_feats_train.lca").read_bytes()
    _kill_mid_run(_command(cuts, out), out)
    assert not (out / "x_cuts_train.jsonl.gz").exists()
    assert (out / "x_feats_train.lca").read_bytes() == old_archive
    compute_features.main(_args(cuts, out))
    _assert_same(_features(out / "x_cuts_train.jsonl.gz"), expected)


def test_killed_shard_invalidates_the_merged_manifest(tmp_path: Path) -> None:
    cuts = _corpus(tmp_path)
    out = tmp_path / "fbank"
    for job in (1, 2):
        compute_features.main(_args(cuts, out, "--shard", f"{job}/2"))
    merge = _args(None, out, "--merge", "2")
    compute_features.main(merge)
    expected = _features(out / "x_cuts_train.jsonl.gz")

    _kill_mid_run(_command(cuts, out, "--shard", "2/2"), out, min_bytes=20_000)
    assert not (out / "x_cuts_train.jsonl.gz").exists()  # pointed into shard 2's archive
    assert not (out / "x_cuts_train.2.jsonl.gz").exists()
    compute_features.main(_args(cuts, out, "--shard", "2/2"))
    compute_features.main(merge)
    _assert_same(_features(out / "x_cuts_train.jsonl.gz"), expected)


def test_killed_recipe_stage_is_not_stamped_done(tmp_path: Path) -> None:
    """local/stage_lib.sh: a stage killed before stage_done reruns; a finished one is skipped."""
    script = f"""
. {ROOT}/local/stage_lib.sh
stamp_dir=stamps
echo hello > in.txt
if stage_needed demo in.txt out.txt p; then
  echo partial > out.txt
  echo ran >> count
  kill -9 $$
  stage_done demo in.txt out.txt p
fi
"""
    killed = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=_env(), capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "stamps" / "demo.json").exists()
    rerun = script.replace("kill -9 $$", "echo done > out.txt")
    for _ in range(2):
        out = subprocess.run(["bash", "-c", rerun], cwd=tmp_path, env=_env(), capture_output=True)
        assert out.returncode == 0, out.stderr
    assert (tmp_path / "count").read_text().split() == ["ran", "ran"]
    assert (tmp_path / "out.txt").read_text() == "done\n"
    assert b"stage 'demo': skipped" in out.stderr
