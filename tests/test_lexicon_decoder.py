"""Lexicon + word-LM CTC beam search and the Kneser-Ney ARPA trainer (eval.lexicon_decoder)."""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter

import pytest
import torch

from speechkd.errors import DataError
from speechkd.eval.ctc_decode import UnitTable
from speechkd.eval.lexicon_decoder import (
    CtcLexiconDecoder,
    LexiconDecoderConfig,
    load_kenlm,
    read_lm_sentences,
    train_arpa_lm,
    write_arpa_lm,
)
from speechkd.mmi.arpa import ArpaModel
from speechkd.mmi.lexicon import Lexicon

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
PHONES = ("ð", "ə", "ɹ", "ɛ", "d", "b", "ʊ", "k", "s", "aɪ")
PHONE_TABLE = UnitTable(SPECIALS + PHONES, blank=0, ignore=frozenset({1, 2, 3}))
LEXICON_TEXT = """the ð ə
a ə
red ɹ ɛ d
read ɹ ɛ d
book b ʊ k
books b ʊ k s
i aɪ
"""
LM_TEXT = ["the red book"] * 4 + ["i read the book"] * 4 + ["i read a book", "the books"]


@pytest.fixture
def lexicon(tmp_path) -> Lexicon:
    path = tmp_path / "lexicon.txt"
    path.write_text(LEXICON_TEXT, encoding="utf-8")
    return Lexicon.from_kaldi(path)


@pytest.fixture
def lm(tmp_path):
    return write_arpa_lm(tmp_path / "lm.arpa", [s.split() for s in LM_TEXT], order=3)


def posteriors(
    units: list[str], table: UnitTable, seed: int = 0, max_repeat: int = 3
) -> torch.Tensor:
    """Log-posteriors [T, V] of ``units``: each on 1..max_repeat frames, then 0-2 blank frames
    (always one between two equal units and at the end), the right unit 4 nats above noise."""
    rng = random.Random(seed)
    frames: list[int] = [table.blank]
    for i, unit in enumerate(units):
        index = table.index(unit)
        frames += [index] * rng.randint(1, max_repeat)
        blanks = rng.randint(0, 2)
        if i + 1 == len(units) or units[i + 1] == unit:
            blanks = max(blanks, 1)
        frames += [table.blank] * blanks
    g = torch.Generator().manual_seed(seed)
    logits = 0.5 * torch.randn(len(frames), len(table), generator=g)
    logits[torch.arange(len(frames)), torch.tensor(frames)] += 4.0
    return logits.log_softmax(-1)


def phones_of(words: str, lexicon: Lexicon) -> list[str]:
    return [p for w in words.split() for p in lexicon[w][0]]


# --------------------------------------------------------------------------- ARPA training
def test_kneser_ney_values_by_hand(tmp_path) -> None:
    """Bigram KN of ``a b`` / ``a``: unigrams from continuation counts (a:1 b:1 </s>:2), one
    discount 0.5 (too few counts for three), interpolated with 1/4 over {a, b, </s>, <unk>}."""
    text = train_arpa_lm([["a", "b"], ["a"]], order=2)
    path = tmp_path / "lm.arpa"
    path.write_text(text, encoding="utf-8")
    model = ArpaModel(path)
    assert model.order == 2
    p = {g: math.exp(lp) for g, lp in model.logprob.items()}
    assert p[("a",)] == pytest.approx(0.21875, rel=1e-6)
    assert p[("b",)] == pytest.approx(0.21875, rel=1e-6)
    assert p[("</s>",)] == pytest.approx(0.46875, rel=1e-6)
    assert p[("<unk>",)] == pytest.approx(0.09375, rel=1e-6)
    assert model.logprob[("<s>",)] == -math.inf
    # bigrams: discount 3/5 (n1 = 3, n2 = 1); P(a | <s>) = (2 - 0.6) / 2 + 0.3 * P(a)
    assert p[("<s>", "a")] == pytest.approx(0.7 + 0.3 * 0.21875, rel=1e-6)
    assert math.exp(model.backoff[("<s>",)]) == pytest.approx(0.3, rel=1e-6)
    assert set(g for g in model.logprob if len(g) == 2) == {
        ("<s>", "a"), ("a", "b"), ("a", "</s>"), ("b", "</s>"),
    }  # fmt: skip


