"""lhotse CutSets → fairseq manifests (.tsv) and labels (.wrd/.ltr/.phn, dict.*.txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from speechkd.bin import export_fairseq
from speechkd.data.fairseq_export import (
    dictionary_text,
    direct_audio_path,
    letters_line,
    select_cuts,
)
from speechkd.data.fairseq_export import (
    export_fairseq as export,
)
from speechkd.errors import ConfigError, DataError
from speechkd.mmi.lexicon import Lexicon

LEXICON = "hello h ə l oʊ\nworld w ɜː l d\nbig b ɪ ɡ\nhi h aɪ\n"
DICT_LTR = "| 7\nl 6\nh 4\no 4\ni 3\nd 2\ne 2\nr 2\nw 2\nb 1\ng 1\n"
PHONES = ["aɪ", "b", "d", "h", "l", "oʊ", "w", "ð", "ɜː", "ə", "ɡ", "ɪ"]  # ð: never used


def write_wav(path: Path, samples: int, rate: int = 16000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(samples)
    data = 0.1 * rng.standard_normal((samples, channels) if channels > 1 else samples)
    sf.write(path, data, rate, subtype="PCM_16")
    return path


def make_cut(
    cut_id: str, path: Path, text: str | None, language: str = "en", start: float = 0.0,
    duration: float | None = None,
) -> MonoCut:  # fmt: skip
    rec = Recording.from_file(path, recording_id=cut_id)
    duration = rec.duration - start if duration is None else duration
    sups = []
    if text is not None:
        sups = [
            SupervisionSegment(
                id=cut_id,
                recording_id=cut_id,
                start=start,
                duration=duration,
                text=text,
                language=language,
            )  # fmt: skip
        ]
    return MonoCut(
        id=cut_id, start=start, duration=duration, channel=0, recording=rec, supervisions=sups
    )


@pytest.fixture
def corpus(tmp_path):
    """Three 16 kHz mono cuts (listed in reverse id order), one 8 kHz cut, one German cut."""
    wav = tmp_path / "corpus" / "wav"
    cuts = [
        make_cut("utt3", write_wav(wav / "a" / "utt3.wav", 4800), "Big world!"),
        make_cut("utt1", write_wav(wav / "a" / "utt1.wav", 3200), "Hello, world."),
        make_cut("utt2", write_wav(wav / "b" / "utt2.wav", 1600), "hi"),
        make_cut("utt4", write_wav(wav / "utt4_8k.wav", 800, rate=8000), "Hello hi"),
        make_cut("de1", write_wav(wav / "de1.wav", 1600), "hallo welt", language="de"),
    ]
    (tmp_path / "lexicon.txt").write_text(LEXICON, encoding="utf-8")
    (tmp_path / "phones.txt").write_text(
        "<eps> 0\n" + "".join(f"{p} {i}\n" for i, p in enumerate(PHONES, 1)), encoding="utf-8"
    )
    manifest = tmp_path / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(manifest)
    return tmp_path, manifest


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_labelled_export_exact_files(corpus):
    tmp, manifest = corpus
    out = tmp / "fairseq"
    export_fairseq.main(
        ["--cuts", str(manifest), "--split", "train", "--language", "en",
         "--lexicon", str(tmp / "lexicon.txt"), "--out-dir", str(out)]
    )  # fmt: skip
    wav_root = (tmp / "corpus" / "wav").resolve()
    lines = read(out / "train.tsv").splitlines()
    # common root of the listed files and the rendered 8 kHz cut (out/audio/train)
    root = Path(lines[0])
    assert root == Path(tmp.resolve())
    rel = lambda p: str(Path(p).resolve().relative_to(root))  # noqa: E731
    assert lines[1:] == [
        f"{rel(wav_root / 'a' / 'utt1.wav')}\t3200",
        f"{rel(wav_root / 'b' / 'utt2.wav')}\t1600",
        f"{rel(wav_root / 'a' / 'utt3.wav')}\t4800",
        f"{rel(out / 'audio' / 'train' / 'utt4.wav')}\t1600",
    ]
    assert read(out / "train.wrd") == "hello world\nhi\nbig world\nhello hi\n"
    assert read(out / "train.ltr") == (
        "h e l l o | w o r l d |\nh i |\nb i g | w o r l d |\nh e l l o | h i |\n"
    )
    assert read(out / "train.phn") == ("h ə l oʊ w ɜː l d\nh aɪ\nb ɪ ɡ w ɜː l d\nh ə l oʊ h aɪ\n")
    assert read(out / "dict.ltr.txt") == DICT_LTR
    # by count, then symbol; the unused phone of phones.txt (ð) last with count 0
    # the phone table's order (phone p -> fairseq index p + 3: the pdf order of the den graph)
    assert read(out / "dict.phn.txt") == (
        "aɪ 2\nb 1\nd 2\nh 4\nl 4\noʊ 2\nw 2\nð 0\nɜː 2\nə 2\nɡ 1\nɪ 1\n"
    )
    # the 8 kHz recording was rendered at 16 kHz mono
    info = sf.info(str(out / "audio" / "train" / "utt4.wav"))
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 1600)


def test_dev_split_keeps_train_dictionaries(corpus):
    tmp, manifest = corpus
    out = tmp / "fs"
    common = ["--cuts", str(manifest), "--language", "en", "--out-dir", str(out),
              "--lexicon", str(tmp / "lexicon.txt")]  # fmt: skip
    export_fairseq.main([*common, "--split", "train"])
    assert read(out / "dict.ltr.txt") == DICT_LTR
    (out / "dict.ltr.txt").write_text("marker 1\n")
    export_fairseq.main([*common, "--split", "dev"])
    assert read(out / "dict.ltr.txt") == "marker 1\n"
    assert read(out / "dev.ltr") == read(out / "train.ltr")
    export_fairseq.main([*common, "--split", "dev", "--dicts", "write"])
    assert read(out / "dict.ltr.txt") == DICT_LTR


def test_segment_cut_is_rendered(tmp_path):
    path = write_wav(tmp_path / "long.wav", 16000)
    cut = make_cut("seg", path, "hi", start=0.25, duration=0.5)
    assert direct_audio_path(cut) is None
    assert direct_audio_path(make_cut("whole", path, "hi")) == path.resolve()
    lexicon = Lexicon.from_kaldi(_write(tmp_path / "lexicon.txt", LEXICON))
    stats = export([cut], tmp_path / "out", "train", lexicon=lexicon)
    assert (stats.written_audio, stats.linked_audio) == (1, 0)
    audio, rate = sf.read(str(tmp_path / "out" / "audio" / "train" / "seg.wav"))
    original, _ = sf.read(str(path))
    assert rate == 16000 and len(audio) == 8000
    np.testing.assert_allclose(audio, original[4000:12000], atol=1 / 32768)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_oov_word_is_an_error_or_skipped(corpus):
    tmp, manifest = corpus
    lexicon = _write(tmp / "small_lexicon.txt", "hello h ə l oʊ\nhi h aɪ\n")
    args = ["--cuts", str(manifest), "--split", "train", "--language", "en",
            "--lexicon", str(lexicon), "--phones", str(tmp / "phones.txt"),
            "--out-dir", str(tmp / "out")]  # fmt: skip
    with pytest.raises(DataError, match=r"cut utt1: word 'world' is not in the lexicon"):
        export_fairseq.main(args)
    assert not (tmp / "out" / "train.tsv").exists()
    export_fairseq.main([*args, "--skip-oov"])
    assert read(tmp / "out" / "train.wrd") == "hi\nhello hi\n"
    assert len(read(tmp / "out" / "train.tsv").splitlines()) == 3
    assert read(tmp / "out" / "train.phn") == "h aɪ\nh ə l oʊ h aɪ\n"


def test_phone_missing_from_table_is_an_error(corpus):
    tmp, manifest = corpus
    _write(tmp / "phones.txt", "<eps> 0\nh 1\naɪ 2\n")
    with pytest.raises(DataError, match=r"cut utt1: phones \[.*'oʊ'.*\] .* not in the phone table"):
        export_fairseq.main(
            ["--cuts", str(manifest), "--split", "train", "--language", "en",
             "--lexicon", str(tmp / "lexicon.txt"), "--out-dir", str(tmp / "out")]
        )  # fmt: skip


def test_unlabelled_union_export(corpus, tmp_path):
    tmp, manifest = corpus
    extra = write_wav(tmp / "corpus" / "wav" / "pool" / "p0.wav", 2400)
    other = tmp / "other.jsonl.gz"
    CutSet.from_cuts([make_cut("p0", extra, None)]).to_file(other)
    out = tmp / "pool"
    export_fairseq.main(
        ["--no-labels", "--cuts", str(manifest), str(other), "--split", "train",
         "--out-dir", str(out)]
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["audio", "train.tsv"]
    lines = read(out / "train.tsv").splitlines()
    names = [Path(line.split("\t")[0]).name for line in lines[1:]]
    assert names == ["de1.wav", "p0.wav", "utt1.wav", "utt2.wav", "utt3.wav", "utt4.wav"]
    with pytest.raises(DataError, match="already read"):
        export_fairseq.main(
            ["--no-labels", "--cuts", str(manifest), str(manifest), "--split", "x",
             "--out-dir", str(out)]
        )  # fmt: skip
    with pytest.raises(ConfigError, match="--no-labels"):
        export_fairseq.main(
            ["--no-labels", "--cuts", str(manifest), "--split", "x", "--out-dir", str(out),
             "--lexicon", str(tmp / "lexicon.txt")]
        )  # fmt: skip


def test_helpers():
    assert letters_line(["ab", "c"]) == "a b | c |"
    assert dictionary_text({"b": 2, "a": 2, "c": 5}) == "c 5\na 2\nb 2\n"
    assert dictionary_text({"b": 2, "a": 2}, ["z", "b", "a"]) == "z 0\nb 2\na 2\n"
    with pytest.raises(DataError, match="not in the phone table"):
        dictionary_text({"b": 2, "q": 1}, ["b"])
    assert select_cuts([], "en") == []


def test_empty_transcript_is_an_error(tmp_path):
    cut = make_cut("e1", write_wav(tmp_path / "e1.wav", 1600), "... !")
    with pytest.raises(DataError, match="cut e1: empty transcript"):
        export([cut], tmp_path / "out", "train")
