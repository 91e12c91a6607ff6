"""The LibriSpeech and GigaSpeech DistillW2V2 recipes: their data stages on miniature corpora
with the real layouts, up to the shared method stages' fairseq export (stage 10)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fake_corpora import gigaspeech as fake_giga
from fake_corpora import librispeech as fake_ls

ROOT = Path(__file__).resolve().parents[1]


def run_recipe(corpus: str, tmp: Path, *options: str) -> subprocess.CompletedProcess:
    cmd = ["bash", str(ROOT / "egs" / corpus / "distill_w2v2" / "run.sh")]
    cmd += ["--data", str(tmp / "data"), "--expdir", str(tmp / "exp"), "--nj", "1", *options]
    env = dict(os.environ, speechkd_max_jobs="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def read_tsv(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[1:]


def test_librispeech_data_stages(tmp_path: Path) -> None:
    for part in ("train-clean-100", "dev-clean", "test-clean"):
        corpus = fake_ls.build_librispeech(tmp_path / "corpus", part)
    run_recipe(
        "librispeech", tmp_path, "--corpus-dir", str(corpus), "--pool-parts", "",
        "--test-parts", "test-clean", "--stage", "0", "--stop-stage", "10",
    )  # fmt: skip
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
    # the phone LM of the lexicon call saw the test text: it is not kept as a denominator
    assert not (lang / "den.fst.txt").exists()


def test_gigaspeech_data_stages(tmp_path: Path) -> None:
    corpus = fake_giga.build_gigaspeech(tmp_path / "corpus")
    run_recipe(
        "gigaspeech", tmp_path, "--corpus-dir", str(corpus), "--pool-subset", "XL",
        "--train-subset", "XS", "--dev-subset", "DEV", "--test-subsets", "DEV",
        "--stage", "0", "--stop-stage", "10",
    )  # fmt: skip
    data = tmp_path / "exp" / "distill_w2v2" / "data"
    train_words = (data / "asr" / "train.wrd").read_text(encoding="utf-8")
    assert train_words.strip() and "<" not in train_words  # tags removed
    for split in ("train", "dev", "DEV"):
        assert read_tsv(data / "asr" / f"{split}.tsv")
    assert len(read_tsv(data / "pool" / "train.tsv")) == 2  # the XL segments
    # segments of long opus recordings are rendered as 16 kHz wav files
    assert list((data / "pool" / "audio" / "train").glob("*.wav"))
