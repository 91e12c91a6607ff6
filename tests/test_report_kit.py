"""The report kit: degeneracy rule, ties, claims, paths and the RESULTS.md split."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from speechkd.errors import DataError
from speechkd.eval import report_kit as kit
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.results import write_results
from speechkd.eval.wer import Utterance, score_utterances

ENV = {"python": "3.11.0", "packages": {}, "cpu": "cpu", "gpus": [], "os": "Linux"}
ABSOLUTE = re.compile(r"(?<![\w.~:/\\-])/(?:[\w.@+-]+/)+")


def test_the_degeneracy_rule() -> None:
    assert kit.at_chance(0.99, "bleu") and not kit.at_chance(1.0, "bleu")
    assert kit.at_chance(95.0, "wer") and not kit.at_chance(94.99, "cer")
    assert kit.at_chance(None, "wer") and kit.at_chance(math.inf, "wer")
    assert kit.at_chance(math.nan, "bleu_sph")
    # a teacher at chance voids the claim, whatever the students score
    reason = kit.degenerate_reason("bleu", {"M": 20.0, "C": 18.0}, teacher=("B", 0.07))
    assert reason == "B 0.07 bleu < 1"
    # every compared system at chance: their differences are noise
    assert kit.degenerate_reason("bleu", {"M": 0.18, "C": 0.07}) == (
        "M 0.18 bleu < 1, C 0.07 bleu < 1"
    )
    assert kit.degenerate_reason("cer", {"FT": 22.6, "zero-shot": 105.0}) is None
    # a teacher that does not beat its student leaves no gap to close
    assert kit.degenerate_reason("wer", {}, ("T", 20.0), ("S", 19.0)) == (
        "S 19.00 is not worse than T 20.00 wer: no gap to close"
    )
    assert kit.degenerate_reason("wer", {}, ("T", 20.0), ("S", 20.004)) is not None  # a tie
    assert kit.degenerate_reason("wer", {}, ("T", 20.0), ("S", 120.0)) is None
    assert (
        kit.degenerate_reason("cer", {"a": 96.0, "b": 99.0}) == "a 96.00 cer ≥ 95, b 99.00 cer ≥ 95"
    )


def test_relative_change_never_from_a_reference_at_chance() -> None:
    assert kit.relative_change(20.0, 40.0, "wer") == pytest.approx(-50.0)
    assert kit.relative_change(0.18, 0.07, "bleu") is None  # not "+157 %"
    assert kit.relative_change(22.6, 105.0, "cer") is None
    assert kit.relative_change(1.0, 0.0, "wer") is None


def test_beats_with_ties_and_direction() -> None:
    assert kit.beats(10.0, 12.0, "wer") and not kit.beats(12.0, 10.0, "wer")
    assert kit.beats(12.0, 10.0, "bleu") and not kit.beats(10.0, 12.0, "bleu_sph")
    assert kit.compare(10.0, 10.004, "wer") == 0 and not kit.beats(10.0, 10.004, "wer")
    assert kit.compare(10.0, 10.01, "wer") == 1
    assert kit.compare(17.2, 3.7, "gap_closed") == 1
    assert [kit.verdict_of(o) for o in ([1, 1], [1, -1], [-1, 0], [0, 0], [])] == [
        "yes",
        "mixed",
        "no",
        "tie",
        "not tested",
    ]


def test_pair_claims_render_numbers_and_verdicts() -> None:
    claim = kit.pair_claim("FT beats zero-shot", ("FT", 20.0), ("ZS", 40.0), "cer", relative=True)
    assert (
        claim.line()
        == "- FT beats zero-shot: **yes** (FT 20.00 vs ZS 40.00 cer, -50.0 % relative)."
    )
    at_chance = kit.pair_claim(
        "FT beats zero-shot", ("FT", 22.6), ("ZS", 105.0), "cer", relative=True
    )
    assert at_chance.verdict == "yes" and "ZS is at chance: no relative change" in at_chance.line()
    noise = kit.pair_claim("KD helps", ("M", 0.18), ("C", 0.07), "bleu", ("B", 0.07))
    assert noise.line() == (
        "- KD helps: **no verdict: the reference systems are degenerate** (B 0.07 bleu < 1)."
    )
    tie = kit.pair_claim("x", ("a", 5.0), ("b", 5.0), "wer")
    assert tie.verdict == "tie"
    lines = kit.render_claims([claim, noise])
    assert lines[0] == kit.CLAIMS_HEADING and lines[2].startswith("- FT beats") and lines[-1] == ""
    assert kit.render_claims([]) == []


def test_split_claims() -> None:
    text = "## M\n\n### What this run shows\n\n- a: **yes**.\n\n### Table\n\n| x |\n"
    block, rest = kit.split_claims(text)
    assert block == ["- a: **yes**."]
    assert rest == "## M\n\n### Table\n\n| x |\n"
    assert kit.split_claims("## M\n\ntext\n") == ([], "## M\n\ntext\n")


def test_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "conf" / "dw").mkdir(parents=True)
    (root / "conf" / "dw" / "js.yaml").write_text("x")
    recipe = root / "egs" / "mini" / "dw"
    recipe.mkdir(parents=True)
    text = (
        f"--config /elsewhere/snap/conf/dw/js.yaml --init-from {root}/egs/mini/exp/model. "
        "--cache /home/u/.cache/whisper/base.pt a/b 1/2 MSE/LF-MMI https://x.org/a/b "
        f"ca={recipe}/exp/ft ](../plots/g.png)"
    )
    out = kit.relative_paths(text, recipe)
    assert out == (
        "--config ../../../conf/dw/js.yaml --init-from ../exp/model. "
        "--cache …/base.pt a/b 1/2 MSE/LF-MMI https://x.org/a/b ca=exp/ft ](../plots/g.png)"
    )
    assert not ABSOLUTE.search(out)


def test_load_scores_and_params(tmp_path: Path) -> None:
    utts = [Utterance("u", "a b", "a c", "ca")]
    write_error_rate_files(tmp_path, "test", score_utterances(utts), {"ca": "basic"})
    payload = kit.load_scores(tmp_path / "scores-test.json", "test", ("wer", "cer"))
    assert kit.pooled_counts(payload, "p").rate == pytest.approx(50.0)
    assert kit.pooled_counts(payload, "p", "ca").rate == pytest.approx(50.0)
    with pytest.raises(DataError, match="expected 'dev'"):
        kit.load_scores(tmp_path / "scores-test.json", "dev", ("wer",))
    with pytest.raises(DataError, match="metric must be one of"):
        kit.load_scores(tmp_path / "scores-test.json", "test", ("bleu",))
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"total": 0, "trainable": 0, "inference": 0}))
    assert kit.load_params(params)["total"] == 0
    with pytest.raises(DataError, match="'total' is 0"):
        kit.load_params(params, nonzero_total=True)


def test_formats() -> None:
    assert kit.fmt_rate(None) == kit.DASH and kit.fmt_rate(math.inf) == "inf"
    assert kit.fmt_rate(12.345, 1) == "12.3"
    assert kit.fmt_count(1_543_304_960) == "1.54B" and kit.fmt_count(2_621_440) == "2.62M"
    assert kit.fmt_count(990_000, million_from=1e6) == "990,000"
    notes = kit.Notes()
    assert notes.mark("a") == "(1)" and notes.mark("b") == "(2)" and notes.mark("a") == "(1)"
    assert notes.lines() == ["(1) a  ", "(2) b  ", ""]


def _decode(directory: Path, wrong: int) -> None:
    utts = [
        Utterance(f"u{i}", "a b c d", "a x c d" if i < wrong else "a b c d", "ca") for i in range(4)
    ]
    cmd = f"python -m speechkd.bin.whisper_decode --model-dir {directory.parent}/model"
    write_error_rate_files(directory, "test", score_utterances(utts), {"ca": "basic"}, command=cmd)


def test_results_md_opens_with_claims_and_splits_the_details(tmp_path: Path) -> None:
    recipe = tmp_path / "egs" / "mini" / "m"
    (tmp_path / ".git").mkdir()
    exp = recipe / "exp"
    _decode(exp / "m" / "a" / "decode", 1)
    _decode(exp / "m" / "b" / "decode", 2)
    section = exp / "m" / "report.md"
    claims = kit.render_claims([kit.pair_claim("a beats b", ("a", 6.25), ("b", 12.5), "wer")])
    section.write_text(
        kit.join_section(["## M report", "", *claims, "### Table 1", "", "| x |", f"{exp}/m"])
    )
    out = write_results([exp], recipe / "RESULTS.md", env=ENV, git=None, section_files=[section])
    text = out.read_text(encoding="utf-8")
    details = (recipe / "RESULTS-details.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[lines.index("## What this run shows") + 4] == (
        "- a beats b: **yes** (a 6.25 vs b 12.50 wer)."
    )
    assert text.index("## What this run shows") < text.index("## M report") < text.index("Table 1")
    assert text.count(kit.CLAIMS_HEADING) == 0 and "exp/m\n" in text
    # the per-method tables would repeat the report's: they are in the details
    assert "## Results per method" not in text and "## Results per method" in details
    for heading in ("## Environment", "## Commands", "## sclite summaries per set"):
        assert heading in details and heading not in text
    assert "--model-dir exp/m/a/model" in details
    assert not ABSOLUTE.search(text) and not ABSOLUTE.search(details)


def test_per_language_claim_leaves_out_languages_at_chance() -> None:
    from speechkd.eval.report_kit import per_language_claim

    claim = per_language_claim(
        "A beats B", ("A", {"ca": 40.0, "th": 250.0}), ("B", {"ca": 50.0, "th": 300.0}), "wer"
    )
    assert claim.verdict == "yes"
    assert claim.evidence == "A vs B wer: ca 40.00 vs 50.00; left out, both at chance: th"
    worse = per_language_claim("A beats B", ("A", {"ca": 60.0}), ("B", {"ca": 50.0}), "wer")
    assert worse.verdict == "no"
    none = per_language_claim("A beats B", ("A", {"th": 99.0}), ("B", {"th": 120.0}), "wer")
    assert none.verdict.startswith("no verdict") and "every language" in none.evidence


def test_rescore_set_scores_reads_the_decode_texts(tmp_path: Path) -> None:
    from lhotse import SupervisionSegment, SupervisionSet

    from speechkd.eval.report_kit import SetScores, rescore_set_scores

    sups = tmp_path / "sups.jsonl.gz"
    SupervisionSet.from_segments(
        [SupervisionSegment("a", "a", 0, 1, text="abc def", language="en")]
    ).to_file(sups)
    (tmp_path / "ref-test.txt").write_text("a abc def\n")
    (tmp_path / "hyp-test.txt").write_text("a abd def\n")
    scores = tmp_path / "scores-test.json"
    scores.write_text(json.dumps({"metric": "wer", "set": "test", "cuts": str(sups)}))
    wer = SetScores("test", "wer", {"en": 50.0}, scores)
    cer = rescore_set_scores(wer, "cer")
    assert cer.metric == "cer" and cer.per_language == {"en": pytest.approx(100 / 7)}
    assert rescore_set_scores(wer, "wer") is wer
