"""DistilWhisper report: Table 1, gap closed, parameters and the gate plot from real score files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from speechkd.bin.distilwhisper_report import main
from speechkd.errors import ConfigError, DataError
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.distilwhisper_data import gap_closed, load_gate_usage
from speechkd.eval.distilwhisper_report import (
    Domain,
    compute_gap_table,
    load_system_scores,
    write_report,
)
from speechkd.eval.report_inputs import parse_named
from speechkd.eval.report_kit import load_params
from speechkd.eval.results_json import load_results_json
from speechkd.eval.wer import Utterance, score_utterances
from speechkd.utils.cli import run_cli

WORDS = [f"w{i}" for i in range(10)]

# errors per 10-word utterance, i.e. WER / 10, per system, set and language
ERRORS = {
    "whisper-large": {"test": {"ca": 1, "th": 2}, "test_ood": {"ca": 2, "th": 2}},
    "whisper-small": {"test": {"ca": 5, "th": 6}, "test_ood": {"ca": 4, "th": 2}},
    "DistilWhisper": {"test": {"ca": 3, "th": 3}, "test_ood": {"ca": 3, "th": 1}},
}


def _decode(out_dir: Path, set_name: str, errors: dict[str, int]) -> None:
    """One 10-word utterance per language with ``errors[lang]`` substitutions, scored for real."""
    utts = []
    for lang, n in errors.items():
        hyp = [f"x{i}" if i < n else w for i, w in enumerate(WORDS)]
        utts.append(Utterance(f"{lang}-0", " ".join(WORDS), " ".join(hyp), lang))
    report = score_utterances(utts)
    write_error_rate_files(out_dir, set_name, report, {lang: "basic" for lang in errors})


def _gates(out_dir: Path, set_name: str, shares: dict[str, float]) -> None:
    per_language = {
        lang: {"encoder": s, "decoder": s / 2, "all": s, "utterances": 3}
        for lang, s in shares.items()
    }
    (out_dir / f"gate-usage-{set_name}.json").write_text(
        json.dumps({"set": set_name, "per_language": per_language}), encoding="utf-8"
    )


def _make(tmp_path: Path) -> dict[str, Path]:
    dirs = {}
    for name, sets in ERRORS.items():
        d = tmp_path / "exp" / name / "decode"
        for set_name, errors in sets.items():
            _decode(d, set_name, errors)
        dirs[name] = d
    _gates(dirs["DistilWhisper"], "test", {"ca": 0.5, "th": 0.25})
    _gates(dirs["DistilWhisper"], "test_ood", {"ca": 0.75, "th": 0.375})
    small3k = tmp_path / "exp" / "dw3k" / "decode"
    small3k.mkdir(parents=True)
    _gates(small3k, "test", {"ca": 0.2, "th": 0.1})
    _gates(small3k, "test_ood", {"ca": 0.3, "th": 0.15})
    dirs["dw3k"] = small3k
    params = {
        "whisper-small": {"total": 241_734_912, "trainable": 0, "inference": 241_734_912},
        "DistilWhisper": {"total": 369_000_000, "trainable": 25_000_000, "inference": 266_734_912},
    }
    for name, p in params.items():
        path = tmp_path / "exp" / name / "params.json"
        path.write_text(json.dumps(p), encoding="utf-8")
    return dirs


def test_load_system_scores(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    scores = load_system_scores({n: dirs[n] for n in ERRORS}, ["test", "test_ood"])
    assert list(scores) == list(ERRORS)
    dw = scores["DistilWhisper"]
    assert dw["test"].per_language == {"ca": 30.0, "th": 30.0}
    assert dw["test_ood"].per_language == {"ca": 30.0, "th": 10.0}
    assert dw["test_ood"].average == pytest.approx(20.0)
    assert scores["whisper-small"]["test"].average == pytest.approx(55.0)
    assert dw["test"].metric == "wer"


def test_gap_formula() -> None:
    assert gap_closed(30.0, 55.0, 15.0) == pytest.approx(62.5)
    assert gap_closed(15.0, 55.0, 15.0) == pytest.approx(100.0)
    assert gap_closed(60.0, 55.0, 15.0) == pytest.approx(-12.5)  # worse than small
    assert gap_closed(10.0, 20.0, 20.0) is None  # zero gap: never divides by zero
    assert gap_closed(10.0, 18.0, 20.0) is None  # small better than large
    assert gap_closed(10.0, math.inf, 20.0) is None
    assert gap_closed(math.inf, 30.0, 20.0) is None


def test_gap_table_cells_and_reasons(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    scores = load_system_scores({n: dirs[n] for n in ERRORS}, ["test", "test_ood"])
    domains = [Domain("in-domain", ("test",)), Domain("out-of-domain", ("test_ood",))]
    table = compute_gap_table(scores, "whisper-small", "whisper-large", domains)
    assert list(table.cells) == ["DistilWhisper"]
    assert table.columns == [
        ("in-domain", "avg"),
        ("out-of-domain", "avg"),
        ("test", "ca"),
        ("test", "th"),
        ("test_ood", "ca"),
        ("test_ood", "th"),
    ]
    row = table.cells["DistilWhisper"]
    assert row[("in-domain", "avg")].value == pytest.approx(62.5)
    assert row[("out-of-domain", "avg")].value == pytest.approx(100.0)
    assert row[("test", "ca")].value == pytest.approx(50.0)
    assert row[("test", "th")].value == pytest.approx(75.0)
    assert row[("test_ood", "ca")].value == pytest.approx(50.0)
    zero = row[("test_ood", "th")]
    assert zero.value is None and "= 0.00 ≤ 0" in zero.reason
    with pytest.raises(ConfigError, match="'nope'"):
        compute_gap_table(scores, "nope", "whisper-large", domains)


def test_report_cli(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    out = tmp_path / "report" / "distilwhisper.md"
    plot = tmp_path / "plots" / "gates.png"
    exp = tmp_path / "exp"
    argv = [
        "--system", f"whisper-large={dirs['whisper-large']}",
        "--system", f"whisper-small={dirs['whisper-small']},{exp}/whisper-small/params.json",
        "--system", f"DistilWhisper={dirs['DistilWhisper']},{exp}/DistilWhisper/params.json",
        "--small", "whisper-small", "--large", "whisper-large",
        "--in-domain", "test", "--out-of-domain", "test_ood",
        "--gate-system", f"DistilWhisper 10k={dirs['DistilWhisper']}",
        "--gate-system", f"DistilWhisper 3k={dirs['dw3k']}",
        "--out", str(out), "--plot", str(plot),
    ]  # fmt: skip
    assert main(argv) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("## DistilWhisper\n")
    # Table 1: rows in the given order, in-domain then out-of-domain, 2 decimals
    header = "| System | test:ca | test:th | test:avg | test_ood:ca | test_ood:th | test_ood:avg |"
    assert header in text
    rows = [
        "| whisper-large | 10.00 | 20.00 | 15.00 | 20.00 | 20.00 | 20.00 |",
        "| whisper-small | 50.00 | 60.00 | 55.00 | 40.00 | 20.00 | 30.00 |",
        "| DistilWhisper | 30.00 | 30.00 | 30.00 | 30.00 | 10.00 | 20.00 |",
    ]
    positions = [text.index(r) for r in rows]
    assert positions == sorted(positions)
    # gap closed: avg per domain, then per language; the zero gap is n/a with its reason
    assert (
        "| System | in-domain avg | out-of-domain avg | test:ca | test:th | test_ood:ca | "
        "test_ood:th |" in text
    )
    assert "| DistilWhisper | 62.5 | 100.0 | 50.0 | 75.0 | 50.0 | n/a (1) |" in text
    assert (
        "(1) test_ood:th: WER(whisper-small) − WER(whisper-large) = 20.00 − 20.00 = 0.00 ≤ 0"
        in text
    )
    # parameters, "–" where params.json is absent, overhead at inference vs the small model
    assert "| whisper-large | – | – | – | – |" in text
    assert "| whisper-small | 241.73M | 0 | 241.73M | +0 (+0.0%) |" in text
    assert "| DistilWhisper | 369.00M | 25.00M | 266.73M | +25.00M (+10.3%) |" in text
    # gate usage: table numbers and a relative link to an atomically written PNG
    assert "| System, set | ca | th | avg |" in text
    assert "| DistilWhisper 10k, test (in-domain) | 50.0 | 25.0 | 37.5 |" in text
    assert "| DistilWhisper 10k, test_ood (out-of-domain) | 75.0 | 37.5 | 56.2 |" in text
    assert "| DistilWhisper 3k, test (in-domain) | 20.0 | 10.0 | 15.0 |" in text
    assert "](../plots/gates.png)" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in plot.parent.iterdir() if p.name.startswith(".tmp-")]
    # RESULTS.json beside the Markdown: the same numbers under the stable names
    rows = {r.key: r.value for r in load_results_json(out.parent / "RESULTS.json")}
    assert {k[0] for k in rows} == {
        "teacher", "zero_shot", "distilwhisper", "distilwhisper_10k", "distilwhisper_3k",
    }  # fmt: skip
    assert rows[("teacher", "test", "ca", "wer")] == pytest.approx(10.0)
    assert rows[("zero_shot", "test_ood", "all", "wer")] == pytest.approx(30.0)
    assert rows[("distilwhisper", "test", "all", "wer")] == pytest.approx(30.0)
    assert rows[("distilwhisper", "in-domain", "all", "gap_closed")] == pytest.approx(62.5)
    assert rows[("distilwhisper", "test", "th", "gap_closed")] == pytest.approx(75.0)
    assert ("distilwhisper", "test_ood", "th", "gap_closed") not in rows  # n/a in the table
    assert rows[("distilwhisper", "all", "all", "params")] == 369_000_000
    assert rows[("distilwhisper", "all", "all", "params_inference")] == 266_734_912
    assert ("teacher", "all", "all", "params") not in rows  # "–" in the table
    assert rows[("distilwhisper_10k", "test_ood", "th", "gate_share")] == pytest.approx(37.5)
    assert rows[("distilwhisper_3k", "test", "all", "gate_share")] == pytest.approx(15.0)
    json_text = (out.parent / "RESULTS.json").read_text(encoding="utf-8")
    # deterministic
    assert main(argv) == 0
    assert out.read_text(encoding="utf-8") == text
    assert (out.parent / "RESULTS.json").read_text(encoding="utf-8") == json_text


def test_fewer_languages_are_noted(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    partial = tmp_path / "exp" / "ca-only" / "decode"
    _decode(partial, "test", {"ca": 2})
    out = write_report(
        {
            "whisper-large": dirs["whisper-large"],
            "whisper-small": dirs["whisper-small"],
            "FT ca": partial,
        },
        "whisper-small",
        "whisper-large",
        ["test"],
        [],
        tmp_path / "r.md",
    )
    text = out.read_text(encoding="utf-8")
    assert "| FT ca | 20.00 | – | 20.00 (1) |" in text
    assert "(1) FT ca: test avg over its 1 languages only (ca)." in text
    # gap on ca only: (50 - 20) / (50 - 10) = 75 %; th is missing
    assert "| FT ca | 75.0 (1) | 75.0 | – |" in text
    assert "in-domain avg of FT ca: over the languages that it" in text
    assert "### Gate activation" not in text


def test_missing_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dirs = _make(tmp_path)
    systems = {n: dirs[n] for n in ERRORS}
    with pytest.raises(DataError, match=r"scores-dev\.json: scores file not found"):
        load_system_scores(systems, ["dev"])
    with pytest.raises(DataError, match=r"nothing\.json: params file not found"):
        load_params(tmp_path / "nothing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"total": 1, "trainable": -1, "inference": 1}), encoding="utf-8")
    with pytest.raises(DataError, match="bad.json: field 'trainable'"):
        load_params(bad)
    with pytest.raises(DataError, match=r"gate-usage-test\.json: gate usage file not found"):
        load_gate_usage({"CLSR": dirs["whisper-small"]}, ["test"])
    _gates(dirs["whisper-small"], "test", {"ca": 1.5})
    with pytest.raises(DataError, match=r"\['ca'\]\['all'\] = 1.5 is not in \[0, 1\]"):
        load_gate_usage({"CLSR": dirs["whisper-small"]}, ["test"])
    scores = dirs["whisper-large"] / "scores-test.json"
    payload = json.loads(scores.read_text(encoding="utf-8"))
    scores.write_text(json.dumps({**payload, "metric": "bleu"}), encoding="utf-8")
    with pytest.raises(DataError, match="scores-test.json: metric must be one of"):
        load_system_scores(systems, ["test"])
    # the CLI reports the missing file in one line and exits 1
    argv = [
        "--system", f"a={dirs['whisper-small']}", "--system", f"b={tmp_path / 'none'}",
        "--small", "a", "--large", "b", "--in-domain", "test", "--out", str(tmp_path / "x.md"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: main(argv))
    assert stop.value.code == 1
    assert f"{tmp_path / 'none' / 'scores-test.json'}: scores file not found" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "x.md").exists()


def test_bad_options(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    systems = {n: dirs[n] for n in ERRORS}
    assert parse_named("DistilWhisper 3k=exp/a", "--gate-system") == ("DistilWhisper 3k", ["exp/a"])
    assert parse_named("x=d,p.json", "--system", 2) == ("x", ["d", "p.json"])
    with pytest.raises(ConfigError, match="expected NAME=DECODE_DIR"):
        main(["--system", "nodir", "--small", "a", "--large", "b", "--out", str(tmp_path / "y.md")])
    args = ("whisper-small", "whisper-large")
    with pytest.raises(ConfigError, match="both in- and out-of-domain"):
        write_report(systems, *args, ["test"], ["test"], tmp_path / "r.md")
    with pytest.raises(ConfigError, match="'tiny' is not among the systems"):
        write_report(systems, "tiny", "whisper-large", ["test"], [], tmp_path / "r.md")
    with pytest.raises(ConfigError, match="need a plot path"):
        write_report(systems, *args, ["test"], [], tmp_path / "r.md", gate_systems=systems)


def test_kd_cost_speedup(tmp_path: Path) -> None:
    from speechkd.eval.distilwhisper_data import load_kd_cost
    from speechkd.eval.distilwhisper_report import render_kd_cost

    online = tmp_path / "online.json"
    online.write_text(json.dumps({"history": [{"epoch": 1, "seconds": 30.0}]}))
    cached = tmp_path / "cached.json"
    history = [{"epoch": e, "seconds": s} for e, s in ((1, 11.0), (2, 9.0))]
    cached.write_text(json.dumps({"history": history}))
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"metadata": {"wall_seconds": 20.0}}))
    cost = load_kd_cost(online, cached, index)
    assert cost.speedup_per_epoch == pytest.approx(3.0)
    assert cost.speedup_total == pytest.approx(60.0 / 40.0)
    text = "\n".join(render_kd_cost(cost))
    assert "3.00x" in text and "1.50x" in text
    cached.write_text(json.dumps({"history": []}))
    with pytest.raises(DataError, match="history"):
        load_kd_cost(online, cached)


def test_claims_and_degenerate_references(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    ft = tmp_path / "exp" / "ft" / "decode"
    clsr = tmp_path / "exp" / "clsr" / "decode"
    for set_name in ("test", "test_ood"):
        _decode(ft, set_name, {"ca": 2, "th": 2})
        _decode(clsr, set_name, {"ca": 4, "th": 3})
    systems = {n: dirs[n] for n in ERRORS} | {"FT": ft, "CLSR-FT": clsr}
    out = write_report(
        systems, "whisper-small", "whisper-large", ["test"], ["test_ood"], tmp_path / "r.md"
    )
    text = out.read_text(encoding="utf-8")
    block = text.split("### What this run shows\n\n")[1].split("\n\n###")[0].splitlines()
    assert block == [
        "- FT lowers the error rate of the zero-shot student (in-domain avg WER): **yes** "
        "(FT 20.00 vs whisper-small 55.00 WER, -63.6 % relative).",
        "- The teacher beats the zero-shot student on every target language (in-domain WER): "
        "**yes** (ca 10.00 vs 50.00, th 20.00 vs 60.00).",
        "- DistilWhisper beats CLSR-FT (in-domain, per language): **mixed** (DistilWhisper vs "
        "CLSR-FT WER: ca 30.00 vs 40.00, th 30.00 vs 30.00).",
        "- DistilWhisper beats CLSR-FT (out-of-domain, per language): **yes** (DistilWhisper vs "
        "CLSR-FT WER: ca 30.00 vs 40.00, th 10.00 vs 30.00).",
        "- DistilWhisper closes part of the teacher–student gap (in-domain avg WER; paper: 35.2 % "
        "out of domain): **yes** (DistilWhisper 62.5 %, CLSR-FT 50.0 %).",
        "- DistilWhisper closes part of the teacher–student gap (out-of-domain avg WER; paper: "
        "35.2 % out of domain): **yes** (DistilWhisper 100.0 %, CLSR-FT -50.0 %).",
    ]
    # swapped references: the "teacher" is not better anywhere, so no gap table of n/a cells
    out = write_report(
        systems, "whisper-large", "whisper-small", ["test"], ["test_ood"], tmp_path / "s.md"
    )
    text = out.read_text(encoding="utf-8")
    gap = text.split("### Gap closed")[1].split("###")[0]
    assert "| System |" not in gap and "n/a" not in gap
    assert "**no verdict: the reference systems are degenerate** (in-domain: whisper-large" in gap
    assert (
        "- The teacher beats the zero-shot student on every target language (in-domain WER): "
        "**no** (ca 50.00 vs 10.00, th 60.00 vs 20.00)." in text
    )
    assert "DistilWhisper closes part of the teacher–student gap" in text
    assert text.count("no gap to close") == 4  # two claims, the line replacing the table (x2)


def test_no_gap_is_taken_from_a_teacher_at_chance(tmp_path: Path) -> None:
    dirs = _make(tmp_path)
    _decode(dirs["whisper-large"], "test_ood", {"ca": 10, "th": 10})  # 100 % WER
    systems = {n: dirs[n] for n in ERRORS}
    args = ("whisper-small", "whisper-large", ["test"], ["test_ood"])
    text = write_report(systems, *args, tmp_path / "r.md").read_text(encoding="utf-8")
    gap = text.split("### Gap closed")[1].split("###")[0]
    assert "| System | in-domain avg | test:ca | test:th |" in gap
    assert "| DistilWhisper | 62.5 | 50.0 | 75.0 |" in gap and "test_ood" not in gap
    assert "degenerate** (out-of-domain: whisper-large 100.00 WER ≥ 95)." in gap
    assert (
        "gap (out-of-domain avg WER; paper: 35.2 % out of domain): **no verdict: the reference "
        "systems are degenerate** (whisper-large 100.00 WER ≥ 95)." in text
    )