def _log_p(model: ArpaModel, word: str, hist: tuple[str, ...]) -> float:
    if hist + (word,) in model.logprob:
        return model.logprob[hist + (word,)]
    if not hist:
        return model.logprob.get((word,), -math.inf)
    return model.backoff.get(hist, 0.0) + _log_p(model, word, hist[1:])


def test_arpa_lm_is_normalised_and_readable(tmp_path) -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(30)]
    sentences = [[rng.choice(vocab[: rng.randint(3, 30)]) for _ in range(rng.randint(1, 12))]]
    sentences += [
        [rng.choice(vocab[: rng.randint(3, 30)]) for _ in range(rng.randint(1, 12))]
        for _ in range(300)
    ]
    path = write_arpa_lm(tmp_path / "lm4.arpa", sentences, order=4, vocabulary=vocab[:25])
    model = ArpaModel(path)
    assert model.order == 4
    assert "<unk>" in model.symbols and "w26" not in model.symbols
    targets = [*model.symbols, "</s>"]
    histories = [g for g in model.logprob if len(g) < 4 and g[-1] != "</s>"]
    for hist in [("<s>",), *rng.sample(histories, 40)]:
        total = sum(math.exp(_log_p(model, w, hist)) for w in targets)
        assert total == pytest.approx(1.0, abs=1e-5), hist
    # KenLM reads the same numbers (log10)
    from flashlight.lib.text.dictionary import Dictionary

    words = Dictionary(vocab[:25] + ["<unk>"])
    kenlm = load_kenlm(path, words)
    state, score = kenlm.score(kenlm.start(False), words.get_index("w1"))
    assert score == pytest.approx(_log_p(model, "w1", ("<s>",)) / math.log(10), abs=1e-5)
    _, score2 = kenlm.score(state, words.get_index("w2"))
    assert score2 == pytest.approx(_log_p(model, "w2", ("<s>", "w1")) / math.log(10), abs=1e-5)


def test_read_lm_sentences_splits_like_the_lexicon_tools(tmp_path) -> None:
    path = tmp_path / "text.txt"
    path.write_text("The red book.\n\n  I read, the BOOK!\n", encoding="utf-8")
    assert read_lm_sentences([path]) == [["the", "red", "book"], ["i", "read", "the", "book"]]
    empty = tmp_path / "empty.txt"
    empty.write_text("...\n", encoding="utf-8")
    with pytest.raises(DataError, match="no words"):
        read_lm_sentences([empty])


# --------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("sentence", ["the red book", "i read the book", "i read a book"])
def test_recovers_words_and_lm_breaks_homophone_ties(sentence, lexicon, lm) -> None:
    decoder = CtcLexiconDecoder(PHONE_TABLE, lexicon, lm, LexiconDecoderConfig(lm_weight=1.0))
    for seed in range(3):
        lp = posteriors(phones_of(sentence, lexicon), PHONE_TABLE, seed)
        assert decoder.decode_utterance(lp)[0].text == sentence


def test_without_lm_homophones_tie(lexicon) -> None:
    decoder = CtcLexiconDecoder(PHONE_TABLE, lexicon, None, LexiconDecoderConfig(nbest=5))
    lp = posteriors(phones_of("the red book", lexicon), PHONE_TABLE)
    best, second = decoder.decode_utterance(lp)[:2]
    assert {best.words, second.words} == {("the", "red", "book"), ("the", "read", "book")}
    assert best.score == pytest.approx(second.score)


def test_repeated_last_unit_is_absorbed_in_the_word(lexicon, lm) -> None:
    """The best path follows the frame-wise argmax: its acoustic score is the sum of the frame
    maxima when the last unit of a word lasts several frames (then a blank, or the end)."""
    decoder = CtcLexiconDecoder(PHONE_TABLE, lexicon, lm, LexiconDecoderConfig(lm_weight=1.0))
    table = PHONE_TABLE
    frames = [table.index(u) for u in "ð ə ə <s> ɹ ɛ d d d <s> b ʊ k k".split()]
    logits = torch.full((len(frames), len(table)), -3.0)
    logits[torch.arange(len(frames)), torch.tensor(frames)] = 3.0
    lp = logits.log_softmax(-1)
    hyp = decoder.decode_utterance(lp)[0]
    assert hyp.text == "the red book"
    assert hyp.am_score == pytest.approx(lp.max(-1).values.sum().item(), abs=1e-4)


