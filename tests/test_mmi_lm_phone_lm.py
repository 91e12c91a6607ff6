"""Kaldi chain-style phone LM estimation, ARPA import and the denominator builder/CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from speechkd.errors import DataError
from speechkd.mmi.arpa import arpa_to_fsa
from speechkd.mmi.denominator import build_denominator, build_phone_lm
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.lexicon import Lexicon, phone_index, read_phone_table
from speechkd.mmi.phone_lm import (
    PhoneLmEstimator,
    estimate_phone_lm,
    is_stochastic,
    perplexity,
    sequence_log_prob,
    stochasticity_error,
)
from speechkd.mmi.text_to_phones import TextToPhones, TextToPhonesOptions

A, B, C, D, X, Y = range(1, 7)  # phone ids start at 1 (phones.txt)
BOS = 0


def _arcs(lm: Fsa) -> dict[tuple[int, int], tuple[int, float]]:
    """(src, label) -> (dst, prob); fails if the acceptor is not deterministic."""
    out = {}
    for (s, d, lab), w in zip(lm.arcs.tolist(), lm.scores.tolist(), strict=True):
        assert (s, lab) not in out, "not deterministic"
        out[(s, lab)] = (d, math.exp(w))
    return out


def _random_sentences(seed: int, n: int, vocab: int) -> list[list[int]]:
    rng = random.Random(seed)
    # a skewed bigram-ish source so that contexts matter
    out = []
    for _ in range(n):
        s, prev = [], rng.randrange(vocab)
        for _ in range(rng.randint(1, 25)):
            prev = (prev + rng.choice([1, 1, 2, 3, 5])) % vocab if rng.random() < 0.8 else prev
            s.append(prev + 1)
        out.append(s)
    return out


def test_trigram_ml_estimates_by_hand():
    est = PhoneLmEstimator(ngram_order=3, num_extra_states=100)
    for s in ([A, B, A], [A, B, B]):
        est.add_counts(s)
    lm, stats = est.estimate()
    state = {h: i for i, h in enumerate(est.histories)}
    assert set(state) == {(BOS,), (BOS, A), (A, B), (B, A), (B, B)}
    assert state[(BOS,)] == 0
    arcs = _arcs(lm)
    assert len(arcs) == 4
    assert arcs[(state[(BOS,)], A)] == (state[(BOS, A)], 1.0)
    assert arcs[(state[(BOS, A)], B)] == (state[(A, B)], 1.0)
    assert arcs[(state[(A, B)], A)] == (state[(B, A)], pytest.approx(0.5))
    assert arcs[(state[(A, B)], B)] == (state[(B, B)], pytest.approx(0.5))
    final = lm.final.tolist()
    assert final[state[(B, A)]] == 0.0 and final[state[(B, B)]] == 0.0
    assert final[state[(A, B)]] == -math.inf
    assert sequence_log_prob(lm, [A, B, A]) == pytest.approx(math.log(0.5))
    assert sequence_log_prob(lm, [A, B, A, B]) == -math.inf  # unseen: no smoothing
    # 8 tokens (6 phones + 2 ends), two of them with probability 1/2
    assert stats.train_perplexity == pytest.approx(math.exp(2 * math.log(2) / 8))


def test_bigram_counts_with_final_probabilities():
    lm, _ = estimate_phone_lm([[A, B], [A, B], [B]], ngram_order=2)
    arcs = _arcs(lm)
    # BOS -> A 2/3, BOS -> B 1/3; A -> B 1; B -> end 1
    assert arcs[(0, A)][1] == pytest.approx(2 / 3)
    assert arcs[(0, B)][1] == pytest.approx(1 / 3)
    b_state = arcs[(0, B)][0]
    assert arcs[(arcs[(0, A)][0], B)][0] == b_state
    assert lm.final[b_state].item() == pytest.approx(0.0)
    assert lm.final[0].item() == -math.inf


def test_hard_backoff_of_unseen_four_grams():
    sentences = [[X, A, B, C], [Y, A, B, D]]
    full, _ = estimate_phone_lm(sentences, ngram_order=4, num_extra_states=100)
    assert sequence_log_prob(full, [X, A, B, D]) == -math.inf
    assert sequence_log_prob(full, [X, A, B, C]) == pytest.approx(math.log(0.5))  # P(X|BOS)

    est = PhoneLmEstimator(ngram_order=4, num_extra_states=0)
    for s in sentences:
        est.add_counts(s)
    lm, stats = est.estimate()
    state = {h: i for i, h in enumerate(est.histories)}
    assert all(len(h) <= 2 for h in state)  # every 3-phone history was backed off
    arcs = _arcs(lm)
    # the 4-gram contexts (X A B) and (Y A B) merged into (A B): C and D are 1/2 each
    assert arcs[(state[(X, A)], B)][0] == state[(A, B)]
    assert arcs[(state[(A, B)], C)] == (state[(B, C)], pytest.approx(0.5))
    assert arcs[(state[(A, B)], D)] == (state[(B, D)], pytest.approx(0.5))
    assert sequence_log_prob(lm, [X, A, B, D]) == pytest.approx(math.log(0.25))
    assert is_stochastic(lm)
    # with order 4 and no extra states the model equals the trigram model
    tri, _ = estimate_phone_lm(sentences, ngram_order=3, num_extra_states=0)
    assert (tri.num_states, tri.num_arcs) == (lm.num_states, lm.num_arcs)


@pytest.mark.parametrize("order,extra", [(2, 0), (3, 10), (4, 0), (4, 40), (4, 2000), (5, 100)])
def test_lm_is_stochastic_deterministic_and_sized(order: int, extra: int):
    data = _random_sentences(seed=order * 100 + extra, n=400, vocab=12)
    est = PhoneLmEstimator(order, extra)
    for s in data:
        est.add_counts(s)
    lm, stats = est.estimate()
    assert stochasticity_error(lm) < 1e-9
    _arcs(lm)  # deterministic
    assert lm.max_label <= 12 and int(lm.labels.min()) >= 1
    target = stats.basic_states + extra
    if order <= 4 and stats.initial_states > target:
        # the target is met up to the [BOS] state (Kaldi's count includes it as well); with
        # order > 4 states that become prunable late may be left over, as in Kaldi
        assert target <= stats.num_states <= target + 1
    assert stats.num_states <= stats.initial_states
    # the scorer and the estimator agree on the training perplexity
    assert perplexity(lm, data).perplexity == pytest.approx(stats.train_perplexity, rel=1e-9)
    assert perplexity(lm, data).zero_prob_sentences == 0


def test_more_states_fit_better():
    data = _random_sentences(seed=3, n=600, vocab=10)
    ppl = [estimate_phone_lm(data, 4, extra)[1].train_perplexity for extra in (0, 50, 400, 5000)]
    assert ppl == sorted(ppl, reverse=True) and ppl[0] > ppl[-1]


def test_stochasticity_error_detects_a_bad_acceptor():
    bad = Fsa([[0, 0, 0]], [math.log(0.5)], [math.log(0.25)])
    assert stochasticity_error(bad) == pytest.approx(-math.log(0.75))
    assert not is_stochastic(bad)


def _write_normalised_arpa(path: Path) -> dict[str, float]:
    """A bigram ARPA whose back-off weights make every history sum to exactly 1."""
    uni = {"</s>": 0.2, "a": 0.5, "b": 0.3}
    big = {("<s>", "a"): 0.6, ("a", "b"): 0.7, ("b", "</s>"): 0.5}
    bow = {}
    for h in ("<s>", "a", "b"):
        seen = {w: p for (hh, w), p in big.items() if hh == h}
        bow[h] = (1 - sum(seen.values())) / (1 - sum(uni[w] for w in seen))
    lines = ["\\data\\", "ngram 1=4", "ngram 2=3", "", "\\1-grams:"]
    lines.append(f"-99 <s> {math.log10(bow['<s>']):.12f}")
    for w, p in uni.items():
        tail = f" {math.log10(bow[w]):.12f}" if w in bow else ""
        lines.append(f"{math.log10(p):.12f} {w}{tail}")
    lines += ["", "\\2-grams:"]
    lines += [f"{math.log10(p):.12f} {h} {w}" for (h, w), p in big.items()]
    lines += ["", "\\end\\"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bow


def test_arpa_import_unrolls_backoff_exactly(tmp_path: Path):
    path = tmp_path / "lm.arpa"
    bow = _write_normalised_arpa(path)
    lm, phones = arpa_to_fsa(path, renormalize=False)
    assert phones == ["a", "b"]
    assert stochasticity_error(lm) < 1e-9
    arcs = _arcs(lm)  # labels: a = 1, b = 2
    a_state = arcs[(0, 1)][0]
    assert arcs[(0, 1)][1] == pytest.approx(0.6)  # listed bigram
    assert arcs[(0, 2)][1] == pytest.approx(bow["<s>"] * 0.3)  # backed off
    assert arcs[(a_state, 2)][1] == pytest.approx(0.7)
    assert math.exp(lm.final[a_state].item()) == pytest.approx(bow["a"] * 0.2)
    # P(a b) = 0.6 * 0.7 * P(</s>|b) = 0.6 * 0.7 * 0.5
    assert sequence_log_prob(lm, [1, 2]) == pytest.approx(math.log(0.6 * 0.7 * 0.5))
    # an explicit phone table fixes the ids; unknown symbols are errors
    lm2, phones2 = arpa_to_fsa(path, phones=["SIL", "a", "b"])
    assert phones2 == ["SIL", "a", "b"] and set(lm2.labels.tolist()) == {2, 3}
    with pytest.raises(DataError, match=r"\['b'\] are not in the phone table"):
        arpa_to_fsa(path, phones=["a"])


def test_arpa_renormalises_rounded_probabilities_and_checks_counts(tmp_path: Path):
    path = tmp_path / "rounded.arpa"
    path.write_text(
        "\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-0.52 </s>\n-99 <s> -0.3\n"
        "-0.3 a -0.1\n-0.7 b -0.2\n-1.5 <unk>\n\n\\2-grams:\n-0.3 <s> a\n-0.2 a b\n\n\\end\\\n",
        encoding="utf-8",
    )
    raw, _ = arpa_to_fsa(path, renormalize=False)
    assert stochasticity_error(raw) > 1e-3
    lm, phones = arpa_to_fsa(path)
    assert phones == ["a", "b"] and is_stochastic(lm, 1e-12)
    broken = tmp_path / "broken.arpa"
    broken.write_text(path.read_text().replace("ngram 2=2", "ngram 2=3"), encoding="utf-8")
    with pytest.raises(DataError, match="declares 3 2-grams, found 2"):
        arpa_to_fsa(broken)


def _lexicon_file(tmp_path: Path) -> Path:
    path = tmp_path / "lexicon.txt"
    path.write_text(
        "the DH AH\nthe DH IY\ncat K AE T\nsat S AE T\non AA N\nmat M AE T\n", encoding="utf-8"
    )
    return path


def _corpus(tmp_path: Path, n: int = 300) -> Path:
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat"]
    path = tmp_path / "text.txt"
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 8))) for _ in range(n)]
    path.write_text("\n".join(lines).capitalize() + ".\n", encoding="utf-8")
    return path


def test_build_phone_lm_from_text_is_seeded_and_stochastic(tmp_path: Path):
    lex = Lexicon.from_kaldi(_lexicon_file(tmp_path))
    text = _corpus(tmp_path)
    r1 = build_phone_lm(text, lex, order=4, num_extra_states=20, seed=1, heldout_every=10)
    r2 = build_phone_lm(text, lex, order=4, num_extra_states=20, seed=1, heldout_every=10)
    r3 = build_phone_lm(text, lex, order=4, num_extra_states=20, seed=2, heldout_every=10)
    assert r1.phones == ["SIL", "AA", "AE", "AH", "DH", "IY", "K", "M", "N", "S", "T"]
    assert torch.equal(r1.lm.arcs, r2.lm.arcs) and torch.equal(r1.lm.scores, r2.lm.scores)
    assert not torch.equal(r1.lm.scores, r3.lm.scores)
    assert r1.stats["lm"]["stochasticity_error"] < 1e-9
    held = r1.stats["heldout"]
    assert held["sentences"] == 30 and 1.0 < held["perplexity"] < 11.0
    assert r1.stats["text"]["sentences"] == 300


@pytest.mark.parametrize("topology", ["ctc", "ctc-modified", "chain"])
def test_denominator_scores_sentences_like_the_lm(tmp_path: Path, topology: str):
    lex = Lexicon.from_kaldi(_lexicon_file(tmp_path))
    text = _corpus(tmp_path, n=60)
    result = build_phone_lm(text, lex, order=3, num_extra_states=10, seed=3)
    den = build_denominator(text, lex, topology, order=3, num_extra_states=10, seed=3)
    num_phones = len(result.phones)
    assert den.max_label == (2 * num_phones - 1 if topology == "chain" else num_phones)
    index = phone_index(result.phones)
    sentences = TextToPhones(lex, TextToPhonesOptions(), seed=3).convert(text)
    checked = 0
    for sentence in sentences:
        ids = [index[p] for p in sentence]
        if any(a == b for a, b in zip(ids, ids[1:], strict=False)):
            continue
        # one frame per phone: CTC pdf p = phone p, chain pdf a(p) = 2 (p - 1)
        pdfs = [2 * (p - 1) for p in ids] if topology == "chain" else ids
        expected = sequence_log_prob(result.lm, ids)
        assert expected > -math.inf
        assert sequence_log_prob(den, pdfs) == pytest.approx(expected, abs=1e-9)
        checked += 1
    assert checked >= 10


def test_cli_writes_lang_directory(tmp_path: Path):
    from speechkd.bin.make_den_graph import main

    out = tmp_path / "lang_phone"
    text = _corpus(tmp_path)
    lexicon = _lexicon_file(tmp_path)
    main(["--text", str(text), "--lexicon", str(lexicon), "--out-dir", str(out),
          "--num-extra-states", "10"])  # fmt: skip
    phones = read_phone_table(out / "phones.txt")
    assert phones[0] == "SIL" and len(phones) == 11
    lm = Fsa.from_openfst((out / "phone_lm.fst.txt").read_text(), label_offset=0)
    assert is_stochastic(lm) and lm.max_label <= len(phones)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["lm"]["num_states"] == lm.num_states
    assert Lexicon.from_kaldi(out / "lexicon.txt").entries == Lexicon.from_kaldi(lexicon).entries
    den = Fsa.from_openfst((out / "den.fst.txt").read_text(), label_offset=1)
    assert stats["den"]["num_states"] == den.num_states and stats["den"]["num_pdfs"] == 12
    assert den.max_label == 11  # CTC: blank 0 and the 11 phones
    assert not list(tmp_path.glob(".tmp-*"))

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt"):
        main(["--text", str(empty), "--lexicon", str(lexicon), "--out-dir", str(tmp_path / "x")])
    oov = tmp_path / "oov.txt"
    oov.write_text("the dog sat\n", encoding="utf-8")
    with pytest.raises(DataError, match="'dog'"):
        main(["--text", str(oov), "--lexicon", str(lexicon), "--out-dir", str(tmp_path / "y")])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
