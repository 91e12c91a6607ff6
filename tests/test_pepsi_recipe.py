"""The PEPSI recipes: egs/mini/pepsi end to end on the tiny mini run, and the data stages of
egs/commonvoice/pepsi on miniature CV-13 and ClovaCall corpora."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fake_corpora import clovacall as fake_clovacall
from fake_corpora import commonvoice as fake_cv
from lhotse import load_manifest
from safetensors.torch import load_file

from speechkd.whisper.pruning import load_masks
from tests.mini_recipe import run_method_recipe

ROOT = Path(__file__).resolve().parents[1]
CV_RUN = ROOT / "egs" / "commonvoice" / "pepsi" / "run.sh"
TRAINED = ("ft", "lora", "lth_ft", "pepsi")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ko (CER) and the en control (WER); IMP in 2 rounds (11%, then 20%: the target), Fig. 4 at 10%
# and 20% on ko, the ko subnetwork check against the ticket pruned on en. The transfer of the en
# tickets to child speech runs in the last test (with fewer systems, to save time). The smaller
# mini foundation model (the student) is adapted.
MINI_OPTIONS = (
    "--foundation", "student",
    "--languages", "ko en",
    "--train-opts", "--epochs 1 --max-cuts 4",
    "--imp-opts", "--round-epochs 1 --max-cuts 4 --rate 0.11",
    "--target-sparsity", "0.2",
    "--fig4-milestones", "0.1 0.2",
    "--subnet-pairs", "ko:en",
    "--subnet-sparsities", "0.2",
    "--decode-opts", "--max-new-tokens 4",
    "--transfer", "false",
)  # fmt: skip


def scores(decode: Path, set_name: str) -> dict:
    return json.loads((decode / f"scores-{set_name}.json").read_text())


def assert_masks_hold(model_dir: Path, masks_path: Path) -> int:
    """Every weight pruned by the masks is zero in the exported model; the number pruned."""
    weights = load_file(str(model_dir / "model.safetensors"))
    pruned = 0
    for name, mask in load_masks(masks_path).items():
        assert name in weights, name
        assert not weights[name][~mask.bool()].any(), name
        pruned += int((~mask.bool()).sum())
    return pruned


@pytest.fixture(scope="module")
def pepsi_run(mini_run, tmp_path_factory: pytest.TempPathFactory):
    tmp, _ = mini_run
    out = tmp_path_factory.mktemp("pepsi")
    return tmp, out, run_method_recipe("pepsi", tmp, out, *MINI_OPTIONS)


def test_pepsi_mini_recipe_systems(pepsi_run) -> None:
    """Every system of Table 3 decoded and scored; parameters and masks as specified."""
    _, out, _ = pepsi_run
    exp = out / "exp" / "pepsi"
    for lang, metric in (("ko", "cer"), ("en", "wer")):
        ticket = exp / lang / "imp" / "milestones" / "prune-20"
        decodes = [exp / "zeroshot" / "decode", ticket / "decode"]
        decodes += [exp / lang / sys / "decode" for sys in TRAINED]
        for decode in decodes:
            payload = scores(decode, f"test_{lang}")
            assert payload["metric"] == metric and payload["languages"] == [lang], decode
        config = (exp / lang / "ft" / "config.yaml").read_text()
        assert "foundation_student_14s" in config  # --foundation student, 14 s window
        history = json.loads((exp / lang / "imp" / "imp-history.json").read_text())
        assert [round(r["sparsity"], 3) for r in history["rounds"]] == [0.0, 0.11, 0.2]
        params = {s: json.loads((exp / lang / s / "params.json").read_text()) for s in TRAINED}
        total = params["ft"]["total"]
        assert params["ft"]["trainable"] > 0.9 * total and params["ft"]["inference"] == total
        assert params["lora"]["inference"] == total
        assert 0 < params["pepsi"]["trainable"] == params["lora"]["trainable"] < 0.01 * total
        alive = json.loads((ticket / "result.json").read_text())["alive_params"]
        assert params["pepsi"]["inference"] == params["lth_ft"]["inference"] == alive < total
        for sys in ("lth_ft", "pepsi"):
            pruned = assert_masks_hold(exp / lang / sys / "model", ticket / "masks.safetensors")
            assert pruned == total - alive
    # Fig. 4 on ko only (the masks on the IMP-trained weights); en's IMP stopped at its target
    for pct in (10, 20):
        fig4 = exp / "ko" / "imp" / "milestones" / f"prune-{pct}" / "decode-trained"
        assert scores(fig4, "test_ko")["metric"] == "cer"
    assert not (exp / "en" / "imp" / "milestones" / "prune-10").exists()
    # the subnetwork check: the ticket pruned on en decoded on ko
    assert scores(exp / "en" / "imp" / "milestones" / "prune-20" / "decode", "test_ko")
    assert not (exp / "transfer_child").exists()
    assert not list(out.rglob(".tmp-*")), "temporary files left behind"


def test_pepsi_mini_recipe_report(pepsi_run) -> None:
    """Figures, the report section and RESULTS.md."""
    _, out, _ = pepsi_run
    exp = out / "exp" / "pepsi"
    for png in ("fig3b_alive_ko.png", "fig3b_alive_en.png", "fig4_prune_ko.png"):
        assert (exp / png).read_bytes()[:8] == PNG_MAGIC, png
    report = (exp / "report.md").read_text()
    for heading in (
        "### Error rates and parameters (Table 3)",
        "### Parameters per language",
        "### Language-specific subnetworks (Table 1)",
        "### Alive parameters per layer group (Fig. 3b)",
        "### Fig. 4: error rate versus prune percentage, ko",
    ):
        assert heading in report
    table = report.split("### Parameters per language")[0]
    for system in ("Whisper zero-shot", "Whisper FFT", "Whisper LoRA", "Whisper LTH"):
        assert f"| {system} | N |" in table or f"| {system} | Y |" in table
    assert "| Whisper LTH | Y | – |" in table and "| PEPSI | Y |" in table
    assert (
        "| System | Pruned | Trainable | Inference | ko CER | ko WER | en CER | en WER |" in table
    )
    assert "| Pruned on | alive 100.0% | alive 80.0% |" in report
    results = (out / "RESULTS.md").read_text()
    assert "## PEPSI on the mini corpus" in results and "## What this run shows" in results
    assert "### pepsi" in (out / "RESULTS-details.md").read_text()  # the per-method tables
    assert "](exp/pepsi/fig4_prune_ko.png)" in results  # links rebased to RESULTS.md
    assert "Table 4" not in report


def test_pepsi_mini_recipe_rerun_skips_and_transfer(pepsi_run) -> None:
    """A rerun skips every finished stage; the en tickets (LTH, PEPSI) adapted to child speech."""
    tmp, out, _ = pepsi_run
    options = [*MINI_OPTIONS[:-2], "--transfer", "true", "--systems", "lth pepsi"]
    again = run_method_recipe("pepsi", tmp, out, *options)
    for name in (
        "pepsi_subset_train_ko",
        "pepsi_decode_zeroshot_decode_test_en",
        "pepsi_imp_ko",
        "pepsi_train_en_pepsi",
        "pepsi_decode_ko_imp_milestones_prune-10_decode-trained_test_ko",
        "pepsi_decode_en_imp_milestones_prune-20_decode_test_ko",
    ):
        assert f"stage '{name}': skipped" in again.stderr, name
    running = {line.split("'")[1] for line in again.stderr.splitlines() if "': running" in line}
    assert running == {
        "pepsi_decode_zeroshot_decode_child_test",
        "pepsi_train_transfer_child_pepsi",
        "pepsi_decode_transfer_child_pepsi_decode_child_test",
        "pepsi_decode_en_imp_milestones_prune-20_decode_child_test",
    }
    exp = out / "exp" / "pepsi"
    ticket = exp / "en" / "imp" / "milestones" / "prune-20"
    for decode in (
        exp / "zeroshot" / "decode",
        ticket / "decode",
        exp / "transfer_child" / "pepsi" / "decode",
    ):
        assert scores(decode, "child_test")["languages"] == ["en"], decode
    transfer = exp / "transfer_child" / "pepsi"
    params = json.loads((transfer / "params.json").read_text())
    alive = json.loads((ticket / "result.json").read_text())["alive_params"]
    assert params["inference"] == alive  # the ticket pruned on en (mini_asr)
    assert assert_masks_hold(transfer / "model", ticket / "masks.safetensors") > 0
    report = (exp / "report.md").read_text()
    table4 = report.split("### Transfer to child (Table 4)")[1].split("###")[0]
    for row in ("| Whisper zero-shot | – |", "| Whisper LTH | – |", "| PEPSI |"):
        assert row in table4
    assert "| PEPSI | " in table4 and "| Y | child |" in table4
    assert "Table 4" in (out / "RESULTS.md").read_text()
    assert not list(out.rglob(".tmp-*")), "temporary files left behind"


# ---------------------------------------------------------------------------------------------
# egs/commonvoice/pepsi: data stages on fake corpora
# ---------------------------------------------------------------------------------------------


def _cv(tmp: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [
        "bash", str(CV_RUN), "--cv-dir", str(tmp / "cv"), "--clovacall-dir", str(tmp / "clova"),
        "--languages", "ca th", "--dev-size", "2", "--nj", "1",
        "--data", str(tmp / "data"), "--expdir", str(tmp / "exp"), *options,
    ]  # fmt: skip
    env = dict(os.environ, speechkd_max_jobs="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def _ids(path: Path) -> tuple[set[str], set[str]]:
    cuts = load_manifest(path)
    return {c.recording_id for c in cuts}, {c.supervisions[0].language for c in cuts}


def _most_upvoted(locale: str, part: str, n: int | None) -> set[str]:
    clips = fake_cv.CLIPS[locale][part]
    ranked = sorted(clips, key=lambda c: (-c[2], c[3], fake_cv.clip_name(locale, c[0])))
    return {fake_cv.clip_name(locale, c[0]).removesuffix(".mp3") for c in ranked[:n]}


@pytest.fixture(scope="module")
def cv_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cv_pepsi")
    fake_cv.build_commonvoice(tmp / "cv")
    fake_clovacall.build_clovacall(tmp / "clova")
    _cv(tmp, "--stage", "0", "--stop-stage", "2")
    return tmp


def test_cv_per_language_sets_and_clovacall(cv_recipe: Path) -> None:
    fbank = cv_recipe / "data" / "fbank" / "pepsi"
    for lang in ("ca", "th"):
        train, langs = _ids(fbank / f"commonvoice_cuts_train_{lang}.jsonl.gz")
        assert langs == {lang} and train == _most_upvoted(lang, "train", None)  # every clip
        dev, langs = _ids(fbank / f"commonvoice_cuts_dev_{lang}.jsonl.gz")
        assert langs == {lang} and dev == _most_upvoted(lang, "dev", 2)
        test, _ = _ids(fbank / f"commonvoice_cuts_test_{lang}.jsonl.gz")
        assert test == _most_upvoted(lang, "test", None) and not (train | dev) & test
    for split, entries in fake_clovacall.ENTRIES.items():
        path = fbank / f"clovacall_cuts_{split}.jsonl.gz"
        ids, langs = _ids(path)
        assert langs == {"ko"} and ids == {e["wav"].removesuffix(".wav") for e in entries}
        for cut in load_manifest(path):  # 8 kHz call audio resampled for Whisper
            assert cut.sampling_rate == 16000 and cut.features.type == "whisper-logmel"
            assert cut.load_features().shape == (cut.num_frames, 80)
    assert not list((cv_recipe / "data").rglob(".tmp-*")), "temporary files left behind"


def test_cv_method_options_are_checked(cv_recipe: Path) -> None:
    # the method stages check their options when sourced (stage 20: no stage runs)
    def check(*options: str) -> subprocess.CompletedProcess:
        return _cv(cv_recipe, "--stage", "20", "--stop-stage", "20", *options, check=False)

    bad = check()  # the defaults name ko and ml, not among ca and th
    assert bad.returncode != 0
    assert "subnet_pairs: 'ko:ml' is not A:B with A and B among the languages (ca th)" in bad.stderr
    bad = check("--subnet-pairs", "")
    assert "fig4_languages: ko is not among the languages (ca th)" in bad.stderr
    bad = check("--subnet-pairs", "", "--fig4-languages", "")
    assert "transfer_language 'ko' is not among the languages (ca th)" in bad.stderr
    bad = check("--subnet-pairs", "th", "--fig4-languages", "", "--transfer-language", "ca")
    assert "subnet_pairs: 'th' is not A:B" in bad.stderr
    bad = check("--subnet-pairs", "th:ca", "--fig4-languages", "th", "--systems", "ft lth x")
    assert "systems: unknown system 'x'" in bad.stderr
    ok = check("--subnet-pairs", "th:ca", "--fig4-languages", "th", "--transfer-language", "ca")
    assert ok.returncode == 0 and "done" in ok.stderr


def test_cv_local_model_directory_is_used_as_it_is(cv_recipe: Path) -> None:
    model = cv_recipe / "models" / "large"
    model.mkdir(parents=True)
    proc = _cv(cv_recipe, "--base", str(model), "--stage", "3", "--stop-stage", "3")
    assert f"{model}: a local model directory, used as it is" in proc.stderr
    assert not (cv_recipe / "data" / "models").exists()
    usage = subprocess.run(["bash", str(CV_RUN), "--help"], capture_output=True, text=True)
    assert "--base openai/whisper-large-v2" in usage.stdout
    assert "--languages ko ml ja sw zh-CN en" in usage.stdout
