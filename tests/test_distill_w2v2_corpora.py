"""The LibriSpeech and GigaSpeech DistillW2V2 recipes: their data stages on miniature corpora
with the real layouts, up to the shared method stages' fairseq export (stage 10) and the
denominator graph from the corpus's raw text with random silence (stage 11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fake_corpora import gigaspeech as fake_giga
from fake_corpora import librispeech as fake_ls

ROOT = Path(__file__).resolve().parents[1]


def run_recipe(
    corpus: str, tmp: Path, *options: str, check: bool = True
) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "egs" / corpus / "distill_w2v2" / "run.sh")]
    cmd += ["--data", str(tmp / "data"), "--expdir", str(tmp / "exp"), "--nj", "1", *options]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def den_stats(tmp: Path) -> dict:
    return json.loads((tmp / "data" / "lang_den" / "stats.json").read_text(encoding="utf-8"))


def check_random_silence(stats: dict) -> None:
    """The den graph's silence: SIL at random, 0.2 between words and 0.8 at sentence edges (the
    paper's ref. [10], Kaldi's e2e text_to_phones.py), seed 0; the phone table has SIL."""
    silence = stats["silence"]
    assert silence["mode"] == "random" and silence["phone"] == "SIL" and silence["seed"] == 0
    assert silence["sil_prob"] == 0.2 and silence["sil_prob_boundary"] == 0.8
    assert silence["inserted"] > 0
    assert stats["text"]["oov_tokens"] == 0 and stats["text"]["oov_sentences_skipped"] == 0
    assert stats["den"]["topology"] == "ctc" and stats["lm"]["order"] == 4


def read_tsv(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[1:]


def test_librispeech_data_stages(tmp_path: Path) -> None:
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        corpus = fake_ls.build_librispeech(tmp_path / "corpus", part)
    lm_corpus = fake_ls.write_lm_corpus(corpus)
    common = ["--corpus-dir", str(corpus), "--pool-parts", "", "--test-parts", "test-clean"]
    run_recipe("librispeech", tmp_path, *common, "--stage", "0", "--stop-stage", "11")
    data = tmp_path / "exp" / "distill_w2v2" / "data"
    utts = sum(len(u) for u in fake_ls.UTTERANCES.values())
    for split in ("train", "dev", "test-clean"):
        assert len(read_tsv(data / "asr" / f"{split}.tsv")) == utts
        words = (data / "asr" / f"{split}.wrd").read_text(encoding="utf-8").split()
        assert "gillian" in words and len((data / "asr" / f"{split}.phn").read_text().split()) > 0
    assert len(read_tsv(data / "pool" / "train.tsv")) == utts  # the labelled audio, unlabelled
    assert not (data / "pool" / "train.wrd").exists()
    lang = tmp_path / "data" / "lang_phone"
    assert (lang / "lexicon.txt").is_file() and (lang / "phones.txt").is_file()
    assert not (lang / "den.fst.txt").exists()  # a lexicon and the phone table only
    # the phone table has the denominator's silence phone; the lexicon the LM corpus's words
    assert (lang / "phones.txt").read_text().splitlines()[1] == "SIL 1"
    assert "garden" in (lang / "lexicon.txt").read_text().split()

    # stage 11: the denominator from librispeech-lm-norm.txt (default: in --corpus-dir)
    stats = den_stats(tmp_path)
    sentences = fake_ls.LM_SENTENCES
    assert stats["text"]["paths"] == [str(lm_corpus)]
    assert stats["text"]["sentences"] == len(sentences) and not stats["text"]["sampled"]
    assert stats["text"]["words"] == sum(len(line.split()) for line in sentences)
    check_random_silence(stats)
    assert (tmp_path / "data" / "lang_den" / "den.fst.txt").is_file()

    # the labelled transcripts only when asked for; a missing text is named
    run_recipe("librispeech", tmp_path, *common, "--stage", "11", "--stop-stage", "11",
               "--den-text", "transcripts")  # fmt: skip
    stats = den_stats(tmp_path)
    train_text = tmp_path / "exp" / "distill_w2v2" / "text" / "train.txt"
    assert stats["text"]["paths"] == [str(train_text)] and stats["text"]["sentences"] == utts
    missing = tmp_path / "librispeech-lm-norm.txt"
    proc = run_recipe("librispeech", tmp_path, *common, "--stage", "11", "--stop-stage", "11",
                      "--den-text", str(missing), check=False)  # fmt: skip
    assert proc.returncode != 0 and f"den text {missing} not found" in proc.stderr


def test_gigaspeech_data_stages(tmp_path: Path) -> None:
    corpus = fake_giga.build_gigaspeech(tmp_path / "corpus")
    run_recipe(
        "gigaspeech", tmp_path, "--corpus-dir", str(corpus), "--pool-subset", "XL",
        "--train-subset", "XS", "--dev-subset", "DEV", "--test-subsets", "DEV",
        "--stage", "0", "--stop-stage", "11",
    )  # fmt: skip
    data = tmp_path / "exp" / "distill_w2v2" / "data"
    train_words = (data / "asr" / "train.wrd").read_text(encoding="utf-8")
    assert train_words.strip() and "<" not in train_words  # tags removed
    for split in ("train", "dev", "DEV"):
        assert read_tsv(data / "asr" / f"{split}.tsv")
    assert len(read_tsv(data / "pool" / "train.tsv")) == 2  # the XL segments
    # segments of long opus recordings are rendered as 16 kHz wav files
    assert list((data / "pool" / "audio" / "train").glob("*.wav"))

    # stage 11: the denominator from the XL transcripts without tags (stage 1), random silence
    den_text = tmp_path / "data" / "text" / "gigaspeech_text_XL.txt"
    assert den_text.read_text(encoding="utf-8").splitlines() == [
        "AS THEY'RE LEAVING CAN KASH PULL ZAHRA ASIDE",
        "WHAT DID YOU SAY",
    ]
    stats = den_stats(tmp_path)
    assert stats["text"]["paths"] == [str(den_text)]
    assert stats["text"]["sentences"] == 2 and stats["text"]["words"] == 12
    check_random_silence(stats)
