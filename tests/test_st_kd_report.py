"""The joint ST KD report section: labels, tables, claims and RESULTS.json from fake system dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkd.eval.report_inputs import parse_system_specs
from speechkd.eval.results_json import load_results_json
from speechkd.eval.st_kd_data import load_systems, result_system_names
from speechkd.eval.st_kd_report import params_table, write_report

SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def _system(exp: Path, name: str, bleu: tuple[float, float], params: int, **fields: str) -> str:
    """A system dir as the recipe leaves it: system.json, model.json, the two scores files."""
    d = exp / name
    info = {"name": name, "arch": "tiny_student", "depths": "2-2-2", "init": "teacher"}
    info.update(fields, checkpoint=str(d / "checkpoint_best.pt"))
    d.mkdir(parents=True)
    (d / "system.json").write_text(json.dumps(info))
    (d / "model.json").write_text(json.dumps({"params": params, "depths": info["depths"]}))
    for modality, score in zip(("sph", "txt"), bleu, strict=True):
        out = d / f"decode_test_{modality}"
        out.mkdir()
        payload = {"set": "test", "metric": "bleu", "score": score, "input": modality,
                   "signature": SIGNATURE, "snt": 10}  # fmt: skip
        (out / "scores-test.json").write_text(json.dumps(payload))
    return f"{name}={d}"


def _teacher(exp: Path, bleu: tuple[float, float]) -> str:
    """The teacher B (4-4-4 from wav2vec 2.0 + mBART, 1000 parameters) as the recipe leaves it."""
    return _system(exp, "teacher", bleu, 1000, role="teacher", arch="tiny_teacher",
                   depths="4-4-4", init="pretrained", scheme="teacher")  # fmt: skip


def _claims(report: str) -> list[str]:
    return report.split("### What this run shows\n\n")[1].split("\n\n")[0].splitlines()


def test_st_kd_report_tables_and_claims(tmp_path: Path) -> None:
    """Labels, degradation, the best of a block and the claims of the report."""
    exp = tmp_path / "exp"
    specs = [
        _teacher(exp, (20.0, 30.0)),
        _system(exp, "c_ft", (10.0, 24.0), 600, role="c", scheme="teacher"),
        _system(exp, "c_pt", (12.0, 27.0), 600, role="c", init="pretrained", scheme="teacher"),
        _system(exp, "kd_res_enc", (13.0, 27.0), 600, role="kd", scheme="kd_res_enc"),
        _system(exp, "kd_feat", (13.0, 26.5), 600, role="kd", scheme="kd_feat"),
        _system(exp, "kd_rel", (11.0, 26.0), 600, role="kd", scheme="kd_rel"),
        _system(exp, "kd_res", (15.0, 28.0), 600, role="kd", scheme="kd_res"),
        _system(exp, "kd_res_feat", (14.0, 28.5), 600, role="kd", scheme="kd_res_feat"),
        _system(exp, "scheme_task", (16.0, 27.5), 600, role="scheme", scheme="task"),
        _system(exp, "mstar_kd_res", (17.0, 28.0), 600, role="finetune", scheme="finetune",
                base="kd_res"),
    ]  # fmt: skip
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"best": "kd_res", "set": "dev", "input": "sph",
                                "bleu": {"kd_res": 9.0, "kd_rel": 3.0}}))  # fmt: skip
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"vocab_size": 100, "models": {"student_6_6_6": {
        "depths": "6-6-6", "counts": {"total": 798_110_000, "embedded": 527_290_000,
                                      "non_embedded": 270_820_000},
        "total_pct": 76.01, "non_embedded_pct": 51.81,
        "paper": {"total": 364.40, "non_embedded": 270.82}}}}))  # fmt: skip
    out = write_report(
        parse_system_specs(specs), ["test"], tmp_path / "report.md", best=best, params=params
    )
    report = out.read_text()
    # labels, degradation 100 (B - X) / B, the paper's counterparts, the best of each block
    rows = [
        "| C: 2-2-2 (pre-trained) | 2-2-2 | 0.00 | **12.00** | 40.00 | **27.00** | 10.00 |",
        "| M: L_kd_res(enc) | 2-2-2 | 0.00 | **13.00** | 35.00 | **27.00** | 10.00 | 23.78 |",
        "| M: L_kd_res + L_kd_feat | 2-2-2 | 0.00 | 14.00 | 30.00 | **28.50** | 5.00 |",
        "| M*: L_kd_res | 2-2-2 | 0.00 | 17.00 | 15.00 | 28.00 | 6.67 | 25.33 | 32.07 |",
    ]
    for row in rows:
        assert row in report, row
    assert _claims(report) == [
        "- KD beats the compressed model trained without KD: **yes** (M*: L_kd_res 17.00 vs "
        "C: 2-2-2 (pre-trained) 12.00 BLEU[sph]; 6 of 7 KD students above it).",
        "- Response KD (L_kd_res) is the best KD loss (paper: 24.72): **yes** (M: L_kd_res "
        "(15.00) > M: L_kd_res + L_kd_feat (14.00) > M: L_kd_res(enc) (13.00) = M: L_kd_feat "
        "(13.00) > M: L_kd_rel (11.00)).",
        "- Incremental training beats non-incremental M: L_kd_res (paper: 25.11 vs 24.72): "
        "**yes** (M: task 16.00 vs M: L_kd_res 15.00 BLEU[sph]).",
        "- Fine-tuning without KD (M*) improves M: L_kd_res: **yes** (M*: L_kd_res 17.00 vs "
        "M: L_kd_res 15.00 BLEU[sph]).",
        "- The best compressed model keeps at least the paper's 89.2 % of B's BLEU[sph]: **no** "
        "(M*: L_kd_res: 85.0 % of BLEU[sph], 93.3 % of BLEU[txt] with 60.0 % of its parameters).",
    ]
    assert "fine-tunes M: L_kd_res, the highest dev BLEU[sph]" in report

    # RESULTS.json beside the report: the paper's names, the tables' numbers
    results = {r.key: r.value for r in load_results_json(tmp_path / "RESULTS.json")}
    assert {k[0] for k in results} == {
        "b", "c_finetuned", "c_pretrained", "kd_res_enc", "kd_feat", "kd_rel", "kd_res",
        "kd_res_feat", "task", "m_star_kd_res", "arch_student_6_6_6",
    }  # fmt: skip
    assert results[("b", "test", "de", "bleu_sph")] == 20.0
    assert results[("c_pretrained", "test", "de", "bleu_txt")] == 27.0
    assert results[("c_pretrained", "test", "de", "degradation_sph")] == pytest.approx(40.0)
    assert results[("m_star_kd_res", "test", "de", "degradation_txt")] == pytest.approx(
        6.6667, 1e-4
    )
    assert results[("m_star_kd_res", "tst-COMMON", "de", "paper_bleu_sph")] == 25.33
    assert ("b", "test", "de", "degradation_sph") not in results  # "–" in the table
    assert results[("task", "all", "all", "params")] == 600
    assert results[("task", "all", "all", "params_pct_of_b")] == pytest.approx(60.0)
    assert "| student_6_6_6 | 6-6-6 | 798.11 | 527.29 | 270.82 | 76.01 | 51.81 | 364.40 |" in report
    assert results[("arch_student_6_6_6", "all", "all", "params")] == 798_110_000
    assert results[("arch_student_6_6_6", "all", "all", "paper_params")] == 364_400_000
    assert results[("arch_student_6_6_6", "all", "all", "params_non_embedded_pct")] == 51.81
    assert results[("kd_rel", "dev", "de", "bleu_sph")] == 3.0  # the choice of the best


def test_st_kd_report_has_no_verdict_against_a_teacher_at_chance(tmp_path: Path) -> None:
    """B under 1 BLEU: no claim has a verdict, and no degradation is taken from B."""
    exp = tmp_path / "exp"
    specs = [
        _teacher(exp, (0.07, 0.07)),
        _system(exp, "c_ft", (0.07, 0.07), 600, role="c", scheme="teacher"),
        _system(exp, "kd_feat", (0.18, 0.07), 600, role="kd", scheme="kd_feat"),
    ]  # fmt: skip
    report = write_report(parse_system_specs(specs), ["test"], tmp_path / "r.md").read_text()
    assert _claims(report)[0] == (
        "- KD beats the compressed model trained without KD: **no verdict: the reference "
        "systems are degenerate** (B 0.07 BLEU[sph] < 1)."
    )
    assert all("**no verdict" in line for line in _claims(report))
    assert "Degradation (%)" not in report and "-142" not in report
    assert (
        "Degradation [sph], [txt] against B: **no verdict: the reference systems are "
        "degenerate** (B 0.07 BLEU[sph] < 1; B 0.07 BLEU[txt] < 1)." in report
    )
    assert "| M: L_kd_feat | 2-2-2 | 0.00 | 0.18 | 0.07 | 23.69 | 31.05 |" in report
    # RESULTS.json keeps its rows as before
    results = {r.key: r.value for r in load_results_json(tmp_path / "RESULTS.json")}
    assert results[("kd_feat", "test", "de", "degradation_sph")] == pytest.approx(-157.142857)


def test_st_kd_result_names_of_several_c(tmp_path: Path) -> None:
    """C systems that share an initialisation are told apart by their depths in RESULTS.json."""
    exp = tmp_path / "exp"
    specs = [
        _teacher(exp, (20.0, 30.0)),
        _system(exp, "c_666", (10.0, 24.0), 600, role="c", init="pretrained", scheme="teacher"),
        _system(exp, "c_882", (9.0, 23.0), 500, role="c", init="pretrained", scheme="teacher",
                depths="8-8-2"),
        _system(exp, "c_ft", (11.0, 25.0), 600, role="c", scheme="teacher"),
    ]  # fmt: skip
    systems = load_systems(parse_system_specs(specs), ["test"])
    assert result_system_names(systems) == {
        "teacher": "b",
        "c_666": "c_2_2_2_pretrained",
        "c_882": "c_8_8_2_pretrained",
        "c_ft": "c_finetuned",
    }


def test_parameter_table_explains_the_vocabulary() -> None:
    """The teacher's total beside the paper's: the full mbart.cc25 vocabulary is counted."""
    report = {
        "vocab_size": 250_027,
        "notes": {"implied_vocabulary": 45_685},
        "models": {
            "teacher_12_12_12": {
                "depths": "12-12-12",
                "counts": {"total": 1_050_040_000, "embedded": 527_290_000,
                           "non_embedded": 522_750_000},
                "total_pct": 100.0, "non_embedded_pct": 100.0,
                "paper": {"total": 616.33, "non_embedded": 522.76},
            }
        },
    }  # fmt: skip
    caption = params_table(report)[-1]
    assert caption == (
        "Totals differ from the paper's through the vocabulary: every token table here has "
        "250,027 entries (mbart.cc25's full vocabulary), so teacher_12_12_12 counts 1050.04M "
        "parameters beside the paper's 616.33M, 527.29M of them embedded against the paper's "
        "93.57M, a vocabulary of about 45,685 entries. The non-embedded counts (522.75M against "
        "522.76M) compare the architectures."
    )
