"""The PEPSI report section (speechkd.eval.pepsi_report, speechkd.bin.pepsi_report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkd.bin import pepsi_report as cli
from speechkd.errors import ConfigError, DataError
from speechkd.eval.pepsi_data import (
    Params,
    SubnetPoint,
    build_group,
    fill_params,
    load_error_rates,
    load_system_params,
)
from speechkd.eval.pepsi_report import format_count, render_report
from speechkd.eval.results_json import load_results_json
from speechkd.eval.scoring import load_scoring_input, score_input

REFS = {"u1": "the cat sat on the mat", "u2": "hello world"}


def write_decode(
    decode_dir: Path, set_name: str, hyps: dict[str, str], lang: str = "en", metric: str = "cer"
) -> Path:
    """A decode dir as whisper_decode leaves it: ref/hyp text and scores-<set>.json."""
    decode_dir.mkdir(parents=True, exist_ok=True)
    ref = decode_dir / f"ref-{set_name}.txt"
    hyp = decode_dir / f"hyp-{set_name}.txt"
    ref.write_text("".join(f"{k} {v}\n" for k, v in REFS.items()), encoding="utf-8")
    hyp.write_text("".join(f"{k} {v}\n" for k, v in hyps.items()), encoding="utf-8")
    data = load_scoring_input(ref, hyp, metric, language=lang)
    score_input(data, set_name, decode_dir, metric)
    return decode_dir


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_other_metric_is_rescored_like_the_scorer(tmp_path: Path) -> None:
    hyps = {"u1": "the cat sat on a mat", "u2": "hello word"}
    decode = write_decode(tmp_path / "d", "test_en", hyps)
    rates = load_error_rates(decode, "test_en")
    assert list(rates) == ["cer", "wer"]
    cer = json.loads((decode / "scores-test_en.json").read_text())["score"]
    assert rates["cer"] == pytest.approx(cer, abs=1e-3)
    # the same hypotheses scored with WER by the scoring CLI's code path
    other = tmp_path / "wer"
    data = load_scoring_input(decode / "ref-test_en.txt", decode / "hyp-test_en.txt", "wer", "en")
    score_input(data, "test_en", other, "wer")
    wer = json.loads((other / "scores-test_en.json").read_text())["score"]
    assert rates["wer"] == pytest.approx(wer, abs=1e-3)
    assert rates["wer"] == pytest.approx(100 * 2 / 8)  # one substitution in each sentence
    assert load_error_rates(decode, "test_en", both=False) == {"cer": rates["cer"]}
    # no hypothesis text beside the scores file: only its own metric
    (decode / "hyp-test_en.txt").unlink()
    assert list(load_error_rates(decode, "test_en")) == ["cer"]


def test_scores_file_errors(tmp_path: Path) -> None:
    decode = write_decode(tmp_path / "d", "test_en", dict(REFS))
    with pytest.raises(DataError, match="expected 'test_ko'"):
        (decode / "scores-test_ko.json").write_text((decode / "scores-test_en.json").read_text())
        load_error_rates(decode, "test_ko")
    with pytest.raises(DataError, match="not found"):
        load_error_rates(decode, "test_xx")


def test_params_sources_and_filling(tmp_path: Path) -> None:
    trained = write_json(tmp_path / "p.json", {"total": 1000, "trainable": 10, "inference": 500})
    ticket = write_json(tmp_path / "result.json", {"alive_params": 500, "round": 7})
    assert load_system_params(None) == Params(None, 0, None)
    assert load_system_params(trained) == Params(1000, 10, 500)
    assert load_system_params(ticket) == Params(None, 0, 500)
    bad = write_json(tmp_path / "bad.json", {"total": 1000, "trainable": -1, "inference": 5})
    with pytest.raises(DataError, match="'trainable' must be a non-negative integer"):
        load_system_params(bad)
    with pytest.raises(DataError, match="neither params.json"):
        load_system_params(write_json(tmp_path / "x.json", {"total": 3}))
    filled = fill_params(
        "ko",
        {
            "zero-shot": load_system_params(None),
            "LTH": load_system_params(ticket),
            "PEPSI": load_system_params(trained),
        },
    )
    assert filled["zero-shot"] == Params(1000, 0, 1000) and not filled["zero-shot"].pruned
    assert filled["LTH"] == Params(1000, 0, 500) and filled["LTH"].pruned
    with pytest.raises(DataError, match="disagree"):
        fill_params("ko", {"a": Params(1000, 0, 1000), "b": Params(999, 0, 999)})


def test_format_count() -> None:
    assert format_count(1_543_304_960) == "1.54B"
    assert format_count(2_621_440) == "2.62M"
    assert format_count(9216) == "9,216"
    assert format_count(None) == "–"


def _systems(tmp_path: Path, lang: str, wrong: str) -> list[tuple[str, str, str | None]]:
    """zero-shot (bad), LTH (ticket result) and PEPSI (params.json, good) on test_<lang>."""
    set_name = f"test_{lang}"
    base = tmp_path / lang
    zs = write_decode(base / "zs", set_name, {"u1": "the cat sat on the " + wrong, "u2": "x"})
    lth = write_decode(base / "lth", set_name, {"u1": REFS["u1"], "u2": "x"})
    pepsi = write_decode(base / "pepsi", set_name, dict(REFS))
    result = write_json(base / "result.json", {"alive_params": 600})
    params = write_json(base / "params.json", {"total": 1200, "trainable": 8, "inference": 600})
    return [
        ("Whisper zero-shot", str(zs), None),
        ("Whisper LTH", str(lth), str(result)),
        ("PEPSI", str(pepsi), str(params)),
    ]


def test_report_tables(tmp_path: Path) -> None:
    groups = [
        build_group(lang, [f"test_{lang}"], _systems(tmp_path, lang, wrong))
        for lang, wrong in (("ko", "hat"), ("en", "rug"))
    ]
    history = {
        "format": "speechkd-imp-history-v1",
        "rounds": [
            {"round": 1, "sparsity": 0.1, "alive_fraction_by_group": {"encoder_conv1": 0.8}},
            {"round": 2, "sparsity": 0.19, "alive_fraction_by_group": {"encoder_conv1": 0.7}},
        ],
    }
    subnet = [
        SubnetPoint("ko", on, pct, Path(groups[0].systems[i].decode_dir))
        for on, pct, i in (("ko", 0.0, 0), ("ko", 19.0, 2), ("en", 0.0, 0), ("en", 19.0, 1))
    ]
    text = render_report(
        groups,
        title="PEPSI test",
        transfer=build_group("clovacall", ["test_ko"], _systems(tmp_path / "t", "ko", "bat")),
        transfer_language="ko",
        subnet=subnet,
        subnet_sets=["test"],
        alive=[("ko", history, "fig3b.png")],
        figures=[("Fig. 4", "fig4.png", "| pruned (%) | CER |\n|---|---|\n| 0 | 1.00 |\n")],
    )
    lines = text.splitlines()
    assert lines[0] == "## PEPSI test"
    header = next(line for line in lines if line.startswith("| System | Pruned"))
    assert header.split(" | ")[4:] == ["ko CER", "ko WER", "en CER", "en WER |"]
    pepsi = next(line for line in lines if line.startswith("| PEPSI | Y | 8 | 600 |"))
    assert pepsi.endswith("| 0.00 | 0.00 | 0.00 | 0.00 |")
    zero_shot = next(
        line for line in lines if line.startswith("| Whisper zero-shot | N | – | 1,200 |")
    )
    # zero-shot: one wrong word of 6 and "x" for "hello world" (2 words): 3 / 8 words
    assert "| 37.50 |" in zero_shot
    assert "| 600 (50.0%) |" in next(line for line in lines if line.startswith("| Whisper LTH | –"))
    assert "### Transfer to clovacall (Table 4)" in text
    assert "| PEPSI | 8 | 600 | Y | clovacall |" in text
    assert "| Whisper LTH | – | 600 | Y | – |" in text
    assert "| Pruned on | alive 100.0% | alive 81.0% |" in text
    sub = [line for line in lines if line.startswith(("| ko |", "| en |"))]
    assert sub[0].startswith("| ko | ") and sub[1].startswith("| en | ")
    assert sub[0].split(" | ")[2].strip(" |") == "0.00"  # pruned on ko: PEPSI decode (perfect)
    assert "![Alive parameters per layer group, IMP on ko](fig3b.png)" in text
    assert "| 2 | 19.0% | 70.0 |" in text
    assert "![Fig. 4](fig4.png)" in text and "| 0 | 1.00 |" in text


def test_cli_end_to_end_and_spec_errors(tmp_path: Path) -> None:
    args = ["--set", "test", "--out", str(tmp_path / "out" / "report.md")]
    for name, decode, params in _systems(tmp_path, "ko", "hat"):
        args += ["--system", f"ko:{name}={decode}" + (f",{params}" if params else "")]
    table = tmp_path / "fig4.md"
    table.write_text("| pruned (%) | test_ko CER |\n|---|---|\n| 0 | 12.50 |\n")
    args += ["--figure", f"Fig. 4: CER versus prune %=fig4.png,{table}"]
    assert cli.main(args) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| Whisper LTH | Y | – | 600 |" in text and "| 0 | 12.50 |" in text
    assert not list((tmp_path / "out").glob(".tmp-*"))
    with pytest.raises(ConfigError, match="LANG:NAME=DECODE_DIR"):
        cli.parse_system("PEPSI=dir")
    with pytest.raises(ConfigError, match=r"PCT must lie in \[0, 100\)"):
        cli.parse_subnet("ko:ml:100=dir")
    with pytest.raises(ConfigError, match="given twice"):
        cli.main([*args, "--system", f"ko:PEPSI={tmp_path}"])
    with pytest.raises(ConfigError, match="--transfer-name"):
        cli.main([*args, "--transfer-system", f"PEPSI={tmp_path}"])


def test_results_json_holds_the_table_numbers(tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.md"
    args = ["--set", "test", "--out", str(out)]
    for lang, wrong in (("ko", "hat"), ("en", "rug")):
        for name, decode, params in _systems(tmp_path, lang, wrong):
            args += ["--system", f"{lang}:{name}={decode}" + (f",{params}" if params else "")]
    args += [
        "--transfer-name",
        "child",
        "--transfer-language",
        "en",
        "--transfer-set",
        "test_child",
    ]
    for name, decode, params in _systems(tmp_path / "t", "child", "bat"):
        args += ["--transfer-system", f"{name}={decode}" + (f",{params}" if params else "")]
    args += ["--subnet", f"ko:ko:0={tmp_path / 'ko' / 'zs'}"]
    args += ["--subnet", f"ko:en:19={tmp_path / 'ko' / 'lth'}"]
    history = {
        "format": "speechkd-imp-history-v1",
        "rounds": [
            {"round": 1, "sparsity": 0.1, "alive_fraction_by_group": {"encoder_conv1": 0.8}},
            {"round": 2, "sparsity": 0.19, "alive_fraction_by_group": {"encoder_conv1": 0.7}},
        ],
    }
    args += ["--alive", f"ko={write_json(tmp_path / 'imp-history.json', history)}"]
    table = tmp_path / "fig4.md"
    table.write_text("| pruned (%) | test_ko CER |\n|---|---|\n| 0 | 12.50 |\n| 10 | inf |\n")
    args += ["--figure", f"Fig. 4=fig4.png,{table}"]
    assert cli.main(args) == 0
    text = out.read_text(encoding="utf-8")
    rows = {r.key: r.value for r in load_results_json(out.parent / "RESULTS.json")}
    systems = {k[0] for k in rows}
    assert {"zero_shot", "lth", "pepsi"} <= systems
    assert not {"Whisper zero-shot", "whisper_zero_shot", "whisper_lth"} & systems
    # Table 3: one wrong word of 6 and "x" for "hello world": 3 / 8 words
    assert "| Whisper zero-shot | N | – | 1,200 | " in text and "| 37.50 |" in text
    assert rows[("zero_shot", "test_ko", "ko", "wer")] == pytest.approx(37.5)
    assert rows[("pepsi", "test_en", "en", "cer")] == 0.0
    assert rows[("pepsi", "all", "ko", "params_trainable")] == 8
    assert rows[("lth", "all", "en", "params_inference")] == 600
    assert rows[("lth", "all", "en", "params_alive_pct")] == pytest.approx(50.0)
    assert rows[("zero_shot", "all", "ko", "params")] == 1200
    # Table 4 (transfer), Table 1 (tickets), Fig. 3b and Fig. 4
    assert "| PEPSI | 8 | 600 | Y | child |" in text
    assert rows[("pepsi", "child", "en", "params_trainable")] == 8
    assert rows[("zero_shot", "test_child", "en", "wer")] == pytest.approx(37.5)
    assert rows[("ticket_ko_pruned_0", "test_ko", "ko", "cer")] == pytest.approx(
        rows[("zero_shot", "test_ko", "ko", "cer")]
    )
    assert ("ticket_en_pruned_19", "test_ko", "ko", "cer") in rows
    assert "| 2 | 19.0% | 70.0 |" in text
    assert rows[("imp_round_2", "all", "ko", "alive_pct_encoder_conv1")] == pytest.approx(70.0)
    assert rows[("imp_round_2", "all", "ko", "pruned_pct")] == pytest.approx(19.0)
    assert rows[("imp_pruned_0", "test_ko", "all", "cer")] == pytest.approx(12.5)
    assert ("imp_pruned_10", "test_ko", "all", "cer") not in rows  # "inf" in the table


def test_claims_pepsi_against_fft_and_lth_ft(tmp_path: Path) -> None:
    systems = _systems(tmp_path, "ko", "hat")
    fft = write_decode(tmp_path / "ko" / "fft", "test_ko", dict(REFS))
    lth_ft = write_decode(tmp_path / "ko" / "lth_ft", "test_ko", {"u1": REFS["u1"], "u2": "x"})
    params = write_json(tmp_path / "ft.json", {"total": 1200, "trainable": 1100, "inference": 1200})
    systems += [("Whisper FFT", str(fft), str(params)), ("Whisper LTH-FT", str(lth_ft), None)]
    text = render_report([build_group("ko", ["test_ko"], systems)])
    assert (
        "- PEPSI is no worse than FFT and beats LTH-FT (ko CER): **yes** (PEPSI 0.00, "
        "Whisper FFT 0.00, Whisper LTH-FT " in text
    )
    # every system at chance: no verdict, and no table of n/a
    bad = {"u1": "zzzzzzzzzzzzzzzzzzzzzzzzz", "u2": "qqqqqqqqqqqq"}
    at_chance = [
        (name, str(write_decode(tmp_path / "bad" / name, "test_ko", bad)), params_file)
        for name, _, params_file in systems
    ]
    text = render_report([build_group("ko", ["test_ko"], at_chance)])
    assert (
        "- PEPSI is no worse than FFT and beats LTH-FT (ko CER): **no verdict: the reference "
        "systems are degenerate** (PEPSI 112.12 CER ≥ 95" in text
    )
