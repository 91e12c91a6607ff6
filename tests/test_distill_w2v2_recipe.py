"""The DistillW2V2 mini recipe end to end at toy budgets (2 updates per fairseq run).

Teacher pre-training and LF-MMI fine-tuning, step 1 (M4), step 2, the single-step
baseline, decoding (best path, lexicon + LM, streaming) and the report, on the tiny mini corpus.
"""

from __future__ import annotations

import json
import os
import subprocess

from tests.mini_recipe import ROOT

BUDGET = "optimization.max_update=2 checkpoint.save_interval_updates=2 "
BUDGET += "dataset.validate_interval_updates=2 dataset.max_tokens=160000"


def test_distill_w2v2_mini_recipe(mini_run) -> None:
    tmp, _ = mini_run
    out = tmp / "distill_w2v2"
    cmd = ["bash", str(ROOT / "egs" / "mini" / "distill_w2v2" / "run.sh"), "--stage", "10"]
    cmd += ["--mini-data", str(tmp / "data"), "--mini-exp", str(tmp / "exp")]
    cmd += ["--data", str(out / "data"), "--expdir", str(out / "exp")]
    cmd += ["--results", str(out / "RESULTS.md"), "--settings", "M4", "--test-names", "test"]
    cmd += ["--den-order", "2", "--lm-order", "2", "--rtf-models", "tiny"]
    # lexicon + LM decoding is tested on its own (tests/test_lexicon_decoder.py), for time
    cmd += ["--decoders", "best_path streaming"]
    cmd += ["--rtf-opts", "--streaming --audio-seconds 2 --repeats 1"]
    for stage in ("pretrain", "finetune", "distill"):
        cmd += [f"--{stage}-opts", BUDGET]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    exp = out / "exp" / "distill_w2v2"
    roles = {}
    for system in ("teacher", "sn_M4", "ss", "ss_single"):
        info = json.loads((exp / system / "system.json").read_text())
        roles[system] = info["role"]
        assert info["params"] > 0
        scores = json.loads((exp / system / "decode_test" / "scores-test.json").read_text())
        assert scores["decoder"] == "greedy" and scores["per_language"]["en"]["wrd"] > 0
    assert roles == {
        "teacher": "teacher",
        "sn_M4": "step1",
        "ss": "step2",
        "ss_single": "single_step",
    }
    assert json.loads((exp / "ss" / "system.json").read_text())["teacher"] == "sn_M4"
    # chunk-by-chunk streaming decodes exactly what the chunk-masked full forward decodes
    for system in ("ss", "ss_single"):
        full = (exp / system / "decode_test" / "hyp-test.txt").read_text()
        streamed = (exp / system / "decode_test_streaming" / "hyp-test.txt").read_text()
        assert full == streamed, system
    report = (out / "RESULTS.md").read_text()
    for heading in ("Table 1", "Table 2", "Table 3"):
        assert heading in report
    assert "(600, 48)" in report and "480 ms" in report
    assert not list(out.rglob(".tmp-*")), "temporary files left behind"
    # a rerun finds every stage done
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "running (" not in rerun.stderr.replace("running (force", ""), rerun.stderr[-3000:]
