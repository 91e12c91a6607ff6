"""RESULTS.md from fake experiment directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkd.bin.write_results import main
from speechkd.errors import DataError
from speechkd.eval.bleu import compute_bleu
from speechkd.eval.decode_files import write_error_rate_files, write_translation_files
from speechkd.eval.env import collect_environment, git_revision
from speechkd.eval.results import collect_scores, write_results
from speechkd.eval.wer import Utterance, score_utterances

ENV = {
    "python": "3.11.0",
    "packages": {"torch": "2.13.0", "transformers": "5.23.0", "lhotse": "1.33.0", "fairseq": "x"},
    "cpu": "Fake CPU (2 logical CPUs)",
    "gpus": [],
    "os": "Linux-test",
}
GIT = {"hash": "0123456789abcdef", "dirty": True}


def _asr(out_dir: Path, set_name: str, wrong: int, command: str | None = None) -> None:
    utts = [
        Utterance(f"ca-{i}", "a b c d", "a b c d" if i >= wrong else "a x c d", "ca")
        for i in range(4)
    ] + [Utterance("th-0", "ก ข 12", "ก ข 13", "th")]
    report = score_utterances(utts)
    extra = {"command": command} if command else {}
    write_error_rate_files(out_dir, set_name, report, {"ca": "basic", "th": "split"}, **extra)


def _make_exp(root: Path) -> None:
    # created in non-sorted order on purpose
    pepsi = root / "pepsi" / "w2v2-s1"
    _asr(pepsi / "decode", "test", wrong=2)
    dw = root / "distilwhisper" / "small-js"
    (dw).mkdir(parents=True)
    (dw / "results_meta.json").write_text(
        json.dumps(
            {
                "method": "DistilWhisper",
                "model": "whisper-small + CLSR (JS KD)",
                "description": "language experts, JS divergence",
                "command": "./run.sh --stage 0 --stop-stage 9",
                "trainable_params": 10_500_000,
                "total_params": 250_000_000,
            }
        ),
        encoding="utf-8",
    )
    _asr(dw / "decode_greedy", "test", wrong=1, command="python -m speechkd.bin.score --x")
    _asr(dw / "decode_greedy", "dev", wrong=0)
    st = root / "joint_st" / "8-8-2"
    score = compute_bleu(["Der Hund läuft ."], ["Der Hund läuft ."], language="de")
    write_translation_files(
        st / "decode",
        "tst-COMMON",
        ["u"],
        ["Der Hund läuft ."],
        ["Der Hund läuft ."],
        score,
        {"de": score},
    )


def test_results_markdown(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _make_exp(exp)
    commands = tmp_path / "commands.log"
    commands.write_text("cd egs/mini\n./run.sh --stage 0\n\n", encoding="utf-8")
    out = write_results(
        [exp],
        tmp_path / "RESULTS.md",
        title="Mini results",
        commands_files=[commands],
        env=ENV,
        git=GIT,
    )
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Mini results\n")
    assert "[RESULTS-details.md](RESULTS-details.md)" in text
    # environment, commands, experiments and sclite tables are in the details beside it
    details = (tmp_path / "RESULTS-details.md").read_text(encoding="utf-8")
    assert details.startswith("# Mini results: details\n")
    assert "| git | 0123456789abcdef (dirty) |" in details
    assert "| torch | 2.13.0 |" in details and "| GPU | none |" in details
    assert "./run.sh --stage 0 --stop-stage 9" in details
    assert "python -m speechkd.bin.score --x" in details
    assert "cd egs/mini\n./run.sh --stage 0\n" in details
    assert "## Environment" not in text and "## Commands" not in text
    # experiments table with parameters from the meta file
    assert (
        "| DistilWhisper | whisper-small + CLSR (JS KD) | language experts, JS divergence | "
        "10.50M | 250.00M | `exp/distilwhisper/small-js` |" in details
    )
    # methods sorted; per-language columns and averages
    assert text.index("### DistilWhisper") < text.index("### joint_st") < text.index("### pepsi")
    assert "| System | Set | ca | th | Avg | WER (all) | Normaliser |" in text
    # pepsi: ca 2 sub / 16 words = 12.5; th 1/3 = 33.33; avg 22.92; pooled 3/19
    assert "| w2v2-s1 (decode) | test | 12.50 | 33.33 | 22.92 | 15.79 | basic / split |" in text
    assert "| whisper-small + CLSR (JS KD) (decode_greedy) | dev | 0.00 | 33.33 |" in text
    # BLEU with its signature, pipes escaped for Markdown
    sig = "nrefs:1\\|case:mixed\\|eff:no\\|tok:13a"
    assert f"| 8-8-2 (decode) | tst-COMMON | 100.00 | 100.00 | `{sig}" in text
    # sclite tables per set
    assert "### test (WER)" in details and "### dev (WER)" in details
    assert (
        "| pepsi: w2v2-s1 (decode) | 5 | 19 | 16 (84.2%) | 3 (15.8%) | 0 (0.0%) | 0 (0.0%) | "
        "3 (15.8%) | 3 (60.0%) |" in details
    )
    assert "sclite" not in text.split("\n", 4)[-1]
    # deterministic: writing again gives the same bytes
    again = write_results(
        [exp], tmp_path / "R2.md", title="Mini results", commands_files=[commands], env=ENV, git=GIT
    )
    assert again.read_text(encoding="utf-8") == text.replace("RESULTS-details", "R2-details")
    assert (tmp_path / "R2-details.md").read_text(encoding="utf-8") == details.replace(
        "[RESULTS.md](RESULTS.md)", "[R2.md](R2.md)"
    )


def test_collect_scores_order_and_experiments(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _make_exp(exp)
    entries = collect_scores([exp])
    keys = [(e.experiment.method, e.decode, e.set_name) for e in entries]
    assert keys == [
        ("DistilWhisper", "decode_greedy", "dev"),
        ("DistilWhisper", "decode_greedy", "test"),
        ("joint_st", "decode", "tst-COMMON"),
        ("pepsi", "decode", "test"),
    ]
    assert entries[-1].experiment.model == "w2v2-s1" and entries[-1].experiment.meta == {}


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        collect_scores([tmp_path / "missing"])
    bad = tmp_path / "exp" / "m" / "x"
    bad.mkdir(parents=True)
    (bad / "scores-test.json").write_text('{"set": "test"}', encoding="utf-8")
    with pytest.raises(DataError, match="scores-test.json: field 'metric' missing"):
        collect_scores([tmp_path / "exp"])
    (bad / "scores-test.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(DataError, match="cannot read JSON"):
        collect_scores([tmp_path / "exp"])


def test_cli_and_environment(tmp_path: Path, repo_root: Path) -> None:
    exp = tmp_path / "exp"
    _asr(exp / "m" / "model" / "decode", "test", wrong=1)
    out = tmp_path / "RESULTS.md"
    assert main(["--exp-dir", str(exp), "--out", str(out), "--repo-dir", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS-details.md").read_text(encoding="utf-8")
    assert "| git | not a git checkout |" in text
    assert "| Python |" in text and "| lhotse | 1.33.0 |" in text
    env = collect_environment()
    assert set(env) == {"python", "packages", "cpu", "gpus", "os"}
    assert "fairseq" in env["packages"]
    rev = git_revision(repo_root)
    assert rev is None or (len(rev["hash"]) == 40 and isinstance(rev["dirty"], bool))


def test_sections_after_method_tables(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _make_exp(exp)
    section_dir = tmp_path / "exp" / "distilwhisper" / "report"
    section_dir.mkdir(parents=True)
    section = section_dir / "section.md"
    section.write_text(
        "## DistilWhisper\n\n![gates](plots/gates.png) [paper](https://arxiv.org/abs/x) "
        "[top](#results)\n",
        encoding="utf-8",
    )
    second = tmp_path / "second.md"
    second.write_text("## Second section\n\ntext\n", encoding="utf-8")
    out = tmp_path / "out" / "RESULTS.md"
    write_results([exp], out, env=ENV, git=GIT, section_files=[section, second])
    text = out.read_text(encoding="utf-8")
    # without claims in the sections, the per-method tables stay in RESULTS.md
    assert text.index("### pepsi") < text.index("\n## DistilWhisper\n")
    assert text.index("\n## DistilWhisper\n") < text.index("\n## Second section")
    assert "## sclite summaries per set" in (out.parent / "RESULTS-details.md").read_text()
    # links relative to the section file now point from RESULTS.md's directory; others unchanged
    assert "![gates](../exp/distilwhisper/report/plots/gates.png)" in text
    assert "[paper](https://arxiv.org/abs/x) [top](#results)" in text
    # without sections the document is unchanged (backwards compatible)
    plain = write_results([exp], tmp_path / "plain.md", env=ENV, git=GIT)
    assert "\n## DistilWhisper\n" not in plain.read_text(encoding="utf-8")
    with pytest.raises(DataError, match=r"missing\.md: section file not found"):
        write_results([exp], out, env=ENV, git=GIT, section_files=[tmp_path / "missing.md"])
    # the RESULTS.json of a section (its report's numbers) goes beside RESULTS.md
    assert not (out.parent / "RESULTS.json").exists()
    row = {"system": "ft", "set": "test", "language": "ca", "metric": "wer", "value": 12.5}
    (section_dir / "RESULTS.json").write_text(json.dumps([row]), encoding="utf-8")
    write_results([exp], out, env=ENV, git=GIT, section_files=[section, second])
    assert json.loads((out.parent / "RESULTS.json").read_text(encoding="utf-8")) == [row]
    # the CLI option
    args = ["--exp-dir", str(exp), "--out", str(tmp_path / "cli.md"), "--section", str(second)]
    assert main([*args, "--repo-dir", str(tmp_path)]) == 0
    assert "## Second section\n\ntext\n" in (tmp_path / "cli.md").read_text(encoding="utf-8")
