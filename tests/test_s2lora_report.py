"""The S2-LoRA report section: Table 2 from score and parameter files, the change against
zero-shot, the rank table and the parameter table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechkd.bin import s2lora_report as cli
from speechkd.errors import ConfigError, DataError
from speechkd.eval.pruning_plots import load_ranks, render_rank_table
from speechkd.eval.results_json import load_results_json
from speechkd.eval.s2lora_report import format_percent, load_set_rate, table2_part, write_report
from speechkd.eval.wer import ErrorCounts

PARAM_TABLE = """### Trainable parameters, whisper-medium (S2-LoRA paper, Table 2)

| method | #trainable | % of Whisper | paper | Whisper total |
|---|---|---|---|---|
| s2lora | 134,144 | 0.02% | 0.02% | 763,857,920 |

### PEPSI parameters, whisper-tiny

| model | #train params |
|---|---|
| LoRA (decoder q,v) | 98,304 |
"""


def write_scores(decode: Path, set_name: str, metric: str, err: int, wrd: int) -> None:
    """A scores-<set>.json with ``err`` substitutions over ``wrd`` reference tokens."""
    decode.mkdir(parents=True, exist_ok=True)
    totals = ErrorCounts(snt=4, wrd=wrd, corr=wrd - err, sub=err, dele=0, ins=0, s_err=min(err, 4))
    payload = {
        "set": set_name,
        "metric": metric,
        "totals": totals.to_dict(),
        "per_language": {"zh": totals.to_dict()},
    }
    (decode / f"scores-{set_name}.json").write_text(json.dumps(payload))


def write_params(path: Path, trainable: int, total: int = 1_000_000) -> Path:
    path.write_text(json.dumps({"total": total, "trainable": trainable, "inference": total}))
    return path


@pytest.fixture
def exp(tmp_path: Path) -> Path:
    # (system, {set: errors over 200 tokens}); en is scored with WER
    rows = {
        "zeroshot": {"zh_c1": 20, "zh_c2": 40, "en": 10},
        "full": {"zh_c1": 30, "zh_c2": 50, "en": 10},
        "s2lora": {"zh_c1": 16, "zh_c2": 30, "en": 10},
    }
    for system, sets in rows.items():
        for set_name, err in sets.items():
            metric = "wer" if set_name == "en" else "cer"
            write_scores(tmp_path / system / "decode", set_name, metric, err, 200)
    write_params(tmp_path / "full.json", 990_000)
    write_params(tmp_path / "s2lora.json", 200)
    ranks = {
        "S2-LoRA": [
            {"layer": 0, "matrix": "enc_sam.q", "rank": 0},
            {"layer": 1, "matrix": "enc_sam.q", "rank": 2},
            {"layer": 0, "matrix": "dec_ffm.fc2", "rank": 8},
            {"layer": 0, "matrix": "enc_sam.v", "rank": 5},
        ],
        "AdaLoRA": [{"layer": 0, "matrix": "enc_sam.v", "rank": 7}],
    }
    (tmp_path / "ranks.json").write_text(json.dumps(ranks))
    (tmp_path / "ranks.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "param_table.md").write_text(PARAM_TABLE)
    return tmp_path


def _report(exp: Path, **kwargs) -> str:
    args = dict(
        systems={
            "Zero-shot": exp / "zeroshot" / "decode",
            "Full-FT": exp / "full" / "decode",
            "S2-LoRA": exp / "s2lora" / "decode",
        },
        in_domain=["zh_c1"],
        out_of_domain=["zh_c2", "en"],
        out=exp / "report" / "report.md",
        params={"Full-FT": exp / "full.json", "S2-LoRA": exp / "s2lora.json"},
        baseline="Zero-shot",
        ranks_plot=exp / "ranks.png",
        ranks_json=exp / "ranks.json",
        param_table=exp / "param_table.md",
        title="S2-LoRA test",
    )
    args.update(kwargs)
    return write_report(**args).read_text()


def test_table2_rows_rates_and_parameters(exp: Path) -> None:
    text = _report(exp)
    assert text.startswith("## S2-LoRA test\n")
    assert "| Method | #Trainable params | % trainable | zh_c1 CER | zh_c2 CER | en WER |" in text
    assert "| Zero-shot | – | – | 10.00 | 20.00 | 5.00 |" in text
    assert "| Full-FT | 990,000 | 99.00% | 15.00 | 25.00 | 5.00 |" in text
    # the lowest of a column in bold; a column where every system ties has no bold
    assert "| S2-LoRA | 200 | 0.02% | **8.00** | **15.00** | 5.00 |" in text
    assert "in-domain: zh_c1; out-of-domain: zh_c2, en" in text
    assert "Utterances per set: zh_c1: 4, zh_c2: 4, en: 4." in text


def test_change_against_zero_shot(exp: Path) -> None:
    text = _report(exp)
    assert "| Full-FT | +5.00 | +5.00 | +0.00 |" in text
    assert "| S2-LoRA | -2.00 | -5.00 | +0.00 |" in text
    assert "- zh_c1 (in-domain, CER): better than Zero-shot: S2-LoRA; worse: Full-FT" in text
    assert (
        "- en (out-of-domain, WER): better than Zero-shot: none; worse: none; "
        "unchanged: Full-FT, S2-LoRA"
    ) in text


def test_ranks_and_parameter_table(exp: Path) -> None:
    text = _report(exp)
    assert "![Rank of every adapted matrix per layer](../ranks.png)" in text
    # rows in the figure's order (encoder SAM q, v, then decoder FFM); AdaLoRA lacks some
    assert "| Encoder SAM W_q | 1.00 | 1/2 | – | – |" in text
    assert "| Encoder SAM W_v | 5.00 | 0/1 | 7.00 | 0/1 |" in text
    assert text.index("Encoder SAM W_v") < text.index("Decoder FFM W_fc2")
    assert "| s2lora | 134,144 | 0.02% | 0.02% | 763,857,920 |" in text
    assert "PEPSI" not in text  # only the Table-2 part of peft_param_table's output


def test_results_json_beside_the_report(exp: Path) -> None:
    text = _report(exp, systems={
        "Zero-shot": exp / "zeroshot" / "decode",
        "Full-FT": exp / "full" / "decode",
        "α-LoRA": exp / "s2lora" / "decode",
        "S2-LoRA": exp / "s2lora" / "decode",
    })  # fmt: skip
    assert "| Full-FT | 990,000 | 99.00% | 15.00 | 25.00 | 5.00 |" in text
    rows = {r.key: r.value for r in load_results_json(exp / "report" / "RESULTS.json")}
    assert {k[0] for k in rows} == {"zero_shot", "full", "alpha_lora", "s2lora", "adalora"}
    # Table 2: the set's language (zh in these score files), the table's numbers
    assert rows[("zero_shot", "zh_c1", "zh", "cer")] == pytest.approx(10.0)
    assert rows[("full", "zh_c2", "zh", "cer")] == pytest.approx(25.0)
    assert rows[("s2lora", "en", "zh", "wer")] == pytest.approx(5.0)
    assert rows[("full", "all", "all", "params_trainable")] == 990_000
    assert rows[("full", "all", "all", "params_trainable_pct")] == pytest.approx(99.0)
    assert ("zero_shot", "all", "all", "params_trainable") not in rows  # "–" in the table
    # change against zero-shot, ranks and the whisper-medium parameter table
    assert rows[("s2lora", "zh_c2", "zh", "cer_change")] == pytest.approx(-5.0)
    assert ("zero_shot", "zh_c2", "zh", "cer_change") not in rows
    assert rows[("s2lora", "all", "all", "mean_rank_enc_sam_q")] == pytest.approx(1.0)
    assert rows[("s2lora", "all", "all", "rank0_layers_enc_sam_q")] == 1
    assert rows[("adalora", "all", "all", "mean_rank_enc_sam_v")] == pytest.approx(7.0)
    assert rows[("s2lora", "all", "all", "params_trainable_whisper_medium")] == 134_144
    assert rows[("s2lora", "all", "all", "params_trainable_pct_whisper_medium")] == 0.02
    assert rows[("s2lora", "all", "all", "params_whisper_medium")] == 763_857_920


def test_optional_parts_are_left_out(exp: Path) -> None:
    text = _report(exp, baseline=None, ranks_plot=None, ranks_json=None, param_table=None)
    assert "Change against" not in text and "Rank distribution" not in text
    assert "Trainable parameters, whisper" not in text


def test_formatting_helpers() -> None:
    assert format_percent(0.0175) == "0.02%"
    assert format_percent(0.001) == "<0.01%"
    assert format_percent(None) == "–"
    assert table2_part("no heading\n| a |\n") == "no heading\n| a |"
    assert render_rank_table({"S2-LoRA": {"dec_cam.o": [0, 0, 4]}})[2] == (
        "| Decoder CAM W_o | 1.33 | 2/3 |"
    )


def test_bad_inputs_are_named(exp: Path) -> None:
    write_scores(exp / "bad" / "decode", "zh_c1", "wer", 1, 10)  # zh_c1 is CER elsewhere
    for set_name in ("zh_c2", "en"):
        write_scores(exp / "bad" / "decode", set_name, "cer", 1, 10)
    systems = {"Zero-shot": exp / "zeroshot" / "decode", "Bad": exp / "bad" / "decode"}
    with pytest.raises(DataError, match="different metrics"):
        _report(exp, systems=systems, params={})
    with pytest.raises(DataError, match="scores-zh_c1.json: scores file not found"):
        load_set_rate(exp / "missing", "zh_c1")
    with pytest.raises(ConfigError, match="baseline 'Nobody'"):
        _report(exp, baseline="Nobody")
    with pytest.raises(ConfigError, match="given twice"):
        _report(exp, out_of_domain=["zh_c1"])
    with pytest.raises(ConfigError, match="unknown systems"):
        _report(exp, params={"Other": exp / "full.json"})
    (exp / "broken.json").write_text(json.dumps({"total": 10, "trainable": -1, "inference": 10}))
    with pytest.raises(DataError, match="'trainable' must be a non-negative integer"):
        _report(exp, params={"S2-LoRA": exp / "broken.json"})
    (exp / "ranks.json").write_text(json.dumps({"S2-LoRA": [{"layer": 0}]}))
    with pytest.raises(DataError, match="bad entry"):
        load_ranks(exp / "ranks.json")
    with pytest.raises(DataError, match="rank heatmap not found"):
        _report(exp, ranks_plot=exp / "none.png", ranks_json=None)
    (exp / "zeroshot" / "decode" / "scores-en.json").write_text('{"set": "en", "metric": "bleu"}')
    with pytest.raises(DataError, match="metric must be one of"):
        load_set_rate(exp / "zeroshot" / "decode", "en")


def test_command_line(exp: Path) -> None:
    out = exp / "cli.md"
    cli.main(
        [
            "--system", f"Zero-shot={exp / 'zeroshot' / 'decode'}",
            "--system", f"S2-LoRA={exp / 's2lora' / 'decode'},{exp / 's2lora.json'}",
            "--baseline", "Zero-shot", "--in-domain", "zh_c1", "--out-of-domain", "zh_c2",
            "--ranks-plot", str(exp / "ranks.png"), "--ranks-json", str(exp / "ranks.json"),
            "--param-table", str(exp / "param_table.md"), "--out", str(out),
        ]
    )  # fmt: skip
    text = out.read_text()
    assert "| S2-LoRA | 200 | 0.02% | **8.00** | **15.00** |" in text
    assert "](ranks.png)" in text
    with pytest.raises(ConfigError, match="given twice"):
        cli.main(
            [
                "--system", f"A={exp / 'zeroshot' / 'decode'}",
                "--system", f"A={exp / 's2lora' / 'decode'}",
                "--in-domain", "zh_c1", "--out", str(out),
            ]
        )  # fmt: skip
    with pytest.raises(ConfigError, match="expected NAME=DECODE_DIR"):
        cli.main(["--system", "nodir", "--in-domain", "zh_c1", "--out", str(out)])


def _model(path: Path, shift: float = 0.0) -> Path:
    """A save_pretrained-like directory: one safetensors file, weights moved by ``shift``."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path.mkdir(parents=True)
    weights = {"w": torch.randn(8, 8), "b": torch.randn(8)}
    save_file({k: v + shift for k, v in weights.items()}, str(path / "model.safetensors"))
    return path


