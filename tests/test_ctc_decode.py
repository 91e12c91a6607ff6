"""Best-path CTC decoding and unit → text post-processing (speechkd.eval.ctc_decode)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.eval.ctc_decode import (
    UnitTable,
    collapse_ctc,
    ctc_greedy,
    greedy_texts,
    letters_to_words,
    pieces_to_words,
    units_to_text,
)

LETTERS = ["<s>", "<pad>", "</s>", "<unk>", "|", "e", "l", "o", "h", "w", "r", "d"]


def one_hot_logits(paths: list[list[int]], vocab: int, noise: float = 0.3) -> torch.Tensor:
    """Logits [B, T, V] whose frame-wise argmax is ``paths`` (padded with -1 = no preference)."""
    frames = max(len(p) for p in paths)
    g = torch.Generator().manual_seed(0)
    logits = noise * torch.randn(len(paths), frames, vocab, generator=g)
    for b, path in enumerate(paths):
        for t, unit in enumerate(path):
            logits[b, t, unit] += 5.0
    return logits


def ids(word: str, table: list[str]) -> list[int]:
    return [table.index(ch) for ch in word]


def test_collapse_merges_repeats_then_drops_blanks() -> None:
    assert collapse_ctc([0, 5, 5, 0, 5, 6, 6, 6, 0, 0, 7, 0], blank=0) == [5, 5, 6, 7]
    assert collapse_ctc([3, 3, 1, 3], blank=1) == [3, 3]
    assert collapse_ctc([], blank=0) == []
    assert collapse_ctc([0, 0, 0], blank=0) == []


def test_greedy_on_hand_made_logits_with_padding() -> None:
    h, e, l, o, bar = (LETTERS.index(c) for c in "helo|")  # noqa: E741
    # "hello": the double l needs a blank between its frames; repeats of one unit collapse
    first = [0, h, h, e, l, l, 0, l, o, o, bar, 0]
    second = [h, 0, e, e, 0, 0]  # shorter: padded frames below would add "l" if not masked
    logits = one_hot_logits([first, second + [l] * (len(first) - len(second))], len(LETTERS))
    mask = torch.zeros(2, len(first), dtype=torch.bool)
    mask[1, len(second) :] = True
    out = ctc_greedy(logits, mask, blank=0)
    assert out == [[h, e, l, l, o, bar], [h, e]]
    # without the mask the padded frames are decoded
    assert ctc_greedy(logits, None, blank=0)[1] == [h, e, l]


def test_greedy_checks_shapes() -> None:
    with pytest.raises(DataError, match=r"\[B, T, V\]"):
        ctc_greedy(torch.zeros(4, 5))
    with pytest.raises(DataError, match="padding_mask"):
        ctc_greedy(torch.zeros(2, 4, 5), torch.zeros(2, 3, dtype=torch.bool))


def test_letter_and_bpe_post_processing_match_fairseq() -> None:
    from fairseq.data.data_utils import post_process

    letters = "h e l l o | w o r l d |".split()
    assert letters_to_words(letters) == "hello world"
    assert letters_to_words(letters) == post_process(" ".join(letters), "letter")
    pieces = ["\u2581he", "llo", "\u2581w", "or", "ld", "\u2581!"]
    assert pieces_to_words(pieces) == "hello world !"
    assert pieces_to_words(pieces) == post_process(" ".join(pieces), "sentencepiece")
    # repeated boundaries and a leading one give no empty words
    assert letters_to_words("| | a | | b".split()) == "a b"
    assert units_to_text(["ð", "ə", "|", "k", "æ", "t"], "phone") == "ð ə k æ t"
    assert units_to_text(letters, "letter") == "hello world"
    assert units_to_text(pieces, "bpe") == "hello world !"


def test_unit_table_reads_fairseq_dict_like_fairseq(tmp_path) -> None:
    from fairseq.data import Dictionary

    path = tmp_path / "dict.ltr.txt"
    path.write_text("| 10\ne 7\nl 5\no 4\nh 3\nw 2\nr 2\nd 1\n", encoding="utf-8")
    table = UnitTable.from_fairseq_dict(path)
    fairseq_dict = Dictionary.load(str(path))
    assert list(table.symbols) == fairseq_dict.symbols
    assert table.blank == fairseq_dict.bos() == 0
    assert table == UnitTable.from_fairseq_dictionary(fairseq_dict)
    # specials never reach the text
    assert table.to_symbols([0, 1, 2, 3, 4, 5]) == ["|", "e"]
    bad = tmp_path / "dict.bad.txt"
    bad.write_text("| 10\ne seven\n", encoding="utf-8")
    with pytest.raises(DataError, match="dict.bad.txt:2"):
        UnitTable.from_fairseq_dict(bad)


def test_greedy_texts_letters_end_to_end(tmp_path) -> None:
    table = UnitTable(tuple(LETTERS), blank=0, ignore=frozenset({1, 2, 3}))
    word = ids("hel", LETTERS) + [0] + ids("lo|world|", LETTERS)
    path = [u for unit in word for u in (unit, unit)]  # every unit on two frames
    unk = LETTERS.index("<unk>")
    logits = one_hot_logits([path, [unk, 0] + ids("he|", LETTERS)], len(LETTERS))
    mask = torch.zeros(2, len(path), dtype=torch.bool)
    mask[1, 5:] = True
    assert greedy_texts(logits, mask, table, "letter") == ["hello world", "he"]


# --------------------------------------------------------------------------- the decode CLI
TINY_WORDS = {"the": "ð ə", "red": "ɹ ɛ d", "read": "ɹ ɛ d", "book": "b ʊ k", "i": "aɪ"}
TINY_SENTENCES = ["the red book", "i read the book", "the book", "i read"]


def write_tiny_fairseq_data(root: Path) -> Path:
    """A fairseq data dir: test.{tsv,wrd,ltr,phn}, dict.{ltr,phn}.txt, noise audio of
    different lengths (so that batches are padded) and a lexicon.txt."""
    data = root / "data"
    audio = root / "audio"
    audio.mkdir(parents=True)
    data.mkdir()
    rng = np.random.default_rng(0)
    tsv, wrd, ltr, phn = [str(audio)], [], [], []
    for i, sentence in enumerate(TINY_SENTENCES):
        samples = int(16000 * (0.5 + 0.15 * i))
        sf.write(audio / f"utt{i}.wav", 0.1 * rng.standard_normal(samples), 16000)
        tsv.append(f"utt{i}.wav\t{samples}")
        words = sentence.split()
        wrd.append(sentence)
        ltr.append(" ".join(ch for w in words for ch in (*w, "|")))
        phn.append(" ".join(TINY_WORDS[w] for w in words))
    for name, lines in (("tsv", tsv), ("wrd", wrd), ("ltr", ltr), ("phn", phn)):
        (data / f"test.{name}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for ext, lines in (("ltr", ltr), ("phn", phn)):
        counts = Counter(u for line in lines for u in line.split())
        text = "".join(f"{u} {n}\n" for u, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        (data / f"dict.{ext}.txt").write_text(text, encoding="utf-8")
    lexicon = "".join(f"{w} {p}\n" for w, p in TINY_WORDS.items())
    (data / "lexicon.txt").write_text(lexicon, encoding="utf-8")
    return data


def _checkpoint_state(cfg: dict, model: torch.nn.Module) -> dict:
    history = [{"criterion_name": "ctc", "optimizer_name": "adam", "lr_scheduler_state": {}}]
    return {
        "cfg": cfg,
        "model": model.state_dict(),
        "optimizer_history": history,
        "extra_state": {},
    }


def save_tiny_student(path: Path, data: Path, labels: str, variant: str = "ss") -> Path:
    """A random ``speechkd_w2v2_student`` (tiny, chunk-streaming) as a fairseq checkpoint."""
    from omegaconf import OmegaConf

    from speechkd.fairseq_plugin.models.w2v2_student import W2V2Student, load_arch

    table = UnitTable.from_fairseq_dict(data / f"dict.{labels}.txt")
    arch = load_arch("tiny_student", variant, chunk_size=8, history_size=16)
    model = W2V2Student(arch, len(table))
    model_cfg = OmegaConf.to_container(OmegaConf.structured(arch), enum_to_str=True)
    model_cfg["_name"] = "speechkd_w2v2_student"
    task = {"_name": "audio_finetuning", "data": "/moved/away", "labels": labels}
    torch.save(_checkpoint_state({"common": {}, "task": task, "model": model_cfg}, model), path)
    return path


def _read_kaldi(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utt, _, text = line.partition(" ")
        out[utt] = text
    return out


def test_decode_cli_student_letters_and_streaming(tmp_path) -> None:
    from speechkd.bin import score as score_cli
    from speechkd.bin import w2v2_decode
    from speechkd.fairseq_plugin.checkpoints import load_fairseq_model

    data = write_tiny_fairseq_data(tmp_path)
    ckpt = save_tiny_student(tmp_path / "student.pt", data, "ltr")
    out = tmp_path / "exp" / "decode_test"
    common = ["--checkpoint", str(ckpt), "--trust-fairseq-checkpoint", "--data", str(data)]
    common += ["--subset", "test", "--unit", "letter"]
    # at most 24000 padded samples a batch: the two shortest utterances share one (padding)
    assert w2v2_decode.main([*common, "--out-dir", str(out), "--normalize", "whisper",
                             "--max-samples", "24000"]) == 0  # fmt: skip
    names = ["hyp", "ref", "recogs", "errs", "wer-summary", "scores", "decode"]
    files = {n: out / f"{n}-test.{'json' if n in ('scores', 'decode') else 'txt'}" for n in names}
    assert all(p.is_file() for p in files.values()), sorted(p.name for p in out.iterdir())
    decode = json.loads(files["decode"].read_text())
    assert decode["num_utterances"] == 4 and decode["decoder"] == "greedy"
    assert decode["audio_seconds"] == pytest.approx(sum(0.5 + 0.15 * i for i in range(4)))
    assert decode["rtf"] > 0 and decode["decode_seconds"] > 0
    assert _read_kaldi(files["ref"]) == {f"utt{i}": s for i, s in enumerate(TINY_SENTENCES)}

    # the hypotheses are the greedy decodes of each utterance alone (no padding)
    model, _, _ = load_fairseq_model(ckpt, True, {"data": str(data)})
    table = UnitTable.from_fairseq_dict(data / "dict.ltr.txt")
    expected = {}
    for line in (data / "test.tsv").read_text().splitlines()[1:]:
        name = line.split("\t")[0]
        wav, _ = sf.read(str(tmp_path / "audio" / name), dtype="float32")
        with torch.no_grad():
            logits = model(source=torch.from_numpy(wav)[None])["logits"]
        expected[Path(name).stem] = greedy_texts(logits, None, table, "letter")[0]
    hyps = _read_kaldi(files["hyp"])
    assert hyps == expected
    assert any(hyps.values())

    # the WER is what scoring the written files gives
    rescored = tmp_path / "rescored"
    assert score_cli.main(["--ref", str(files["ref"]), "--hyp", str(files["hyp"]),
                           "--set-name", "test", "--out-dir", str(rescored),
                           "--language", "en"]) == 0  # fmt: skip
    ours = json.loads(files["scores"].read_text())
    theirs = json.loads((rescored / "scores-test.json").read_text())
    assert ours["score"] == theirs["score"] and ours["totals"] == theirs["totals"]
    assert ours["totals"]["err"] > 0
    summary = files["wer-summary"].read_text()
    assert f"all\t{ours['score']:.2f}" in summary

    # chunk-by-chunk streaming gives the same hypotheses
    stream_out = tmp_path / "exp" / "decode_stream"
    assert w2v2_decode.main([*common, "--out-dir", str(stream_out), "--streaming"]) == 0
    assert _read_kaldi(stream_out / "hyp-test.txt") == hyps
    assert json.loads((stream_out / "decode-test.json").read_text())["streaming"] is True


def test_decode_cli_refuses_untrusted_and_mismatched(tmp_path) -> None:
    from speechkd.bin import w2v2_decode

    data = write_tiny_fairseq_data(tmp_path)
    ckpt = save_tiny_student(tmp_path / "student.pt", data, "ltr")
    args = ["--checkpoint", str(ckpt), "--data", str(data), "--subset", "test"]
    args += ["--out-dir", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="trust"):
        w2v2_decode.main([*args, "--unit", "letter"])
    with pytest.raises(DataError, match="outputs"):
        w2v2_decode.main([*args, "--unit", "phone", "--trust-fairseq-checkpoint", "true"])
    with pytest.raises(ConfigError, match="--lm needs --lexicon"):
        w2v2_decode.main([*args, "--unit", "letter", "--trust-fairseq-checkpoint",
                          "--lm", str(tmp_path / "lm.arpa")])  # fmt: skip
