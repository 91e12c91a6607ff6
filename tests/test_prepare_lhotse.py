"""Preparers built on lhotse.recipes, run on miniature corpora with the real on-disk layouts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_corpora import commonvoice as fake_cv
from fake_corpora import fleurs as fake_fleurs
from fake_corpora import gigaspeech as fake_giga
from fake_corpora import librispeech as fake_ls
from fake_corpora.aishell import build_aishell
from lhotse import CutSet, load_manifest

from speechkd.bin import prepare_corpus
from speechkd.data.prepare import available, get_preparer
from speechkd.data.prepare.commonvoice import ClipRow, select_most_upvoted
from speechkd.data.prepare.languages import parse_language_list, to_iso639_1
from speechkd.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def load(out: Path, corpus: str, kind: str, split: str):
    return load_manifest(out / f"{corpus}_{kind}_{split}.jsonl.gz")


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# ---------------------------------------------------------------- languages / registry


def test_iso639_1_codes():
    assert [to_iso639_1(c) for c in ("ca_es", "zh-CN", "cmn_hans_cn", "th", "yue_hant_hk")] == [
        "ca",
        "zh",
        "zh",
        "th",
        "yue",
    ]
    assert to_iso639_1("fil_ph") == "tl"
    with pytest.raises(DataError, match="1a"):
        to_iso639_1("1a")
    assert parse_language_list("ca th") == ["ca", "th"]
    assert parse_language_list(["ca,th", "uk"]) == ["ca", "th", "uk"]
    assert parse_language_list(["auto"]) == "auto"
    with pytest.raises(ConfigError):
        parse_language_list("ca auto")


def test_registry_finds_preparers_by_module_name():
    names = available()
    assert {"commonvoice", "fleurs", "librispeech", "gigaspeech", "aishell"} <= set(names)
    assert "lhotse_recipe" not in names and "languages" not in names
    assert get_preparer("fleurs").CORPUS == "fleurs"
    with pytest.raises(ConfigError, match="nosuchcorpus"):
        get_preparer("nosuchcorpus")


# ---------------------------------------------------------------- Common Voice


def _row(path: str, up: int, down: int) -> ClipRow:
    return ClipRow({"path": path}, f"x.tsv:{path}", up, down)


def test_select_most_upvoted_is_deterministic_and_keeps_order():
    rows = [_row("d", 2, 0), _row("c", 5, 1), _row("b", 5, 1), _row("z", 5, 0), _row("e", 3, 0)]
    # z (5 up, 0 down) first; b before c (same votes: clip name); then e; d last.
    assert [r.path for r in select_most_upvoted(rows, 1)] == ["z"]
    assert [r.path for r in select_most_upvoted(rows, 2)] == ["b", "z"]
    assert [r.path for r in select_most_upvoted(rows, 4)] == ["c", "b", "z", "e"]
    assert len(select_most_upvoted(rows, None)) == 5
    assert select_most_upvoted(rows, 0) == []


def _cv_expected(locale: str, part: str, limit: int | None) -> set[str]:
    clips = fake_cv.CLIPS[locale][part]
    ranked = sorted(clips, key=lambda c: (-c[2], c[3], fake_cv.clip_name(locale, c[0])))
    return {fake_cv.clip_name(locale, c[0])[:-4] for c in ranked[:limit]}


def test_commonvoice_downsamples_by_upvotes(tmp_path):
    corpus = fake_cv.build_commonvoice(tmp_path / "cv")
    out = tmp_path / "manifests"
    written = get_preparer("commonvoice").prepare(
        tmp_path / "cv", out, languages="ca th", train_utts=5, dev_utts=2
    )
    assert set(written) == {
        f"{lang}_{p}" for lang in ("ca", "th") for p in ("train", "dev", "test")
    }
    assert corpus.name == fake_cv.RELEASE
    for split, limit in (("train", 5), ("dev", 2), ("test", None)):
        sups = load(out, "commonvoice", "supervisions", f"ca_{split}")
        assert {s.id for s in sups} == _cv_expected("ca", split, limit)
    train = {s.id: s for s in load(out, "commonvoice", "supervisions", "ca_train")}
    # Catalan train ranking: #4 (5,0), #2 (5,1), #7 (4,2), #3 and #6 (3,0); #1, #5, #8 dropped.
    assert sorted(int(i[-1]) for i in train) == [2, 3, 4, 6, 7]
    four = train[fake_cv.clip_name("ca", 4)[:-4]]
    assert four.text == 'M\'agrada el "pa amb tomàquet".'
    assert four.language == "ca"
    assert four.custom["up_votes"] == 5 and four.custom["down_votes"] == 0
    assert four.custom["locale"] == "ca"
    assert four.speaker.startswith("client")
    # Thai has fewer clips than asked: all are kept.
    th_train = load(out, "commonvoice", "supervisions", "th_train")
    assert len(th_train) == 3 and {s.language for s in th_train} == {"th"}
    cuts = load(out, "commonvoice", "cuts", "th_test")
    assert isinstance(cuts, CutSet) and cuts[0].supervisions[0].text == "ลาก่อน"
    recording = load(out, "commonvoice", "recordings", "ca_test")[0]
    assert recording.sampling_rate == 48000
    assert recording.load_audio().shape[1] == recording.num_samples
    assert abs(recording.duration - 0.6) < 0.05


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_clip", "clips/common_voice_ca_3000031.mp3 not found"),
        ("empty_sentence", "test.tsv:3 .*empty transcript"),
        ("bad_utf8", "test.tsv:4: not valid UTF-8"),
    ],
)
def test_commonvoice_bad_input(tmp_path, damage, message):
    release = fake_cv.build_commonvoice(tmp_path / "cv")
    tsv = release / "ca" / "test.tsv"
    if damage == "missing_clip":
        (release / "ca" / "clips" / fake_cv.clip_name("ca", 31)).unlink()
    elif damage == "empty_sentence":
        lines = tsv.read_text(encoding="utf-8").splitlines()
        fields = lines[2].split("\t")
        fields[2] = " "
        lines[2] = "\t".join(fields)
        tsv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        append_bytes(tsv, "\t".join(fake_cv._row("ca", (32, "x", 2, 0))).encode() + b"\xff\n")
    with pytest.raises(DataError, match=message):
        get_preparer("commonvoice").prepare(release, tmp_path / "out", languages=["ca"])


# ---------------------------------------------------------------- FLEURS


@pytest.mark.parametrize("lhotse_layout", [False, True])
def test_fleurs(tmp_path, lhotse_layout):
    corpus = fake_fleurs.build_fleurs(tmp_path / "fleurs", lhotse_layout=lhotse_layout)
    out = tmp_path / "manifests"
    written = get_preparer("fleurs").prepare(corpus, out, languages=["ca", "th_th"])
    assert set(written) == {
        f"{lang}_{p}" for lang in ("ca", "th") for p in ("train", "dev", "test")
    }
    train = load(out, "fleurs", "supervisions", "ca_train")
    stem = fake_fleurs.wav_name(12)[:-4]
    assert [s.id for s in train] == [
        f"1001_1_{fake_fleurs.wav_name(11)[:-4]}",
        f"1001_2_{stem}",
        f"1002_1_{fake_fleurs.wav_name(13)[:-4]}",
    ]
    second = train[1]
    assert second.recording_id == stem and second.text == "hola món"
    assert second.custom["raw_text"] == "Hola, món!" and second.language == "ca"
    assert abs(second.duration - fake_fleurs.SECONDS) < 1e-6
    th_test = load(out, "fleurs", "supervisions", "th_test")
    assert [s.text for s in th_test] == ["ลาก่อน", "ไป"] and {s.language for s in th_test} == {"th"}


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_wav", r"test.tsv:1: audio file .*10000000000000000031.wav not found"),
        ("empty_text", r"dev.tsv:1 .*empty transcript"),
        ("bad_utf8", r"train.tsv:4: not valid UTF-8"),
    ],
)
def test_fleurs_bad_input(tmp_path, damage, message):
    corpus = fake_fleurs.build_fleurs(tmp_path / "fleurs")
    lang = corpus / "ca_es"
    if damage == "missing_wav":
        (lang / "audio" / "test" / fake_fleurs.wav_name(31)).unlink()
    elif damage == "empty_text":
        row = list(fake_fleurs.ROWS["ca_es"]["dev"][0])
        row[3] = ""
        (lang / "dev.tsv").write_text(fake_fleurs.tsv_line(tuple(row)) + "\n", encoding="utf-8")
    else:
        append_bytes(lang / "train.tsv", b"1005\t1.wav\t\xe9\tx\tx |\t16\tMALE\n")
    with pytest.raises(DataError, match=message):
        get_preparer("fleurs").prepare(corpus, tmp_path / "out", languages="ca")


# ---------------------------------------------------------------- LibriSpeech


def test_librispeech(tmp_path):
    corpus = fake_ls.build_librispeech(tmp_path)
    out = tmp_path / "manifests"
    written = get_preparer("librispeech").prepare(tmp_path, out)  # finds LibriSpeech/ inside
    assert list(written) == ["dev-clean"]
    sups = {s.id: s for s in load(out, "librispeech", "supervisions", "dev-clean")}
    assert set(sups) == {"84-121123-0000", "84-121123-0001", "174-50561-0000"}
    assert sups["84-121123-0001"].text == "BUT IN LESS THAN FIVE MINUTES"
    assert sups["84-121123-0001"].speaker == "84" and sups["84-121123-0001"].language == "en"
    assert abs(sups["84-121123-0001"].duration - 0.6) < 1e-6
    assert corpus.name == "LibriSpeech"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_flac", r"84-121123.trans.txt:2: audio file .*84-121123-0001.flac not found"),
        ("empty_text", r"174-50561.trans.txt:2 \(174-50561-0001\): empty transcript"),
        ("bad_utf8", r"174-50561.trans.txt:2: not valid UTF-8"),
    ],
)
def test_librispeech_bad_input(tmp_path, damage, message):
    corpus = fake_ls.build_librispeech(tmp_path)
    chapter = corpus / "dev-clean" / "84" / "121123"
    other = corpus / "dev-clean" / "174" / "50561" / "174-50561.trans.txt"
    if damage == "missing_flac":
        (chapter / "84-121123-0001.flac").unlink()
    elif damage == "empty_text":
        append_bytes(other, b"174-50561-0001 \n")
    else:
        append_bytes(other, b"174-50561-0001 CAF\xe9\n")
    with pytest.raises(DataError, match=message):
        get_preparer("librispeech").prepare(corpus, tmp_path / "out", parts=["dev-clean"])


# ---------------------------------------------------------------- GigaSpeech


def test_gigaspeech(tmp_path):
    corpus = fake_giga.build_gigaspeech(tmp_path)
    out = tmp_path / "manifests"
    get_preparer("gigaspeech").prepare(corpus, out, subsets="XS DEV XL")
    counts = {s: len(load(out, "gigaspeech", "supervisions", s)) for s in ("XS", "DEV", "XL")}
    assert counts == {"XS": 1, "DEV": 2, "XL": 2}
    assert list(load(out, "gigaspeech", "recordings", "DEV").ids) == ["YOU0000000002"]
    cuts = load(out, "gigaspeech", "cuts", "XL")
    assert len(cuts) == 2  # one cut per segment
    cut = next(c for c in cuts if c.supervisions[0].id == "POD0000000001_S0001")
    assert abs(cut.start - 1.1) < 1e-6 and abs(cut.duration - 0.7) < 1e-6
    assert cut.supervisions[0].text == "WHAT DID YOU SAY <QUESTIONMARK>"
    assert cut.supervisions[0].language == "en"
    assert cut.load_audio().shape == (1, round(0.7 * 16000))  # opus read by libsndfile


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing_audio", r"GigaSpeech.json: audio YOU0000000002: audio file .* not found"),
        ("empty_text", r"audio POD0000000001 segment POD0000000001_S0001: empty transcript"),
        ("bad_utf8", r"GigaSpeech.json: not valid UTF-8"),
    ],
)
def test_gigaspeech_bad_input(tmp_path, damage, message):
    corpus = fake_giga.build_gigaspeech(tmp_path)
    meta = corpus / "GigaSpeech.json"
    if damage == "missing_audio":
        (corpus / "audio" / "youtube" / "P0001" / "YOU0000000002.opus").unlink()
    elif damage == "empty_text":
        meta.write_text(
            meta.read_text(encoding="utf-8").replace("WHAT DID YOU SAY <QUESTIONMARK>", ""),
            encoding="utf-8",
        )
    else:
        meta.write_bytes(meta.read_bytes().replace(b"episode 1", b"\xe9pisode 1"))
    with pytest.raises(DataError, match=message):
        get_preparer("gigaspeech").prepare(corpus, tmp_path / "out", subsets=["XL", "DEV"])
    assert not list((tmp_path / "out").glob("*.jsonl.gz"))  # nothing half-written


# ---------------------------------------------------------------- AISHELL-1


def test_aishell(tmp_path, caplog):
    root = build_aishell(tmp_path)
    out = tmp_path / "manifests"
    with caplog.at_level(logging.WARNING, logger="speechkd.data.prepare.aishell"):
        get_preparer("aishell").prepare(root / "data_aishell", out)
    assert "1 of 4 wav files have no transcript" in caplog.text
    assert "BAC009S0003W0199" in caplog.text
    train = {s.id: s for s in load(out, "aishell", "supervisions", "train")}
    assert set(train) == {"BAC009S0002W0122", "BAC009S0002W0123", "BAC009S0003W0121"}
    assert train["BAC009S0002W0123"].text == "也成为地方政府的眼中钉"
    assert train["BAC009S0003W0121"].text == "K歌好听"  # lhotse's full-width mapping
    assert train["BAC009S0002W0122"].speaker == "S0002"
    assert {s.language for s in train.values()} == {"zh"}
    assert [s.id for s in load(out, "aishell", "supervisions", "test")] == ["BAC009S0764W0121"]


@pytest.mark.parametrize(
    "line, message",
    [
        (b"BAC009S0002W0124\n", r"aishell_transcript_v0.8.txt:\d+ \(BAC009S0002W0124\): empty"),
        (b"BAC009S0002W0124 \xb6\xd4\n", r"aishell_transcript_v0.8.txt:\d+: not valid UTF-8"),
    ],
)
def test_aishell_bad_input(tmp_path, line, message):
    root = build_aishell(tmp_path)
    append_bytes(root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt", line)
    with pytest.raises(DataError, match=message):
        get_preparer("aishell").prepare(root, tmp_path / "out")


# ---------------------------------------------------------------- command lines


def test_cli_dispatches_with_corpus_options(tmp_path):
    fake_cv.build_commonvoice(tmp_path / "cv")
    out = tmp_path / "manifests"
    argv = ["commonvoice", "--corpus-dir", str(tmp_path / "cv"), "--output-dir", str(out)]
    assert (
        prepare_corpus.main(argv + ["--languages", "ca", "--train-utts", "3", "--dev-utts", "all"])
        == 0
    )
    assert len(load(out, "commonvoice", "supervisions", "ca_train")) == 3
    assert len(load(out, "commonvoice", "supervisions", "ca_dev")) == 3
    assert not (out / "commonvoice_cuts_th_train.jsonl.gz").exists()
    with pytest.raises(SystemExit):
        prepare_corpus.main(argv + ["--train-utts", "-2"])
    assert prepare_corpus.main(argv) == 0  # every locale found, default sizes
    assert len(load(out, "commonvoice", "supervisions", "th_train")) == 3
    assert len(load(out, "commonvoice", "supervisions", "ca_train")) == 8


def test_shell_wrapper(tmp_path):
    fake_cv.build_commonvoice(tmp_path / "cv")
    out = tmp_path / "manifests"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env["SPEECHKD_ROOT"] = str(REPO)
    env["PYTHONPATH"] = str(REPO)
    script = str(REPO / "local" / "prepare_commonvoice.sh")
    result = subprocess.run(
        ["bash", script, "--corpus-dir", str(tmp_path / "cv"), "--output-dir", str(out),
         "--languages", "ca th", "--train-utts", "2", "--dev-utts", "1"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(load(out, "commonvoice", "supervisions", "th_train")) == 2
    assert len(load(out, "commonvoice", "supervisions", "ca_dev")) == 1
    bad = subprocess.run(
        ["bash", script, "--output-dir", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "--corpus-dir is required" in bad.stderr