def _name_model(decode: Path, model_dir: Path) -> None:
    """Record ``model_dir`` in every scores file of ``decode`` (as whisper_decode does)."""
    for path in decode.glob("scores-*.json"):
        payload = json.loads(path.read_text())
        path.write_text(json.dumps({**payload, "model_dir": str(model_dir)}))


def test_collapsed_systems_are_called_collapsed(exp: Path) -> None:
    """A method whose learned update is zero (rank 0 everywhere; merged model equal to the
    starting model) is reported as collapsed, not as a result."""
    _name_model(exp / "zeroshot" / "decode", _model(exp / "start"))
    _name_model(exp / "full" / "decode", _model(exp / "full_model", shift=1e-2))
    # BitFit: the same weights as the start (bit for bit); S2-LoRA: rank 0 in every matrix
    for set_name, err in {"zh_c1": 20, "zh_c2": 40, "en": 10}.items():
        metric = "wer" if set_name == "en" else "cer"
        write_scores(exp / "bitfit" / "decode", set_name, metric, err, 200)
    _name_model(exp / "bitfit" / "decode", _model(exp / "bitfit_model"))
    zero = [
        {"layer": i, "matrix": m, "rank": 0} for i in (0, 1) for m in ("enc_sam.v", "dec_ffm.fc1")
    ]
    (exp / "ranks.json").write_text(json.dumps({"S2-LoRA": zero}))
    systems = {
        "Zero-shot": exp / "zeroshot" / "decode",
        "Full-FT": exp / "full" / "decode",
        "BitFit": exp / "bitfit" / "decode",
        "S2-LoRA": exp / "s2lora" / "decode",
    }
    text = _report(exp, systems=systems)
    head = text.split("### Error rates")[0]
    assert "**Collapsed: BitFit, S2-LoRA.**" in head
    assert "- BitFit: the merged model equals the starting model (weight change 0.0e+00)" in head
    assert "- S2-LoRA: rank 0 in all 4 adapted matrices" in head
    assert "| BitFit (collapsed) | – | – | collapsed | collapsed | collapsed |" in text
    assert "| S2-LoRA (collapsed) | 200 | 0.02% | collapsed | collapsed | collapsed |" in text
    # the best of each column among the others (S2-LoRA's own 8.00 and 15.00 are not shown)
    assert "| Zero-shot | – | – | **10.00** | **20.00** | 5.00 |" in text
    assert "| S2-LoRA (collapsed) | collapsed | collapsed | collapsed |" in text
    assert "- collapsed (no update learned, not compared): BitFit, S2-LoRA" in text
    assert "better than Zero-shot: none; worse: Full-FT" in text
    assert "S2-LoRA: collapsed, rank 0 in all 4 adapted matrices: it learned no update." in text
    rows = {r.key: r.value for r in load_results_json(exp / "report" / "RESULTS.json")}
    assert rows[("s2lora", "all", "all", "collapsed")] == 1
    assert rows[("bitfit", "all", "all", "collapsed")] == 1
    assert ("s2lora", "zh_c1", "zh", "cer") not in rows
    assert ("full", "all", "all", "collapsed") not in rows
    assert rows[("full", "zh_c1", "zh", "cer")] == pytest.approx(15.0)