def test_batch_decode_with_padding(lexicon, lm) -> None:
    decoder = CtcLexiconDecoder(PHONE_TABLE, lexicon, lm, LexiconDecoderConfig(lm_weight=1.0))
    a = posteriors(phones_of("i read the book", lexicon), PHONE_TABLE, 1)
    b = posteriors(phones_of("the books", lexicon), PHONE_TABLE, 2)
    batch = torch.zeros(2, len(a), len(PHONE_TABLE))
    batch[0], batch[1, : len(b)] = a, b
    batch[1, len(b) :, PHONE_TABLE.index("aɪ")] = 10.0  # garbage under the padding
    mask = torch.zeros(2, len(a), dtype=torch.bool)
    mask[1, len(b) :] = True
    assert decoder.decode(batch, mask) == ["i read the book", "the books"]


def test_letters_with_word_boundary_unit(tmp_path) -> None:
    letters = SPECIALS + ("|", "t", "h", "e", "r", "d", "b", "o", "k", "a", "i", "s")
    table = UnitTable(letters, blank=0, ignore=frozenset({1, 2, 3}))
    lexicon = Lexicon()
    for word in ("the", "red", "read", "book", "books", "a", "i"):
        lexicon.add(word, list(word))
    lm = write_arpa_lm(tmp_path / "lm.arpa", [s.split() for s in LM_TEXT], order=3)
    decoder = CtcLexiconDecoder(table, lexicon, lm, LexiconDecoderConfig(lm_weight=1.0))
    assert table.symbols[decoder.sil] == "|"
    for sentence in ("the red book", "i read the book"):
        units = [u for w in sentence.split() for u in (*w, "|")]
        lp = posteriors(units, table, seed=3)
        assert decoder.decode_utterance(lp)[0].text == sentence


def test_lexicon_units_missing_from_the_model(lexicon, caplog) -> None:
    lexicon.add("zoo", ["z", "uː"])
    with caplog.at_level(logging.WARNING):
        CtcLexiconDecoder(PHONE_TABLE, lexicon)
    assert "'z'" in caplog.text
    other = Lexicon()
    other.add("zoo", ["z", "uː"])
    with pytest.raises(DataError, match="no word"):
        CtcLexiconDecoder(PHONE_TABLE, other)


