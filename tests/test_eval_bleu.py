"""BLEU/chrF equal sacrebleu's own corpus scores and carry the signature."""

from __future__ import annotations

import json
import random

import pytest
import sacrebleu

from speechkd.errors import ConfigError, DataError
from speechkd.eval.bleu import compute_bleu, compute_chrf, default_bleu_tokenizer
from speechkd.eval.decode_files import write_translation_files

WORDS = "der die das Hund Katze sitzt läuft schnell auf dem Tisch , .".split()


def _sentences(rng: random.Random, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def test_bleu_equals_sacrebleu_corpus_bleu() -> None:
    rng = random.Random(7)
    for _ in range(10):
        refs = _sentences(rng, 12)
        hyps = [
            r if rng.random() < 0.3 else s for r, s in zip(refs, _sentences(rng, 12), strict=True)
        ]
        ours = compute_bleu(hyps, refs)
        theirs = sacrebleu.corpus_bleu(hyps, [refs])
        assert ours.score == pytest.approx(theirs.score, abs=1e-12)
        assert ours.details["hyp_len"] == theirs.sys_len
        assert ours.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_chrf_equals_sacrebleu_corpus_chrf() -> None:
    rng = random.Random(8)
    refs = _sentences(rng, 20)
    hyps = _sentences(rng, 20)
    ours = compute_chrf(hyps, refs)
    assert ours.score == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-12)
    assert "nc:6|nw:0" in ours.signature
    plus = compute_chrf(hyps, refs, word_order=2)
    assert plus.score == pytest.approx(
        sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score, abs=1e-12
    )
    assert "nw:2" in plus.signature


def test_perfect_and_tokenizers() -> None:
    refs = ["Der Hund läuft.", "Die Katze sitzt auf dem Tisch."]
    assert compute_bleu(refs, refs).score == pytest.approx(100.0)
    zh = compute_bleu(["我有三个苹果"], ["我有两个苹果"], language="zh")
    assert "tok:zh" in zh.signature
    assert zh.score == pytest.approx(
        sacrebleu.corpus_bleu(["我有三个苹果"], [["我有两个苹果"]], tokenize="zh").score
    )
    assert default_bleu_tokenizer("ja") == "char" and default_bleu_tokenizer("de") == "13a"


def test_bad_input() -> None:
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        compute_bleu(["a", "b"], ["a"])
    with pytest.raises(DataError, match="no sentences"):
        compute_chrf([], [])
    with pytest.raises(ConfigError, match="tokenize='nope'"):
        compute_bleu(["a"], ["a"], tokenize="nope")


def test_translation_scores_file(tmp_path) -> None:
    ids, refs, hyps = ["b", "a"], ["Der Hund läuft.", "Die Katze."], ["Der Hund läuft.", "Katze."]
    score = compute_bleu(hyps, refs, language="de")
    paths = write_translation_files(tmp_path, "tst", ids, refs, hyps, score, {"de": score})
    data = json.loads(paths["scores"].read_text(encoding="utf-8"))
    assert data["metric"] == "bleu" and data["signature"] == score.signature
    assert data["score"] == pytest.approx(score.score, abs=1e-4)
    assert data["per_language"]["de"]["signature"] == score.signature
    recogs = paths["recogs"].read_text(encoding="utf-8").splitlines()
    assert recogs[0] == "a:\tref=Die Katze."
    assert (tmp_path / "bleu-summary-tst.txt").read_text(encoding="utf-8").count("tok:13a") == 2