def test_learned_update_measures() -> None:
    from speechkd.eval.learned_update import collapse_reason, zero_rank

    assert zero_rank({"enc_sam.v": [0, 0]}) and not zero_rank({"enc_sam.v": [0, 1]})
    assert not zero_rank({})
    assert collapse_reason(1e-3) is None and collapse_reason(None, {"a": [2]}) is None
    assert collapse_reason(5e-7) == (
        "the merged model equals the starting model (weight change 5.0e-07)"
    )


def test_weight_change_between_models(tmp_path: Path) -> None:
    from speechkd.eval.learned_update import relative_update

    start = _model(tmp_path / "start")
    assert relative_update(_model(tmp_path / "same"), start) == 0.0
    moved = relative_update(_model(tmp_path / "moved", shift=1e-2), start)
    assert 1e-3 < moved < 1e-1
    from safetensors.torch import save_file

    other = tmp_path / "other"
    other.mkdir()
    save_file({"w": torch.zeros(8, 8)}, str(other / "model.safetensors"))
    with pytest.raises(DataError, match="different tensors"):
        relative_update(other, start)


def test_claims(exp: Path) -> None:
    for system, errors in {"lora": (24, 44, 10), "adalora": (14, 50, 10)}.items():
        for set_name, err in zip(("zh_c1", "zh_c2", "en"), errors, strict=True):
            metric = "wer" if set_name == "en" else "cer"
            write_scores(exp / system / "decode", set_name, metric, err, 200)
    systems = {
        "Zero-shot": exp / "zeroshot" / "decode",
        "Full-FT": exp / "full" / "decode",
        "LoRA": exp / "lora" / "decode",
        "AdaLoRA": exp / "adalora" / "decode",
        "S2-LoRA": exp / "s2lora" / "decode",
    }
    params = {"Full-FT": exp / "full.json", "S2-LoRA": exp / "s2lora.json"}
    params["LoRA"] = write_params(exp / "lora.json", 2000)
    params["AdaLoRA"] = write_params(exp / "adalora.json", 4600)
    text = _report(exp, systems=systems, params=params, ranks_json=None)
    block = text.split("### What this run shows\n\n")[1].split("\n\n###")[0].splitlines()
    assert block == [
        "- Every PEFT method lowers the zh_c1 CER below Zero-shot: **no** (Zero-shot 10.00; "
        "not below: LoRA 12.00).",
        "- S2-LoRA beats LoRA on zh_c1 (CER): **yes** (S2-LoRA 8.00 vs LoRA 12.00 CER; "
        "trainable 0.02% vs 0.20%).",
        "- S2-LoRA beats LoRA on zh_c2 (CER): **yes** (S2-LoRA 15.00 vs LoRA 22.00 CER; "
        "trainable 0.02% vs 0.20%).",
        "- S2-LoRA beats LoRA on en (WER): **tie** (S2-LoRA 5.00 vs LoRA 5.00 WER; "
        "trainable 0.02% vs 0.20%).",
        "- S2-LoRA beats AdaLoRA on zh_c1 (CER): **no** (S2-LoRA 8.00 vs AdaLoRA 7.00 CER; "
        "trainable 0.02% vs 0.46% (paper: 0.02% vs 0.46%)).",
        "- S2-LoRA beats AdaLoRA on zh_c2 (CER): **yes** (S2-LoRA 15.00 vs AdaLoRA 25.00 CER; "
        "trainable 0.02% vs 0.46% (paper: 0.02% vs 0.46%)).",
        "- S2-LoRA beats AdaLoRA on en (WER): **tie** (S2-LoRA 5.00 vs AdaLoRA 5.00 WER; "
        "trainable 0.02% vs 0.46% (paper: 0.02% vs 0.46%)).",
        "- No method forgets zh_c2 (CER not above Zero-shot): **no** (worse: Full-FT +5.00, "
        "LoRA +2.00, AdaLoRA +5.00).",
        "- No method forgets en (WER not above Zero-shot): **yes** (4 methods).",
        "- Every method learned an update: **yes** (4 methods).",
    ]


def test_claims_without_verdict_when_every_system_is_at_chance(exp: Path) -> None:
    for system in ("zeroshot", "full", "s2lora"):
        for set_name in ("zh_c1", "zh_c2", "en"):
            metric = "wer" if set_name == "en" else "cer"
            write_scores(exp / system / "decode", set_name, metric, 196 + len(system) % 3, 200)
    text = _report(exp, ranks_json=None)
    assert (
        "- Every PEFT method lowers the zh_c1 CER below Zero-shot: **no verdict: the reference "
        "systems are degenerate** (Zero-shot 99.00 CER ≥ 95, S2-LoRA 98.00 CER ≥ 95)." in text
    )
    assert "No method forgets zh_c2 (CER not above Zero-shot): **no verdict" in text
