"""Our own corpus preparers (MuST-C, CoVoST 2, Europarl-ST, CSRC, ClovaCall) on miniature corpora
laid out like the real releases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_corpora import clovacall as fake_clova
from fake_corpora import covost2 as fake_covost
from fake_corpora import csrc as fake_csrc
from fake_corpora import europarl_st as fake_ep
from fake_corpora import mustc as fake_mustc
from fake_corpora.tone import write_tone
from lhotse import load_manifest

from speechkd.bin import prepare_corpus
from speechkd.data.prepare import available, clovacall, covost2, csrc, europarl_st, mustc
from speechkd.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def load(paths: dict[str, Path]):
    """(recordings, supervisions, cuts) of one written split."""
    return tuple(load_manifest(paths[k]) for k in ("recordings", "supervisions", "cuts"))


def test_registry_finds_own_preparers():
    assert {"mustc", "covost2", "europarl_st", "csrc", "clovacall"} <= set(available())


# ---------------------------------------------------------------- MuST-C


@pytest.fixture
def mustc_root(tmp_path: Path) -> Path:
    return fake_mustc.build_mustc(tmp_path / "MUSTC_v2.0")


def test_mustc_keeps_transcript_and_translation(mustc_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    written = mustc.prepare(mustc_root, out, tgt_lang="de")
    assert set(written) == {"en-de_train", "en-de_dev", "en-de_tst-COMMON"}
    assert written["en-de_train"]["cuts"] == out / "mustc_cuts_en-de_train.jsonl.gz"
    for split, talks in fake_mustc.SEGMENTS.items():
        recs, sups, cuts = load(written[f"en-de_{split}"])
        assert sorted(recs.ids) == sorted(talks)
        expected = {
            f"{talk}_{i}": seg for talk, segs in talks.items() for i, seg in enumerate(segs)
        }
        assert sorted(sups.ids) == sorted(expected)
        for sup in sups:
            offset, duration, speaker, en, de = expected[sup.id]
            assert (sup.start, sup.duration) == pytest.approx((offset, duration))
            assert (sup.text, sup.language, sup.speaker) == (en, "en", speaker)
            assert sup.custom == {"translation": de, "tgt_lang": "de"}
        assert sorted(c.id for c in cuts) == sorted(expected)
        cut = cuts[sorted(expected)[0]]
        assert cut.duration == pytest.approx(expected[cut.id][1])
        assert cut.load_audio().shape[1] == round(expected[cut.id][1] * 16000)


def test_mustc_line_count_mismatch_names_files(mustc_root: Path, tmp_path: Path):
    de = mustc_root / "en-de" / "data" / "train" / "txt" / "train.de"
    de.write_text("\n".join(de.read_text(encoding="utf-8").splitlines()[:-1]) + "\n")
    with pytest.raises(DataError) as err:
        mustc.prepare(mustc_root, tmp_path / "out", splits="train")
    message = str(err.value)
    assert "train.yaml has 3" in message and "train.en has 3" in message
    assert "train.de has 2" in message


def test_mustc_bad_inputs(mustc_root: Path, tmp_path: Path):
    txt = mustc_root / "en-de" / "data" / "train" / "txt"
    en = txt / "train.en"
    good = en.read_bytes()
    en.write_bytes(good.replace(b"Thank you.", b""))
    with pytest.raises(DataError, match=r"train\.en:2: empty transcript"):
        mustc.prepare(mustc_root, tmp_path / "out", splits="train")
    # Opt-in skipping keeps the other segments and their ids.
    written = mustc.prepare(mustc_root, tmp_path / "out", splits="train", skip_empty=True)
    assert sorted(load(written["en-de_train"])[1].ids) == ["ted_1_0", "ted_2_0"]

    en.write_bytes(good.replace(b"Thank", b"Th\xffnk"))
    with pytest.raises(DataError, match=r"train\.en:2: not valid UTF-8"):
        mustc.prepare(mustc_root, tmp_path / "out", splits="train")
    en.write_bytes(good)

    (mustc_root / "en-de" / "data" / "train" / "wav" / "ted_2.wav").unlink()
    with pytest.raises(DataError, match=r"ted_2\.wav: audio file not found"):
        mustc.prepare(mustc_root, tmp_path / "out", splits="train")


def test_mustc_segment_past_audio_end(mustc_root: Path, tmp_path: Path):
    yaml_path = mustc_root / "en-de" / "data" / "dev" / "txt" / "dev.yaml"
    text = yaml_path.read_text()
    # 0.1 + 2.3 = 2.4 s: 0.2 s past the 2.2 s talk -> clipped to the audio.
    yaml_path.write_text(text.replace("duration: 1.500000", "duration: 2.300000"))
    # corpus_dir may also be the en-de directory itself.
    written = mustc.prepare(mustc_root / "en-de", tmp_path / "out", splits="dev")
    sup = next(iter(load(written["en-de_dev"])[1]))
    assert sup.end == pytest.approx(fake_mustc.TALK_SECONDS)
    yaml_path.write_text(text.replace("duration: 1.500000", "duration: 4.000000"))
    with pytest.raises(DataError, match=r"ted_3_0.*after the end of .*ted_3\.wav"):
        mustc.prepare(mustc_root, tmp_path / "out", splits="dev")


# ---------------------------------------------------------------- CoVoST 2


@pytest.fixture
def covost_root(tmp_path: Path) -> Path:
    return fake_covost.build_covost2(tmp_path / "cv-corpus-4" / "fr")


def test_covost2_splits_texts_and_translations(covost_root: Path, tmp_path: Path):
    written = covost2.prepare(covost_root, tmp_path / "out", src_lang="fr", tgt_lang="en")
    assert set(written) == {"fr-en_train", "fr-en_dev", "fr-en_test"}
    split_of = {"train": "train", "train_covost": "train", "dev": "dev", "test": "test"}
    for split in ("train", "dev", "test"):
        recs, sups, cuts = load(written[f"fr-en_{split}"])
        expected = {
            fake_covost.clip_name(n)[:-4]: row
            for n, row in fake_covost.CLIPS.items()
            if split_of[row[3]] == split
        }
        assert sorted(sups.ids) == sorted(expected) == sorted(recs.ids) == sorted(cuts.ids)
        for sup in sups:
            client, sentence, translation, covost_split = expected[sup.id]
            assert (sup.text, sup.speaker, sup.language) == (sentence, client, "fr")
            assert sup.custom == {
                "translation": translation,
                "tgt_lang": "en",
                "covost_split": covost_split,
            }
            assert sup.duration == pytest.approx(recs[sup.id].duration)
        assert {r.sampling_rate for r in recs} == {48000}
    # Quotes are data, not CSV quoting.
    test_sup = next(iter(load(written["fr-en_test"])[1]))
    assert test_sup.text == "C'est « vrai »." and test_sup.custom["translation"] == 'It is "true".'

    no_extra = covost2.prepare(
        covost_root, tmp_path / "out2", splits="train", include_train_covost=False
    )
    assert len(load(no_extra["fr-en_train"])[1]) == 2


def test_covost2_en_to_x_language_codes(tmp_path: Path):
    root = fake_covost.build_covost2(tmp_path / "en", src="en", tgt="zh-CN")
    written = covost2.prepare(root, tmp_path / "out", src_lang="en", tgt_lang="zh-CN", splits="dev")
    assert written["en-zh-CN_dev"]["cuts"].name == "covost2_cuts_en-zh-CN_dev.jsonl.gz"
    sup = next(iter(load(written["en-zh-CN_dev"])[1]))
    assert (sup.language, sup.custom["tgt_lang"]) == ("en", "zh")


def test_covost2_bad_inputs(covost_root: Path, tmp_path: Path):
    clip = covost_root / "clips" / fake_covost.clip_name(3)
    clip.unlink()
    with pytest.raises(DataError, match=r"common_voice_fr_1003\.mp3: audio file not found"):
        covost2.prepare(covost_root, tmp_path / "out", splits="train")
    written = covost2.prepare(covost_root, tmp_path / "out", splits="train", skip_missing=True)
    assert len(load(written["fr-en_train"])[1]) == 2
    write_tone(clip, 0.5, 48000, fmt="MP3")

    tsv = covost_root / "covost_v2.fr_en.tsv"
    good = tsv.read_bytes()
    tsv.write_bytes(good.replace(b"See you tomorrow!", b""))
    with pytest.raises(DataError, match=r"covost_v2\.fr_en\.tsv:5: empty translation"):
        covost2.prepare(covost_root, tmp_path / "out", splits="dev")
    tsv.write_bytes(good.replace(b"Merci", b"Merc\xe9"))
    with pytest.raises(DataError, match=r"covost_v2\.fr_en\.tsv:3: not valid UTF-8"):
        covost2.prepare(covost_root, tmp_path / "out")
    tsv.write_bytes(good)

    validated = covost_root / "validated.tsv"
    validated.write_bytes(validated.read_bytes().replace(b"Il fait beau.", b""))
    with pytest.raises(DataError, match=r"validated\.tsv:4: empty transcript"):
        covost2.prepare(covost_root, tmp_path / "out", splits="train")
    with pytest.raises(ConfigError, match="X-en or en-X"):
        covost2.prepare(covost_root, tmp_path / "out", src_lang="fr", tgt_lang="de")


# ---------------------------------------------------------------- Europarl-ST


@pytest.fixture
def europarl_root(tmp_path: Path) -> Path:
    return fake_ep.build_europarl_st(tmp_path / "europarl")


def test_europarl_st_segments(europarl_root: Path, tmp_path: Path):
    written = europarl_st.prepare(europarl_root.parent, tmp_path / "out", audio_ext="wav")
    assert set(written) == {"en-de_train", "en-de_dev", "en-de_test"}
    recs, sups, cuts = load(written["en-de_train"])
    assert sorted(recs.ids) == sorted(fake_ep.SPEECH_SECONDS)
    first = sups["en.20080924.23.3-130_0000025_0000150"]
    assert (first.start, first.duration) == pytest.approx((0.25, 1.25))
    assert (first.text, first.language) == ("Madam President, thank you.", "en")
    assert first.custom == {"translation": "Frau Präsidentin, danke.", "tgt_lang": "de"}
    assert sorted(cuts.ids) == sorted(sups.ids) and len(sups) == 3
    assert [s.text for s in load(written["en-de_test"])[1]] == ["Yes."]


def test_europarl_st_audio_dir_and_ffmpeg(europarl_root: Path, tmp_path: Path, monkeypatch):
    converted = tmp_path / "flac"
    for speech, seconds in fake_ep.SPEECH_SECONDS.items():
        write_tone(converted / f"{speech}.flac", seconds, 16000)
    written = europarl_st.prepare(
        europarl_root, tmp_path / "out", splits="dev", audio_ext="flac", audio_dir=converted
    )
    rec = next(iter(load(written["en-de_dev"])[0]))
    assert rec.sources[0].source.endswith(".flac")
    # The released m4a needs the ffmpeg program; without it the error says so.
    monkeypatch.setattr(europarl_st.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"\.m4a.*ffmpeg"):
        europarl_st.prepare(europarl_root, tmp_path / "out", splits="dev")


def test_europarl_st_bad_inputs(europarl_root: Path, tmp_path: Path):
    split_dir = europarl_root / "en" / "de" / "train"
    lst = split_dir / "segments.lst"
    good = lst.read_text()
    lst.write_text(good + "en.20090115.6.3-077 2.10 2.40\n")
    with pytest.raises(DataError, match=r"segments\.lst has 4.*segments\.en has 3"):
        europarl_st.prepare(europarl_root, tmp_path / "out", audio_ext="wav", splits="train")
    lst.write_text(good.replace("0.00 2.00", "0.00 abc"))
    with pytest.raises(DataError, match=r"segments\.lst:3: start/end are not numbers"):
        europarl_st.prepare(europarl_root, tmp_path / "out", audio_ext="wav", splits="train")
    lst.write_text(good)
    (split_dir / "segments.de").write_bytes(b"a\n\xc3\n c\n")
    with pytest.raises(DataError, match=r"segments\.de:2: not valid UTF-8"):
        europarl_st.prepare(europarl_root, tmp_path / "out", audio_ext="wav", splits="train")


# ---------------------------------------------------------------- CSRC-2021


@pytest.fixture
def csrc_root(tmp_path: Path) -> Path:
    return fake_csrc.build_csrc(tmp_path / "CSRC")


def test_csrc_sets_styles_and_age_groups(csrc_root: Path, tmp_path: Path):
    written = csrc.prepare(csrc_root, tmp_path / "out")
    assert set(written) == {"a1", "c1", "c2"}
    expected_meta = {
        "A1": ("read", "adult"),
        "C1": ("read", "child"),
        "C2": ("conversational", "child"),
    }
    for set_name, speakers in fake_csrc.UTTERANCES.items():
        recs, sups, cuts = load(written[set_name.lower()])
        expected = {
            f"{set_name.lower()}_{utt}": (speaker, text)
            for speaker, utts in speakers.items()
            for utt, text in utts
        }
        assert sorted(sups.ids) == sorted(expected) == sorted(cuts.ids) == sorted(recs.ids)
        style, age = expected_meta[set_name]
        for sup in sups:
            assert (sup.speaker, sup.text) == expected[sup.id]
            assert sup.language == "zh"
            assert sup.custom == {"style": style, "age_group": age, "subset": set_name}


def test_csrc_other_sets_need_set_info(csrc_root: Path, tmp_path: Path):
    shutil.copytree(csrc_root / "C1", csrc_root / "dev")
    with pytest.raises(ConfigError, match="dev:style:age_group"):
        csrc.prepare(csrc_root, tmp_path / "out", sets="dev")
    written = csrc.prepare(csrc_root, tmp_path / "out", set_info="dev:read:child")
    assert set(written) == {"a1", "c1", "c2", "dev"}
    sups = load(written["dev"])[1]
    assert len(sups) == 3 and all(s.id.startswith("dev_") for s in sups)


def test_csrc_bad_inputs(csrc_root: Path, tmp_path: Path):
    txt = csrc_root / "C1" / "WAV" / "G0102" / "C1_0102_002.txt"
    txt.write_bytes("春天来了".encode("gbk"))
    with pytest.raises(DataError, match=r"C1_0102_002\.txt:1: not valid UTF-8"):
        csrc.prepare(csrc_root, tmp_path / "out", sets="C1")
    txt.write_text("\n")
    with pytest.raises(DataError, match=r"C1_0102_002\.txt: empty transcript"):
        csrc.prepare(csrc_root, tmp_path / "out", sets="C1")
    txt.unlink()
    with pytest.raises(DataError, match=r"C1_0102_002\.txt: transcript file not found"):
        csrc.prepare(csrc_root, tmp_path / "out", sets="C1")

    listing = csrc_root / "A1" / "content.txt"
    listing.write_text(listing.read_text() + "A0001_003\t多出来的\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"content\.txt:3: no audio file A0001_003\.wav"):
        csrc.prepare(csrc_root, tmp_path / "out", sets="A1")
    listing.write_text("A0001_001\t今天天气很好\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"A0001_002\.wav: no transcript in .*content\.txt"):
        csrc.prepare(csrc_root, tmp_path / "out", sets="A1")


# ---------------------------------------------------------------- ClovaCall


def test_clovacall_records_real_sampling_rate(tmp_path: Path):
    root = fake_clova.build_clovacall(tmp_path / "ClovaCall")
    written = clovacall.prepare(root, tmp_path / "out")
    assert set(written) == {"train", "test"}
    for split, entries in fake_clova.ENTRIES.items():
        recs, sups, cuts = load(written[split])
        expected = {e["wav"][:-4]: e for e in entries}
        assert sorted(sups.ids) == sorted(expected) == sorted(cuts.ids)
        assert {r.sampling_rate for r in recs} == {fake_clova.SAMPLING_RATE}
        for sup in sups:
            assert (sup.text, sup.speaker, sup.language) == (
                expected[sup.id]["text"],
                expected[sup.id]["speaker_id"],
                "ko",
            )


def test_clovacall_layouts(tmp_path: Path):
    root = fake_clova.build_clovacall(tmp_path / "cc", audio_dir="raw")
    written = clovacall.prepare(root, tmp_path / "out", variant="raw", splits="test")
    assert written["test_raw"]["cuts"].name == "clovacall_cuts_test_raw.jsonl.gz"
    # Copies with wavs_train/ and wavs_test/ beside the json files.
    root2 = tmp_path / "cc2"
    fake_clova.build_clovacall(root2, audio_dir="wavs_train")
    (root2 / "wavs_test").mkdir()
    for entry in fake_clova.ENTRIES["test"]:
        shutil.move(root2 / "wavs_train" / entry["wav"], root2 / "wavs_test" / entry["wav"])
    written = clovacall.prepare(root2, tmp_path / "out2")
    rec = next(iter(load(written["test"])[0]))
    assert "wavs_test" in rec.sources[0].source


def test_clovacall_bad_inputs(tmp_path: Path):
    root = fake_clova.build_clovacall(tmp_path / "ClovaCall")
    json_path = root / "test_ClovaCall.json"
    entries = json.loads(json_path.read_text(encoding="utf-8"))
    json_path.write_text(json.dumps([{**entries[0], "text": " "}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"test_ClovaCall\.json: entry 0 .*empty transcript"):
        clovacall.prepare(root, tmp_path / "out", splits="test")
    json_path.write_bytes(json.dumps(entries, ensure_ascii=False).encode("euc-kr"))
    with pytest.raises(DataError, match=r"test_ClovaCall\.json: not valid UTF-8"):
        clovacall.prepare(root, tmp_path / "out", splits="test")
    json_path.write_text(json.dumps(entries), encoding="utf-8")
    (root / "clean" / entries[0]["wav"]).unlink()
    with pytest.raises(DataError, match=r"41_0514_301_0_07111_09\.wav: audio file not found"):
        clovacall.prepare(root, tmp_path / "out", splits="test")


# ---------------------------------------------------------------- command line


def test_prepare_corpus_cli_options(mustc_root: Path, covost_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    prepare_corpus.main(
        ["mustc", "--corpus-dir", str(mustc_root), "--output-dir", str(out), "--splits", "dev"]
    )
    assert (out / "mustc_cuts_en-de_dev.jsonl.gz").is_file()
    assert not (out / "mustc_cuts_en-de_train.jsonl.gz").exists()
    prepare_corpus.main(
        [
            "covost2",
            "--corpus-dir",
            str(covost_root),
            "--output-dir",
            str(out),
            "--no-train-covost",
            "--splits",
            "train",
        ]  # fmt: skip
    )
    assert len(load_manifest(out / "covost2_supervisions_fr-en_train.jsonl.gz")) == 2


def test_shell_wrapper(tmp_path: Path):
    root = fake_csrc.build_csrc(tmp_path / "CSRC")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "SPEECHKD_ROOT"}
    result = subprocess.run(
        [
            "bash",
            str(REPO / "local" / "prepare_csrc.sh"),
            "--corpus-dir",
            str(root),
            "--output-dir",
            str(out),
            "--sets",
            "C1,C2",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("csrc_cuts_*")) == [
        "csrc_cuts_c1.jsonl.gz",
        "csrc_cuts_c2.jsonl.gz",
    ]
