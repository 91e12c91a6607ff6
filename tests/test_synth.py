"""Tests of the synthetic mini corpus (espeak-ng + sox speech, lhotse manifests, raw text)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import load_manifest
from lhotse.qa import validate_recordings_and_supervisions

from speechkd.bin import make_mini_corpus
from speechkd.data.synth.generate import generate_mini_corpus
from speechkd.data.synth.languages import LANGUAGES
from speechkd.data.synth.manifests import manifest_path
from speechkd.data.synth.rawtext import raw_text_path
from speechkd.data.synth.scales import SCALES, get_scale
from speechkd.data.synth.sentences import (
    CHILD_CONVERSATIONAL_LENGTHS,
    IN_DOMAIN_LENGTHS,
    SentenceSampler,
)
from speechkd.data.synth.speakers import IN_DOMAIN, OOD
from speechkd.data.synth.vocabulary import load_vocabulary
from speechkd.errors import ConfigError, DataError

LANGS = ["en", "zh", "th"]
SPLITS = {
    "mini_asr": ["train", "dev", "test", "test_ood", "test_child"],
    "mini_child": ["train", "dev", "test"],
    "mini_st": ["train", "dev", "test"],
}


def _generate(out: Path, nj: int) -> dict:
    return generate_mini_corpus(out, scale="tiny", seed=3, nj=nj, languages=LANGS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_a")
    _generate(out, nj=2)
    return out


@pytest.fixture(scope="module")
def tiny_again(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_b")
    _generate(out, nj=1)
    return out


def _lines(path: Path, out: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.replace(str(out), "<OUT>") for line in f]


def _supervisions(out: Path, corpus: str, split: str):
    return load_manifest(manifest_path(out, corpus, "supervisions", split))


def test_manifests_and_audio_are_valid(tiny):
    for corpus, splits in SPLITS.items():
        for split in splits:
            recs = load_manifest(manifest_path(tiny, corpus, "recordings", split))
            sups = load_manifest(manifest_path(tiny, corpus, "supervisions", split))
            cuts = load_manifest(manifest_path(tiny, corpus, "cuts", split))
            validate_recordings_and_supervisions(recs, sups)
            assert len(recs) == len(sups) == len(cuts) > 0
            wav_dir = "mini_child/test" if split == "test_child" else f"{corpus}/{split}"
            for rec in recs:
                path = rec.sources[0].source
                assert path.startswith(f"{tiny}/mini/wav/{wav_dir}/")
                info = sf.info(path)
                assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
                assert info.frames == rec.num_samples and 0 < rec.duration < 30
                assert rec.id == Path(path).stem
            for cut in cuts:
                assert cut.id == cut.recording.id == cut.supervisions[0].id
                assert cut.supervisions[0].duration == cut.duration


def test_ids_languages_and_custom_fields(tiny):
    sups = _supervisions(tiny, "mini_asr", "train")
    assert {s.language for s in sups} == set(LANGS)
    assert all(s.custom["condition"] == "in_domain" for s in sups)
    first = sups[0]
    assert first.id.startswith("mini_asr-train-") and first.id[-6:].isdigit()
    zh = [s for s in sups if s.language == "zh"]
    assert all(LANGUAGES["zh"].is_word(s.text.rstrip("。")) for s in zh)
    assert all(s.custom["condition"] == "ood" for s in _supervisions(tiny, "mini_asr", "test_ood"))
    child = _supervisions(tiny, "mini_child", "train")
    assert all(s.custom["condition"] == "child" for s in child)
    assert all(s.custom["voice"]["pitch_shift_cents"] >= 300 for s in child)
    assert {s.custom["style"] for s in child} <= {"read", "conversational"}
    test_child = _supervisions(tiny, "mini_asr", "test_child")
    assert [s.id for s in test_child] == [s.id for s in _supervisions(tiny, "mini_child", "test")]
    for s in _supervisions(tiny, "mini_st", "train"):
        assert s.language == "en" and s.custom["tgt_lang"] == "de"
        assert s.custom["translation"] and s.custom["translation"] != s.text


def test_speakers_disjoint_and_ood_outside_training_ranges(tiny):
    for corpus in SPLITS:
        splits = [s for s in SPLITS[corpus] if s != "test_child"]
        speakers = {
            split: {s.speaker for s in _supervisions(tiny, corpus, split)} for split in splits
        }
        voices = {
            split: {
                json.dumps(s.custom["voice"], sort_keys=True)
                for s in _supervisions(tiny, corpus, split)
            }
            for split in splits
        }
        for a in splits:
            for b in splits:
                if a < b:
                    assert not speakers[a] & speakers[b], (corpus, a, b)
                    assert not voices[a] & voices[b], (corpus, a, b)
    train = [s.custom["voice"] for s in _supervisions(tiny, "mini_asr", "train")]
    ood = [s.custom["voice"] for s in _supervisions(tiny, "mini_asr", "test_ood")]
    (p_lo, p_hi), (r_lo, r_hi) = IN_DOMAIN.pitch[0], IN_DOMAIN.rate[0]
    assert all(p_lo <= v["pitch"] <= p_hi and r_lo <= v["rate"] <= r_hi for v in train)
    for v in ood:
        assert not p_lo <= v["pitch"] <= p_hi
        assert not r_lo <= v["rate"] <= r_hi
        assert not r_lo * 0.96 <= v["rate"] * v["tempo"] <= r_hi * 1.04
        assert v["variant"] in OOD.variants and v["variant"] not in IN_DOMAIN.variants


def test_no_heldout_sentence_in_training_or_raw_text(tiny):
    stats = json.loads((tiny / "mini" / "stats.json").read_text())
    for lang in LANGS:
        heldout = {
            s.text
            for corpus, splits in SPLITS.items()
            for split in splits
            if split != "train"
            for s in _supervisions(tiny, corpus, split)
            if s.language == lang
        }
        train = {
            s.text
            for corpus in SPLITS
            for s in _supervisions(tiny, corpus, "train")
            if s.language == lang
        }
        raw = raw_text_path(tiny, lang).read_text(encoding="utf-8").splitlines()
        assert heldout and not heldout & train
        assert not heldout & set(raw)
        entry = stats["raw_text"][lang]
        assert entry["lines"] == len(raw)
        assert entry["words"] >= 20 * entry["train_words"] > 0
    en_train_words = sum(
        len(s.text.split())
        for c in SPLITS
        for s in _supervisions(tiny, c, "train")
        if s.language == "en"
    )
    en_raw = raw_text_path(tiny, "en").read_text(encoding="utf-8").split()
    assert len(en_raw) >= 20 * en_train_words


def test_deterministic_regardless_of_nj(tiny, tiny_again):
    manifests = sorted(p.name for p in (tiny / "manifests").iterdir())
    assert manifests == sorted(p.name for p in (tiny_again / "manifests").iterdir())
    for name in manifests:
        assert _lines(tiny / "manifests" / name, tiny) == _lines(
            tiny_again / "manifests" / name, tiny_again
        ), name
    wavs = sorted(p.relative_to(tiny) for p in tiny.rglob("*.wav"))
    assert wavs == sorted(p.relative_to(tiny_again) for p in tiny_again.rglob("*.wav"))
    for rel in wavs:
        assert (tiny / rel).read_bytes() == (tiny_again / rel).read_bytes(), rel
    for lang in LANGS:
        assert (
            raw_text_path(tiny, lang).read_bytes() == raw_text_path(tiny_again, lang).read_bytes()
        )


def test_rerun_reuses_complete_wavs_and_redoes_missing(tmp_path):
    kwargs = dict(scale="tiny", seed=1, nj=1, corpora=["mini_asr"], languages=["en"])
    generate_mini_corpus(tmp_path, **kwargs)
    wav_dir = tmp_path / "mini" / "wav" / "mini_asr" / "train" / "en"
    wavs = sorted(wav_dir.glob("*.wav"))
    reference = {w.name: w.read_bytes() for w in wavs}
    wavs[0].unlink()  # as if killed before this file was written
    (wav_dir / ".tmp-123-abcd-x.wav").write_bytes(b"partial")
    mtime = wavs[1].stat().st_mtime_ns
    generate_mini_corpus(tmp_path, **kwargs)
    assert {w.name: w.read_bytes() for w in sorted(wav_dir.glob("*.wav"))} == reference
    assert wavs[1].stat().st_mtime_ns == mtime  # reused, not rewritten
    assert not list(wav_dir.glob(".tmp-*"))
    # Another seed changes the plan: old wavs are not reused.
    generate_mini_corpus(tmp_path, **{**kwargs, "seed": 2})
    assert {w.name: w.read_bytes() for w in sorted(wav_dir.glob("*.wav"))} != reference


def test_sampler_orthography_and_vocabulary():
    rng = np.random.default_rng(0)
    en = SentenceSampler("en")
    texts = [en.sample(rng, IN_DOMAIN_LENGTHS).text for _ in range(50)]
    assert all(t[0].isupper() and t.endswith(".") for t in texts)
    assert all(w.isalpha() for t in texts for w in t[:-1].split())
    th = SentenceSampler("th").sample(rng, IN_DOMAIN_LENGTHS)
    assert not th.text.endswith(".") and LANGUAGES["th"].is_word(th.text.replace(" ", ""))
    zh = SentenceSampler("zh").sample(rng, IN_DOMAIN_LENGTHS)
    assert zh.text.endswith("。") and " " not in zh.text and zh.spoken[-2].isdigit()
    conv = [en.sample_conversational(rng, CHILD_CONVERSATIONAL_LENGTHS).text for _ in range(20)]
    assert any(w in {"um", "uh", "oh", "well"} for t in conv for w in t.lower()[:-1].split())
    for lang in ("ja", "ml", "sw", "uk", "ko"):
        vocab = load_vocabulary(lang)
        assert len(vocab) >= 200 and all(LANGUAGES[lang].is_word(w) for w in vocab.written)
        assert abs(vocab.probabilities.sum() - 1) < 1e-9


def test_bad_config_and_environment(tmp_path):
    with pytest.raises(ConfigError, match="scale"):
        get_scale("huge")
    with pytest.raises(ConfigError, match="train.utterances"):
        SCALES["tiny"].with_train_sizes(asr=-1)
    with pytest.raises(ConfigError, match="nj"):
        generate_mini_corpus(tmp_path, scale="tiny", nj=0)
    with pytest.raises(ConfigError, match="xx"):
        generate_mini_corpus(tmp_path, scale="tiny", languages=["xx"])
    with pytest.raises(DataError, match="espeak-ng-missing"):
        generate_mini_corpus(tmp_path, scale="tiny", espeak="espeak-ng-missing")
    with pytest.raises(DataError, match="sox-missing"):
        generate_mini_corpus(tmp_path, scale="tiny", sox="sox-missing")
    with pytest.raises(SystemExit):
        make_mini_corpus.main(["--nj", "two"])
    with pytest.raises(ConfigError):
        make_mini_corpus.main(["--output-dir", str(tmp_path), "--scale", "nope"])
    assert not list(tmp_path.iterdir())


def test_missing_voice_is_named(tmp_path, monkeypatch):
    from speechkd.data.synth import espeak

    fake = tmp_path / "espeak-ng"
    fake.write_text("#!/bin/sh\necho 'Pty Language Age/Gender VoiceName File Other'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    espeak._installed_voices.cache_clear()
    with pytest.raises(DataError, match="cmn-latn-pinyin"):
        generate_mini_corpus(tmp_path / "out", scale="tiny", languages=["zh"], corpora=["mini_asr"])
    espeak._installed_voices.cache_clear()


def test_cli_writes_stats(tmp_path, capsys):
    argv = ["--output-dir", str(tmp_path), "--scale", "tiny", "--nj", "1"]
    argv += ["--corpora", "mini_asr", "--languages", "sw", "--asr-train-utts", "5"]
    assert make_mini_corpus.main(argv) == 0
    stats = json.loads((tmp_path / "mini" / "stats.json").read_text())
    assert stats["corpora"]["mini_asr"]["train"]["sw"]["utterances"] == 3  # min_train at tiny
    assert stats["corpora"]["mini_asr"]["test_ood"]["sw"]["hours"] > 0
    assert "mini_asr" in capsys.readouterr().out
