"""WER/CER from kaldialign alignments: agreement with jiwer, sclite counts, decode-dir files."""

from __future__ import annotations

import json
import random

import jiwer
import pytest

from speechkd.errors import ConfigError, DataError
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.wer import ErrorCounts, Utterance, align_utterance, score_utterances, tokenize

VOCAB = ["a", "b", "c", "dd", "eee", "ff"]


def _random_set(rng: random.Random, empty_hyp_prob: float = 0.15) -> list[Utterance]:
    utts = []
    for i in range(rng.randint(1, 8)):
        ref = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 10)))
        n_hyp = 0 if rng.random() < empty_hyp_prob else rng.randint(1, 10)
        hyp = " ".join(rng.choice(VOCAB) for _ in range(n_hyp))
        utts.append(Utterance(f"utt{i:02d}", ref, hyp, rng.choice(["ca", "th"])))
    return utts


@pytest.mark.parametrize("metric", ["wer", "cer"])
def test_equals_jiwer_on_random_sets(metric: str) -> None:
    rng = random.Random(1234)
    measure = jiwer.wer if metric == "wer" else jiwer.cer
    for _ in range(150):
        utts = _random_set(rng)
        report = score_utterances(utts, metric)
        expected = measure([u.ref for u in utts], [u.hyp for u in utts])
        assert report.totals.rate == pytest.approx(100.0 * expected, abs=1e-9)
        # the per-utterance error totals agree with jiwer's too
        for u, a in zip(utts, report.utterances, strict=True):
            out = (jiwer.process_words if metric == "wer" else jiwer.process_characters)(
                u.ref, u.hyp
            )
            assert a.counts.err == out.substitutions + out.deletions + out.insertions
            assert a.counts.wrd == out.hits + out.substitutions + out.deletions


def test_counts_of_a_known_alignment() -> None:
    a = align_utterance("u1", "the cat sat on mat".split(), "the bat sat mat down".split())
    assert a.ops() == ["C", "S", "C", "D", "C", "I"]
    assert a.counts == ErrorCounts(snt=1, wrd=5, corr=3, sub=1, dele=1, ins=1, s_err=1)
    assert a.counts.err == 3 and a.counts.rate == pytest.approx(60.0)


def test_empty_hypothesis_is_all_deletions() -> None:
    report = score_utterances([Utterance("u1", "one two three", "", "en")])
    t = report.totals
    assert (t.wrd, t.dele, t.sub, t.ins, t.corr, t.s_err) == (3, 3, 0, 0, 0, 1)
    assert t.rate == 100.0
    assert jiwer.wer("one two three", "") == 1.0


def test_empty_reference_is_an_error_naming_the_utterance() -> None:
    utts = [Utterance("good", "a b", "a b"), Utterance("spk1-utt7", "", "noise")]
    with pytest.raises(DataError, match="spk1-utt7"):
        score_utterances(utts)
    report = score_utterances(utts, allow_empty_ref=True)
    assert report.totals.ins == 1 and report.totals.wrd == 2
    assert report.totals.rate == pytest.approx(50.0)


def test_duplicate_ids_and_bad_metric() -> None:
    with pytest.raises(DataError, match="'x' is given twice"):
        score_utterances([Utterance("x", "a", "a"), Utterance("x", "b", "b")])
    with pytest.raises(ConfigError, match="metric"):
        score_utterances([Utterance("x", "a", "a")], metric="bleu")


def test_cer_tokens_include_single_spaces() -> None:
    assert tokenize("ab  c", "cer") == ["a", "b", " ", "c"]
    assert tokenize(" ab  c ", "wer") == ["ab", "c"]


def test_per_language_breakdown_and_macro_average() -> None:
    utts = [
        Utterance("a1", "x y z w", "x y z w", "ca"),
        Utterance("a2", "x y", "x q", "ca"),
        Utterance("b1", "k l", "", "th"),
    ]
    report = score_utterances(utts)
    per_language = report.per_language
    assert list(per_language) == ["ca", "th"]
    assert per_language["ca"].rate == pytest.approx(100 / 6)
    assert per_language["th"].rate == pytest.approx(100.0)
    assert report.macro_average == pytest.approx((100 / 6 + 100) / 2)
    assert report.totals.rate == pytest.approx(300 / 8)
    assert report.totals.s_err == 2 and report.totals.snt == 3


def test_decode_dir_files(tmp_path) -> None:
    utts = [
        Utterance("u2", "the cat sat", "the cat sit down", "en"),
        Utterance("u1", "good morning", "", "en"),
        Utterance("u3", "hello world", "hello world", "en"),
    ]
    report = score_utterances(utts)
    paths = write_error_rate_files(
        tmp_path, "test", report, {"en": "whisper.EnglishTextNormalizer"}, missing_hyps=1
    )
    errs = paths["errs"].read_text(encoding="utf-8").splitlines()
    assert errs[0] == "%WER 57.14 [ 4 / 7, 1 ins, 2 del, 1 sub ]"
    assert "u1:\t(good->*) (morning->*)" in errs
    assert "u2:\tthe cat (sat->sit) (*->down)" in errs
    assert "1   sat -> sit" in errs and "1   down" in errs and "1   good" in errs
    recogs = paths["recogs"].read_text(encoding="utf-8").splitlines()
    assert recogs[:2] == ["u1:\tref=['good', 'morning']", "u1:\thyp=[]"]
    summary = (tmp_path / "wer-summary-test.txt").read_text(encoding="utf-8")
    assert summary.splitlines()[:2] == ["language\tWER", "all\t57.14"]
    scores = json.loads(paths["scores"].read_text(encoding="utf-8"))
    assert scores["metric"] == "wer" and scores["set"] == "test"
    assert scores["score"] == pytest.approx(400 / 7, abs=1e-4)
    assert scores["totals"]["del"] == 2 and scores["totals"]["s_err"] == 2
    assert scores["missing_hypotheses"] == 1
    assert scores["normalizer"] == "whisper.EnglishTextNormalizer"
    assert ErrorCounts.from_dict(scores["per_language"]["en"]) == report.totals
    assert not list(tmp_path.glob(".tmp-*"))


def test_cer_errs_show_spaces(tmp_path) -> None:
    report = score_utterances([Utterance("u", "ab c", "abc", "zh")], metric="cer")
    paths = write_error_rate_files(tmp_path, "dev", report, {"zh": "basic"})
    errs = paths["errs"].read_text(encoding="utf-8").splitlines()
    assert errs[0] == "%CER 25.00 [ 1 / 4, 0 ins, 1 del, 0 sub ]"
    assert "u:\ta b (<sp>->*) c" in errs
    assert (tmp_path / "cer-summary-dev.txt").is_file()
