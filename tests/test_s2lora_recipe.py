"""The S2-LoRA recipes: every stage of egs/mini/s2lora on the tiny mini run, and the data stages
of egs/csrc/s2lora on miniature CSRC-2021, AISHELL-1 and Common Voice 11.0 corpora."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_corpora import aishell as fake_aishell
from fake_corpora import commonvoice as fake_cv
from fake_corpora import csrc as fake_csrc
from fake_corpora.tone import write_tone
from lhotse import load_manifest

from tests.mini_recipe import assert_training_lowered_loss, run_method_recipe

ROOT = Path(__file__).resolve().parents[1]
CSRC_RUN = ROOT / "egs" / "csrc" / "s2lora" / "run.sh"
# a subset of the recipe's methods keeps the suite short; every method's training is covered by
# tests/test_peft_methods.py and tests/test_s2lora.py
SYSTEMS = ["full", "adalora", "s2lora"]


def test_s2lora_mini_recipe(mini_run) -> None:
    """Every S2-LoRA stage on the tiny child corpus and the tiny mini foundation model."""
    tmp, _ = mini_run
    out = tmp / "s2lora"
    # tiny options; the cross-lingual test set (cross_zh, CER) is left out for time
    # (4 updates at LR 5e-3: one update of AdaLoRA, whose singular values start at zero, changes
    # the tiny model by 5e-7 of its weights, which the report rightly calls a collapse)
    train = "--epochs 2 --max-cuts 2 --accum-grad 1 --lr 5e-3 --log-interval 1"
    options = ["--train-opts", train, "--cross-languages", ""]
    options += ["--decode-opts", "--max-new-tokens 4", "--systems", " ".join(SYSTEMS)]
    proc = run_method_recipe("s2lora", tmp, out, *options)
    exp = out / "exp" / "s2lora"
    for system in ["zeroshot", *SYSTEMS]:
        decode = exp / system / "decode"
        assert sorted(p.name for p in decode.glob("scores-*.json")) == [
            "scores-adult.json",
            "scores-child.json",
        ]
        for test_set in ("child", "adult"):
            scores = json.loads((decode / f"scores-{test_set}.json").read_text())
            assert scores["metric"] == "wer" and list(scores["per_language"]) == ["en"], system
    for system in SYSTEMS:
        params = json.loads((exp / system / "params.json").read_text())
        assert 0 < params["trainable"] <= params["total"] == params["inference"], system
        assert (exp / system / "model" / "model.safetensors").is_file()  # adapters merged
        assert_training_lowered_loss(exp / system)
    counts = {s: json.loads((exp / s / "params.json").read_text())["trainable"] for s in SYSTEMS}
    assert counts["full"] > 50 * max(n for s, n in counts.items() if s != "full")
    ranks = json.loads((exp / "ranks.json").read_text())
    assert sorted(ranks) == ["AdaLoRA", "S2-LoRA"]
    assert {e["matrix"] for e in ranks["S2-LoRA"]} >= {"enc_sam.q", "dec_cam.o", "dec_ffm.fc2"}
    assert (exp / "ranks.png").stat().st_size > 0
    assert "763,857,920" in (exp / "param_table.md").read_text()  # whisper-medium from config
    report = (exp / "report.md").read_text()
    for heading in ("Table 2", "Change against Zero-shot", "Rank distribution (Fig. 3)"):
        assert heading in report
    assert "](ranks.png)" in report
    for label in ("Zero-shot", "Full-FT", "AdaLoRA", "S2-LoRA"):
        assert f"| {label} |" in report
    results = (out / "RESULTS.md").read_text()
    assert "## S2-LoRA on the mini child speech" in results
    assert "exp/s2lora/ranks.png" in results  # the image link rebased to RESULTS.md
    assert "| s2lora | 134,144 | 0.02% | 0.02% |" in results
    assert not list(out.rglob(".tmp-*")), "temporary files left behind"
    # a second run finds every stage done
    again = run_method_recipe("s2lora", tmp, out, *options, "--stop-stage", "14")
    assert "': running" not in again.stderr, again.stderr[-3000:]
    assert "stage 's2lora_train_s2lora': skipped" in again.stderr
    assert "Stage 0:" not in proc.stderr  # the tiny mini run's data and models were reused


# ---------------------------------------------------------------------------------------------
# egs/csrc/s2lora: the data stages on miniature corpora
# ---------------------------------------------------------------------------------------------

# locale -> [(clip number, sentence)]: the test splits of a miniature Common Voice 11.0
CV11_TEST = {
    "zh-HK": [(1, "我哋去飲茶"), (2, "今日好熱"), (3, "唔該晒")],
    "en": [(1, "Good morning."), (2, "See you tomorrow.")],
}


def build_cv11(root: Path) -> Path:
    """A CV-11 release with test clips of zh-HK and en (and one train/dev clip each)."""
    release = root / "cv-corpus-11.0-2022-09-21"
    for locale, clips in CV11_TEST.items():
        parts = {"train": [(90, "train")], "dev": [(91, "dev")], "test": clips}
        for part, rows in parts.items():
            lines = []
            for number, sentence in rows:
                name = fake_cv.clip_name(locale, number)
                write_tone(release / locale / "clips" / name, 0.3, 48000, 200.0 + number, "MP3")
                lines.append(
                    [f"client{number:02d}", name, sentence, "2", "0", "", "", "", "", locale, ""]
                )
            fake_cv.write_tsv(release / locale / f"{part}.tsv", lines)
    return root


def _csrc_run(tmp: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        "bash", str(CSRC_RUN), "--csrc-dir", str(tmp / "csrc"), "--c1-test-set", "eval/C1",
        "--aishell-dir", str(tmp / "aishell"), "--cv-dir", str(tmp / "cv"), "--nj", "1",
        "--test-size", "2", "--data", str(tmp / "data"), "--expdir", str(tmp / "exp"), *options,
    ]  # fmt: skip
    env = dict(os.environ, speechkd_max_jobs="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def csrc_recipe(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("csrc_s2lora")
    fake_csrc.build_csrc(tmp / "csrc")
    # the evaluation set of child read speech: another C1-like set directory
    fake_csrc.build_csrc(tmp / "other")
    shutil.move(tmp / "other" / "C1", tmp / "csrc" / "eval" / "C1")
    fake_aishell.build_aishell(tmp / "aishell")
    build_cv11(tmp / "cv")
    return tmp, _csrc_run(tmp, "--train-size", "2", "--stage", "0", "--stop-stage", "2")


def _texts(path: Path) -> dict[str, str]:
    return {c.recording_id: c.supervisions[0].text for c in load_manifest(path)}


def test_csrc_train_and_test_sets(csrc_recipe) -> None:
    tmp, _ = csrc_recipe
    fbank = tmp / "data" / "fbank"
    train = load_manifest(fbank / "csrc_c1_2" / "csrc_cuts_train.jsonl.gz")
    c1 = {utt for spk in fake_csrc.UTTERANCES["C1"].values() for utt, _ in spk}
    assert len(train) == 2 and {c.recording_id.removeprefix("c1_") for c in train} < c1
    zh_c1 = load_manifest(fbank / "eval" / "csrc_cuts_zh_c1.jsonl.gz")
    assert len(zh_c1) == 2 and all(c.recording_id.startswith("eval_c1_") for c in zh_c1)
    assert {s.custom["style"] for c in zh_c1 for s in c.supervisions} == {"read"}
    zh_c2 = load_manifest(fbank / "eval" / "csrc_cuts_zh_c2.jsonl.gz")
    assert [s.custom["style"] for c in zh_c2 for s in c.supervisions] == ["conversational"]
    assert set(_texts(fbank / "eval" / "aishell_cuts_zh_a1.jsonl.gz").values()) == {
        "甚至出现交易几乎停滞的情况"
    }
    zh_hk = load_manifest(fbank / "eval" / "commonvoice_cuts_zh_hk.jsonl.gz")
    assert len(zh_hk) == 2 and {c.supervisions[0].language for c in zh_hk} == {"zh"}
    en = _texts(fbank / "eval" / "commonvoice_cuts_en.jsonl.gz")
    assert sorted(en.values()) == ["Good morning.", "See you tomorrow."]
    for path in [fbank / "csrc_c1_2" / "csrc_cuts_train.jsonl.gz", *fbank.glob("eval/*.jsonl.gz")]:
        for cut in load_manifest(path):
            assert cut.sampling_rate == 16000  # CV mp3 are 48 kHz: resampled in stage 1
            assert cut.features.type == "whisper-logmel" and cut.num_features == 80
    assert not list((tmp / "data").rglob(".tmp-*")), "temporary files left behind"


def test_csrc_other_train_size_reuses_the_data(csrc_recipe) -> None:
    tmp, _ = csrc_recipe
    proc = _csrc_run(tmp, "--train-size", "all", "--stage", "0", "--stop-stage", "1")
    for name in ("prepare_csrc", "prepare_aishell", "prepare_commonvoice", "subset_test_zh_c1"):
        assert f"stage '{name}': skipped" in proc.stderr
    assert "stage 'subset_train_c1_all': running" in proc.stderr
    train = load_manifest(tmp / "data/subsets/csrc_c1_all/csrc_cuts_train.jsonl.gz")
    assert len(train) == 3  # the whole zh-C1


def test_csrc_bad_options_fail_early(csrc_recipe) -> None:
    tmp, _ = csrc_recipe
    bad = _csrc_run(tmp, "--train-size", "1x", check=False)
    assert bad.returncode != 0 and "--train-size must be a count" in bad.stderr
    same = _csrc_run(tmp, "--c1-test-set", "C1", "--stop-stage", "1", check=False)
    assert same.returncode != 0 and "must not be the training set C1" in same.stderr
    usage = subprocess.run(["bash", str(CSRC_RUN), "--help"], capture_output=True, text=True)
    assert "--model openai/whisper-medium" in usage.stdout and "--train-size 1k" in usage.stdout


def test_csrc_local_model_directory_is_used_as_it_is(csrc_recipe, tmp_path: Path) -> None:
    tmp, _ = csrc_recipe
    model = tmp_path / "model"
    model.mkdir()
    proc = _csrc_run(
        tmp, "--model", str(model), "--stage", "3", "--stop-stage", "3", "--train-size", "2"
    )
    assert f"{model}: a local model directory, used as it is" in proc.stderr
    assert not (tmp / "data" / "models").exists()  # nothing downloaded
