"""The joint speech/text ST KD recipes: every stage of egs/mini/st_kd at tiny budgets on the tiny
mini run, and the data stages of egs/mustc/st_kd on miniature MuST-C, CoVoST 2 and Europarl-ST."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from fake_corpora import covost2 as fake_covost
from fake_corpora import europarl_st as fake_ep
from fake_corpora import mustc as fake_mustc
from fake_corpora.tone import write_tone

from tests.mini_recipe import run_method_recipe

ROOT = Path(__file__).resolve().parents[1]
MUSTC_RUN = ROOT / "egs" / "mustc" / "st_kd" / "run.sh"
MINI_RUN = ROOT / "egs" / "mini" / "st_kd" / "run.sh"
# a subset of the systems keeps the run short: one of each kind (every KD loss and scheme file is
# the same stage with another conf/st_kd/schemes file, see tests/test_st_kd_criterion.py)
MINI_OPTIONS = [
    "--c-systems", "tiny_student:teacher",
    "--kd-systems", "kd_res",
    "--schemes", "task",
    "--finetune-systems", "best",
    "--spm-vocab-size", "200",
    "--w2v2-updates", "2",
    "--mbart-updates", "2",
    "--teacher-updates", "2",
    "--student-updates", "1",
    "--scheme-stage-updates", "1",
    "--finetune-updates", "1",
    "--decode-opts", "--beam 2 --max-len-b 6 --batch-size 4",
]  # fmt: skip
SYSTEMS = ["teacher", "c_tiny_student_teacher", "kd_res", "scheme_task", "mstar_kd_res"]


def test_st_kd_mini_recipe(mini_run) -> None:
    """Pre-training, teacher, C, a KD student, a 3-stage scheme, M*, decoding and the report."""
    tmp, _ = mini_run
    out = tmp / "st_kd"
    run_method_recipe("st_kd", tmp, out, *MINI_OPTIONS)
    exp = out / "exp" / "st_kd"

    # the ST data: the mini train/dev/test splits with mBART's language tags
    export = json.loads((exp / "data" / "st" / "export.json").read_text())
    assert set(export["splits"]) == {"train", "dev", "test"}
    assert export["mbart_langs"] == ["de_DE", "en_XX"]
    # stage 11: the tiny wav2vec 2.0 and mBART the teacher starts from
    for model in ("w2v2", "mbart"):
        assert (exp / "pretrain" / model / "checkpoint_last.pt").is_file()
    teacher_log = (exp / "teacher" / "log" / "train.log").read_text()
    assert "--w2v-path" in teacher_log and "--load-pretrained-mbart-from" in teacher_log
    assert "--ddsd-warmup-updates 1" in teacher_log  # scaled to the budget (teacher updates / 2)
    # the KD student and stage 1 of the scheme are pruned from the pre-trained models (the
    # paper's), with their warm-up; C:fine-tuned and the later stages start from trained weights
    # (student updates / 5)
    kd_log = (exp / "kd_res" / "log" / "train.log").read_text()
    scheme_logs = [
        (exp / "scheme_task" / f"stage{n}" / "log" / "train.log").read_text() for n in (1, 2, 3)
    ]
    for log in (kd_log, scheme_logs[0]):
        assert "--student-init pretrained" in log and "--ddsd-warmup-updates 1" in log
        assert f"--w2v-path {exp / 'pretrain' / 'w2v2' / 'checkpoint_last.pt'}" in log
    c_log = (exp / "c_tiny_student_teacher" / "log" / "train.log").read_text()
    assert f"--student-init-checkpoint {exp / 'teacher' / 'checkpoint_best.pt'}" in c_log
    for log in (c_log, *scheme_logs[1:]):
        assert "--ddsd-warmup-updates 0" in log

    for system in SYSTEMS:
        info = json.loads((exp / system / "system.json").read_text())
        model = json.loads((exp / system / "model.json").read_text())
        assert model["depths"] == ("4-4-4" if system == "teacher" else "2-2-2"), system
        assert info["checkpoint"] == model["checkpoint"] and Path(info["checkpoint"]).is_file()
        if system in ("kd_res", "scheme_task", "mstar_kd_res"):
            assert info["init"] == "pretrained", system
        for modality in ("sph", "txt"):
            scores = json.loads(
                (exp / system / f"decode_test_{modality}" / "scores-test.json").read_text()
            )
            assert scores["metric"] == "bleu" and scores["input"] == modality, system
            assert scores["snt"] == 2 and scores["signature"].startswith("nrefs:1|")
            hyps = (exp / system / f"decode_test_{modality}" / "hyp-test.txt").read_text()
            assert len(hyps.splitlines()) == 2
    params = {s: json.loads((exp / s / "model.json").read_text())["params"] for s in SYSTEMS}
    assert all(params[s] < params["teacher"] for s in SYSTEMS[1:])

    # KD students learn from the teacher; the scheme's stages start from each other; M* from the
    # best KD student on dev, without KD
    assert "--teacher-path" in (exp / "kd_res" / "log" / "train.log").read_text()
    stages = exp / "scheme_task"
    for n in (1, 2):
        log = (stages / f"stage{n + 1}" / "log" / "train.log").read_text()
        assert f"loading pretrained model from {stages / f'stage{n}' / 'checkpoint_'}" in log
    stage1_log = (stages / "stage1" / "log" / "train.log").read_text()
    assert "--s2t-loss false --t2t-loss false" in stage1_log
    assert json.loads((exp / "best_kd.json").read_text())["best"] == "kd_res"
    mstar_log = (exp / "mstar_kd_res" / "log" / "train.log").read_text()
    assert f"loading pretrained model from {exp / 'kd_res' / 'checkpoint_best.pt'}" in mstar_log
    assert "--kd-weight 0.0" in mstar_log

    report = (exp / "report.md").read_text()
    for text in (
        "Table 3",
        "Table 4",
        "Table 5",
        "Table 1",
        "What this run shows",
        "| B | 4-4-4 |",
        "C: 2-2-2 (fine-tuned)",
        "M: L_kd_res",
        "M: task",
        "M*: L_kd_res",
        "nrefs:1|",
    ):
        assert text in report, text
    meta = json.loads((exp / "scheme_task" / "results_meta.json").read_text())
    assert meta["description"] == "M: task" and len(meta["commands"]) == 3
    assert all("fairseq-train" in command for command in meta["commands"])
    results = (out / "RESULTS.md").read_text()
    assert "## Joint ST KD, mini" in results and "BLEU" in results

    # a second run finds every stage done
    proc = run_method_recipe(
        "st_kd", tmp, out, *MINI_OPTIONS, "--stage", "10", "--stop-stage", "15"
    )
    assert "running (" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count("skipped (") >= 12


def _fake_corpora(root: Path) -> dict[str, Path]:
    mustc = fake_mustc.build_mustc(root / "MUSTC_v2.0")
    # one segment too short (< 50 ms) and one too long (> 30 s) for training
    txt = mustc / "en-de" / "data" / "train" / "txt"
    write_tone(mustc / "en-de" / "data" / "train" / "wav" / "ted_9.wav", 31.0)
    with open(txt / "train.yaml", "a", encoding="utf-8") as f:
        f.write(
            "- {duration: 0.030000, offset: 1.000000, rW: 1, uW: 0, speaker_id: spk.9, "
            "wav: ted_9.wav}\n"
        )
        f.write(
            "- {duration: 30.500000, offset: 0.200000, rW: 9, uW: 0, speaker_id: spk.9, "
            "wav: ted_9.wav}\n"
        )
    for lang, lines in (
        ("en", ["Oh.", "A very long story."]),
        ("de", ["Oh.", "Eine lange Geschichte."]),
    ):
        with open(txt / f"train.{lang}", "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return {
        "mustc": mustc,
        "covost": fake_covost.build_covost2(root / "cv-corpus-4" / "en", src="en", tgt="de"),
        "europarl": fake_ep.build_europarl_st(root / "europarl"),
    }


def test_st_kd_mustc_data_stages(tmp_path: Path) -> None:
    """Stages 0 and 10 of egs/mustc/st_kd: MuST-C + CoVoST 2 + Europarl-ST en->de train, the
    duration filter, 1% held out as dev, tst-COMMON."""
    dirs = _fake_corpora(tmp_path / "corpora")
    cmd = ["bash", str(MUSTC_RUN), "--stage", "0", "--stop-stage", "10"]
    cmd += ["--mustc-dir", str(dirs["mustc"]), "--covost-dir", str(dirs["covost"])]
    cmd += ["--europarl-dir", str(dirs["europarl"]), "--europarl-audio-ext", "wav"]
    cmd += ["--europarl-convert", "false", "--spm-vocab-size", "40"]
    cmd += ["--data", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp")]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    manifests = tmp_path / "data" / "manifests"
    for name in (
        "mustc_cuts_en-de_train",
        "mustc_cuts_en-de_tst-COMMON",
        "covost2_cuts_en-de_train",
        "europarl_st_cuts_en-de_train",
    ):
        assert (manifests / f"{name}.jsonl.gz").is_file(), name
    st = tmp_path / "exp" / "st_kd" / "data" / "st"
    export = json.loads((st / "export.json").read_text())
    train = export["splits"]["train"]
    n_mustc = sum(len(v) for v in fake_mustc.SEGMENTS["train"].values()) + 2
    n_covost = sum(1 for row in fake_covost.CLIPS.values() if row[3].startswith("train"))
    assert train["cuts_in"] == n_mustc + n_covost + len(fake_ep.SEGMENTS["train"])
    assert (train["dropped_short"], train["dropped_long"]) == (1, 1)
    assert train["heldout"] >= 1 and export["splits"]["dev"]["written"] == train["heldout"]
    assert train["written"] == train["cuts_in"] - 2 - train["heldout"]
    assert export["splits"]["tst-COMMON"]["written"] == 2
    rows = (st / "tst-COMMON.tsv").read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["id", "audio", "n_frames", "tgt_text"]
    assert {r.split("\t")[3] for r in rows[1:]} == {"Ja.", "Nein."}
    config = yaml.safe_load((st / "config_st.yaml").read_text())
    assert config["prepend_tgt_lang_tag_no_change"] is True
    assert "<lang:de>" in (st / "dict.txt").read_text()
    # a second run of the data stages is skipped
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "running (" not in proc.stderr, proc.stderr[-3000:]


def test_st_kd_recipe_rejects_bad_system_lists(tmp_path: Path) -> None:
    """A bad system list stops the recipe before any stage, naming the option and the value."""
    cases = [
        (("--c-systems", "tiny_student:random"), "c_systems: 'tiny_student:random' is not"),
        (("--kd-systems", "kd_nope"), "kd_systems: no "),
        (("--schemes", "nope"), "schemes: no "),
        (("--finetune-systems", "nope"), "finetune_systems: 'nope' is neither best"),
        (("--student-init", "random"), "student init must be pretrained or finetuned"),
    ]
    for options, message in cases:
        cmd = ["bash", str(MUSTC_RUN), "--stage", "20", "--stop-stage", "20", *options]
        cmd += ["--data", str(tmp_path / "data"), "--expdir", str(tmp_path / "exp")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "exp" / "st_kd" / ".stages").exists()  # no stage ran


def test_st_kd_recipes_initialise_students_from_the_pretrained_models() -> None:
    """Both recipes default to the paper's initialisation (wav2vec 2.0 + mBART) and train
    C:fine-tuned beside C:pre-trained (Table 3)."""
    for recipe, arch in ((MUSTC_RUN, "student_6_6_6"), (MINI_RUN, "tiny_student")):
        proc = subprocess.run(
            ["bash", str(recipe), "--help"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        options = proc.stdout + proc.stderr
        assert "--student-init pretrained " in options, recipe
        c_systems = next(x for x in options.splitlines() if "--c-systems" in x).split()
        assert {f"{arch}:teacher", f"{arch}:pretrained"} <= set(c_systems), recipe
