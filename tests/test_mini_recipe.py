"""End to end: the data stages of egs/mini/run.sh at tiny scale, skipping and re-running."""

from __future__ import annotations

import json

import yaml
from lhotse import load_manifest

from tests.mini_recipe import assert_training_lowered_loss, run_method_recipe, run_mini


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
    assert (data / "whisper_fbank" / "mini_asr_cuts_test_ood.jsonl.gz").is_file()
    foundation = tmp / "exp" / "whisper_foundation"
    for size in ("teacher", "student"):
        model = foundation / size / "model"
        assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()
        config = json.loads((model / "config.json").read_text())
        assert config["max_source_positions"] == 900  # the 18 s encoder window
        for split in ("test", "test_ood"):  # stage 9: the teacher-student gap
            assert (foundation / size / "decode" / f"scores-{split}.json").is_file()
    assert (foundation / "student" / "model").resolve() == (foundation / "base").resolve()
    bench = json.loads((foundation / "window_benchmark" / "window-benchmark.json").read_text())
    assert set(bench["windows"]) == {"30.0", "18.0"}
    for window in bench["windows"].values():
        assert window["train_step_seconds"] > 0 and window["per_language"]
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
    details = (tmp / "RESULTS-details.md").read_text()
    assert "conv256-phone-ctc-greedy (per)" in report and "## Environment" in details
    assert "./run.sh --scale tiny" in details  # the recipe command is recorded


def test_rerun_skips_and_changed_config_reruns(mini_run) -> None:
    tmp, _ = mini_run
    again = run_mini(tmp, "--stage", "0", "--stop-stage", "5")
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
    changed = run_mini(tmp, "--stage", "3", "--stop-stage", "3", "--bpe-vocab-size", "90")
    assert "stage 'units': running (parameters changed)" in changed.stderr
    assert "stage 'corpus'" not in changed.stderr
    assert (tmp / "data" / "lang_bpe_90" / "bpe.model").is_file()


def test_distilwhisper_mini_recipe(mini_run) -> None:
    """Every DistilWhisper stage on the tiny corpus and tiny foundation models."""
    tmp, _ = mini_run
    dw = tmp / "dw"
    run_method_recipe(
        "distilwhisper",
        tmp,
        dw,
        "--languages",
        "ca th",
        "--top-k",
        "8",
        "--train-opts",
        "--epochs 1 --lr 1e-3 --max-cuts 4 --select-max-cuts 1 --select-tokens-per-second 1 "
        "--log-interval 1",
        "--decode-opts",
        "--max-new-tokens 4",
        "--measure-online-kd",
        "true",
        # the KL variant is the same stages with another config (tests/test_distil.py)
        "--systems",
        "ft lora_ft clsr_ft distilwhisper",
    )
    exp = dw / "exp" / "distilwhisper"
    systems = ["zeroshot_teacher", "zeroshot_student", "ft", "lora_ft", "clsr_ft", "distilwhisper"]
    for system in systems:
        for test_set in ("test", "test_ood"):
            scores = json.loads((exp / system / "decode" / f"scores-{test_set}.json").read_text())
            assert sorted(scores["per_language"]) == ["ca", "th"], system
    # FT and LoRA-FT: one model per language, trained on that language's cuts and decoding them
    for system in ("ft", "lora_ft"):
        for lang in ("ca", "th"):
            run = exp / system / lang
            assert (run / "model" / "model.safetensors").is_file(), (system, lang)
            config = yaml.safe_load((run / "config.yaml").read_text())
            for key in ("train_cuts", "dev_cuts"):
                assert {c.supervisions[0].language for c in load_manifest(config[key])} == {lang}
        record = json.loads((exp / system / "decode" / "decode-test.json").read_text())
        assert record["language_models"] == {
            lang: str(exp / system / lang / "model") for lang in ("ca", "th")
        }
    for run in [exp / "ft" / "ca", exp / "lora_ft" / "ca", exp / "clsr_ft", exp / "distilwhisper"]:
        assert_training_lowered_loss(run)
    # every system keeps the epoch with the lowest dev WER
    for run in [exp / s / lang for s in ("ft", "lora_ft") for lang in ("ca", "th")] + [
        exp / "clsr_ft",
        exp / "distilwhisper",
    ]:
        best = json.loads((run / "best-checkpoint.json").read_text())
        assert best["select_by"] == "wer" and best["valid_wer"] >= 0, run
    for system in ("clsr_ft", "distilwhisper"):
        assert sorted(
            p.name for p in (exp / system / "language_modules").glob("*.safetensors")
        ) == [
            "ca.safetensors",
            "th.safetensors",
        ]
        assert (exp / system / "decode" / "gate-usage-test_ood.json").is_file()
    assert (exp / "teacher_cache" / "index.json").is_file()
    assert (exp / "gate_usage.png").is_file()
    report = (dw / "RESULTS.md").read_text()
    for heading in ("Error rates (Table 1)", "Gap closed", "Parameters", "Gate activation"):
        assert heading in report
    assert "Speed-up per epoch" in report
    assert not list(dw.rglob(".tmp-*")), "temporary files left behind"