def test_missing_lm_file(lexicon, tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        CtcLexiconDecoder(PHONE_TABLE, lexicon, tmp_path / "none.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0 a\n\n\\end\\\n", encoding="utf-8")
    with pytest.raises(DataError, match="KenLM"):
        CtcLexiconDecoder(PHONE_TABLE, lexicon, bad)


# --------------------------------------------------------------------------- the decode CLI
def save_tiny_wav2vec_ctc(path, data, labels: str):
    """A random fairseq ``wav2vec_ctc`` (2 tiny blocks) as a fairseq checkpoint over ``labels``."""
    from fairseq import tasks
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config
    from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig
    from fairseq.tasks.audio_finetuning import AudioFinetuningConfig
    from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
    from omegaconf import OmegaConf

    def full_config(model, task, model_name: str, task_name: str) -> dict:
        root = OmegaConf.structured(FairseqConfig())
        root.model, root.task = OmegaConf.structured(model), OmegaConf.structured(task)
        cfg = OmegaConf.to_container(root, resolve=True, enum_to_str=True)
        cfg["model"]["_name"], cfg["task"]["_name"] = model_name, task_name
        return cfg

    w2v = Wav2Vec2Config(
        conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
        encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
        encoder_attention_heads=2, conv_pos=16, conv_pos_groups=4, final_dim=16,
    )  # fmt: skip
    w2v_args = full_config(w2v, AudioPretrainingConfig(), "wav2vec2", "audio_pretraining")
    ctc = Wav2Vec2CtcConfig(w2v_path="", w2v_args=w2v_args, normalize=False)
    task_cfg = AudioFinetuningConfig(data=str(data), labels=labels)
    cfg = full_config(ctc, task_cfg, "wav2vec_ctc", "audio_finetuning")
    conf = OmegaConf.create(cfg)
    model = tasks.setup_task(conf.task).build_model(conf.model)
    cfg["task"]["data"] = "/moved/away"
    history = [{"criterion_name": "ctc", "optimizer_name": "adam", "lr_scheduler_state": {}}]
    state = {"cfg": cfg, "model": model.state_dict(), "optimizer_history": history}
    torch.save({**state, "extra_state": {}}, path)
    return path


def _kaldi(path) -> dict[str, str]:
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


def _rescore(out, set_name: str) -> dict:
    """Totals of scoring the written hyp/ref files (no normalisation)."""
    from speechkd.eval.wer import Utterance, score_utterances

    refs, hyps = _kaldi(out / f"ref-{set_name}.txt"), _kaldi(out / f"hyp-{set_name}.txt")
    utts = [Utterance(i, refs[i], hyps.get(i, ""), "en") for i in refs]
    return score_utterances(utts, "wer").totals.to_dict()


def test_decode_cli_wav2vec_ctc_phones_greedy_and_lexicon(tmp_path) -> None:
    from speechkd.bin import w2v2_decode
    from tests.test_ctc_decode import TINY_SENTENCES, write_tiny_fairseq_data

    data = write_tiny_fairseq_data(tmp_path)
    ckpt = save_tiny_wav2vec_ctc(tmp_path / "w2v.pt", data, "phn")
    common = ["--checkpoint", str(ckpt), "--trust-fairseq-checkpoint", "--data", str(data)]
    common += ["--subset", "test", "--unit", "phone"]

    # greedy: phone sequences scored against test.phn (a phone error rate)
    greedy = tmp_path / "decode_greedy"
    assert w2v2_decode.main([*common, "--out-dir", str(greedy)]) == 0
    scores = json.loads((greedy / "scores-test.json").read_text())
    assert scores["scored_units"] == "phones" and scores["decoder"] == "greedy"
    refs = _kaldi(greedy / "ref-test.txt")
    assert refs["utt0"] == "ð ə ɹ ɛ d b ʊ k"
    assert scores["totals"] == _rescore(greedy, "test")
    table = UnitTable.from_fairseq_dict(data / "dict.phn.txt")
    assert all(
        set(h.split()) <= set(table.symbols[4:]) for h in _kaldi(greedy / "hyp-test.txt").values()
    )
    # an optional-silence phone (here a stand-in) is left out of the best path's phones
    hyps = _kaldi(greedy / "hyp-test.txt")
    sil = Counter(p for h in hyps.values() for p in h.split()).most_common(1)[0][0]
    no_sil = tmp_path / "decode_no_sil"
    assert w2v2_decode.main([*common, "--out-dir", str(no_sil), "--sil-token", sil]) == 0
    kept = {u: " ".join(p for p in h.split() if p != sil) for u, h in hyps.items()}
    assert _kaldi(no_sil / "hyp-test.txt") == kept
    assert json.loads((no_sil / "decode-test.json").read_text())["sil_token"] == sil

    # lexicon + LM beam search: words of the lexicon, scored against test.wrd
    lm = write_arpa_lm(tmp_path / "lm.arpa", [s.split() for s in TINY_SENTENCES], order=3)
    beam = tmp_path / "decode_lm"
    assert w2v2_decode.main([*common, "--out-dir", str(beam), "--lexicon",
                             str(data / "lexicon.txt"), "--lm", str(lm), "--lm-weight", "1.5",
                             "--word-score", "-0.5", "--beam", "20"]) == 0  # fmt: skip
    record = json.loads((beam / "decode-test.json").read_text())
    assert record["decoder"] == "lexicon" and record["decoder_config"]["lm_weight"] == 1.5
    assert record["sil_token"] == "<s>"  # no word-boundary unit: the blank
    assert _kaldi(beam / "ref-test.txt")["utt1"] == "i read the book"
    words = {"the", "red", "read", "book", "i"}
    hyps = _kaldi(beam / "hyp-test.txt")
    assert all(set(h.split()) <= words for h in hyps.values()) and any(hyps.values())
    scores = json.loads((beam / "scores-test.json").read_text())
    assert scores["scored_units"] == "words" and scores["totals"] == _rescore(beam, "test")
    assert (beam / "errs-test.txt").read_text().startswith(f"%WER {scores['score']:.2f}")
