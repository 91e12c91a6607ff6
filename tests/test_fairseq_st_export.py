"""Export of ST cuts to fairseq's raw-audio speech_to_text / speech_text_joint format."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

from speechkd.bin.export_fairseq_st import main as cli_main
from speechkd.data.fairseq_st_export import (
    TSV_COLUMNS,
    ExportOptions,
    export_fairseq_st,
    hash_fraction,
    heldout_keys,
    mbart_code,
    read_st_tsv,
)
from speechkd.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SR = 16000
EN = [
    "the cat sees the dog",
    "a dog walks in the park",
    "my friend reads a book",
    "the teacher opens the window",
    "we eat bread in the morning",
    "the children play in the garden",
    "you buy a red car",
    "she writes a long letter",
]
DE = [
    "die katze sieht den hund",
    "ein hund geht im park",
    "mein freund liest ein buch",
    "der lehrer öffnet das fenster",
    "wir essen morgens brot",
    "die kinder spielen im garten",
    "du kaufst ein rotes auto",
    "sie schreibt einen langen brief",
]


def _wav(path: Path, seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(round(seconds * sr))) * 3000).astype(np.int16)
    sf.write(path, samples, sr, subtype="PCM_16")
    return samples


def _cut(path: Path, i: int, translation: bool = True, speaker: str = "spk1"):
    rec = Recording.from_file(path, recording_id=path.stem)
    custom = {"translation": DE[i % len(DE)], "tgt_lang": "de"} if translation else {}
    sup = SupervisionSegment(
        id=path.stem, recording_id=rec.id, start=0.0, duration=rec.duration,
        text=EN[i % len(EN)], language="en", speaker=speaker, custom=custom,
    )  # fmt: skip
    return MonoCut(path.stem, 0.0, rec.duration, 0, recording=rec, supervisions=[sup])


@pytest.fixture
def corpus(tmp_path: Path) -> dict:
    """8 normal clips, one 30 ms clip, one 1.3 s clip (long for max_duration=1.0), and a
    two-segment recording whose segments must go into a zip."""
    wav = tmp_path / "wav"
    wav.mkdir()
    train, samples = [], {}
    for i in range(8):
        path = wav / f"utt{i:02d}.wav"
        samples[path.stem] = _wav(path, 0.3 + 0.05 * i, seed=i)
        train.append(_cut(path, i, speaker=f"spk{i % 2}"))
    _wav(wav / "short.wav", 0.03, seed=20)
    _wav(wav / "long.wav", 1.3, seed=21)
    train += [_cut(wav / "short.wav", 0), _cut(wav / "long.wav", 1)]
    talk = wav / "talk.wav"
    talk_samples = _wav(talk, 1.0, seed=30)
    rec = Recording.from_file(talk, recording_id="talk")
    test = CutSet.from_cuts(
        MonoCut(
            f"talk_{k}",
            0.1 + 0.4 * k,
            0.3,
            0,
            recording=rec,
            supervisions=[
                SupervisionSegment(
                    id=f"talk_{k}",
                    recording_id="talk",
                    start=0.0,
                    duration=0.3,
                    text=EN[k],
                    language="en",
                    speaker="spk9",
                    custom={"translation": DE[k], "tgt_lang": "de"},
                )
            ],
        )  # fmt: skip
        for k in range(2)
    )
    return {
        "train": CutSet.from_cuts(train),
        "test": test,
        "samples": samples,
        "talk": talk_samples,
        "tmp": tmp_path,
    }


OPTIONS = ExportOptions(spm_vocab_size=60, max_duration=1.0)


def test_tsv_columns_content_and_filter_counts(corpus: dict) -> None:
    out = corpus["tmp"] / "st"
    res = export_fairseq_st(
        {"train": [corpus["train"]], "dev": [corpus["train"].subset(cut_ids=["long", "utt00"])],
         "test": [corpus["test"]]},
        out, OPTIONS,
    )  # fmt: skip
    rows = read_st_tsv(out / "train.tsv")
    assert (out / "train.tsv").read_text().splitlines()[0].split("\t") == list(TSV_COLUMNS)
    ids = [r["id"] for r in rows]
    assert ids == [f"utt{i:02d}" for i in range(8)]  # short + long dropped, sorted by id
    first = rows[0]
    assert first == {
        "id": "utt00",
        "audio": str((corpus["tmp"] / "wav" / "utt00.wav").resolve()),
        "n_frames": str(len(corpus["samples"]["utt00"])),
        "tgt_text": DE[0],
        "src_text": EN[0],
        "speaker": "spk0",
        "src_lang": "en",
        "tgt_lang": "de",
    }
    assert res.stats["train"].dropped_short == 1 and res.stats["train"].dropped_long == 1
    assert res.stats["train"].written == 8 and res.stats["train"].heldout == 0  # dev given
    summary = json.loads((out / "export.json").read_text())
    assert summary["splits"]["train"]["dropped_short"] == 1
    assert summary["splits"]["train"]["dropped_long"] == 1
    # an evaluation split is not filtered by default, only counted
    assert res.stats["dev"].kept_out_of_range == 1 and res.stats["dev"].written == 2
    assert [r["id"] for r in read_st_tsv(out / "dev.tsv")] == ["long", "utt00"]
    assert res.langs == ["de", "en"] and res.mbart_langs == ["de_DE", "en_XX"]


def test_segments_are_zipped_where_fairseq_reads_them(corpus: dict) -> None:
    from fairseq.data.audio.audio_utils import is_sf_audio_data, parse_path, read_from_stored_zip

    out = corpus["tmp"] / "st"
    export_fairseq_st({"train": [corpus["train"]], "test": [corpus["test"]]}, out, OPTIONS)
    rows = read_st_tsv(out / "test.tsv")
    assert [r["id"] for r in rows] == ["talk_0", "talk_1"]
    for k, row in enumerate(rows):
        zip_path, (offset, length) = parse_path(row["audio"])
        assert zip_path == str(out / "audio" / "test.zip")
        data = read_from_stored_zip(zip_path, offset, length)
        assert is_sf_audio_data(data)
        import io

        audio, sr = sf.read(io.BytesIO(data), dtype="int16")
        start = int(round((0.1 + 0.4 * k) * SR))
        assert sr == SR and int(row["n_frames"]) == len(audio) == int(0.3 * SR)
        np.testing.assert_array_equal(audio, corpus["talk"][start : start + len(audio)])


def test_heldout_is_deterministic_by_id_hash(corpus: dict) -> None:
    keys = [f"ted_{i}_{j}" for i in range(50) for j in range(40)]
    held = heldout_keys(keys, 0.01)
    assert held == heldout_keys(reversed(keys), 0.01)
    assert held == {k for k in keys if hash_fraction(k) < 0.01}
    assert 5 <= len(held) <= 40  # ~1% of 2000
    assert heldout_keys(keys[:1000], 0.01) == held & set(keys[:1000])  # no dependence on others
    assert len(heldout_keys(["a", "b", "c"], 0.01)) == 1  # a tiny set still gets a dev cut

    out1, out2 = corpus["tmp"] / "st1", corpus["tmp"] / "st2"
    opts = ExportOptions(spm_vocab_size=40, max_duration=1.0, heldout_fraction=0.2)
    res = export_fairseq_st({"train": [corpus["train"]], "test": [corpus["test"]]}, out1, opts)
    export_fairseq_st({"train": [corpus["train"]], "test": [corpus["test"]]}, out2, opts)
    dev = [r["id"] for r in read_st_tsv(out1 / "dev.tsv")]
    train = [r["id"] for r in read_st_tsv(out1 / "train.tsv")]
    expected = sorted(heldout_keys([f"utt{i:02d}" for i in range(8)], 0.2))
    assert dev == expected and not set(dev) & set(train) and len(dev) + len(train) == 8
    assert res.stats["train"].heldout == len(dev) == res.stats["dev"].written
    for name in ("train.tsv", "dev.tsv", "spm.model", "dict.txt", "audio/test.zip"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name


def test_missing_translation_names_the_cut(corpus: dict) -> None:
    bad = _cut(corpus["tmp"] / "wav" / "utt03.wav", 3, translation=False)
    cuts = CutSet.from_cuts([c for c in corpus["train"] if c.id != "utt03"] + [bad])
    out = corpus["tmp"] / "st"
    with pytest.raises(DataError, match=r"cut 'utt03'.*translation"):
        export_fairseq_st({"train": [cuts]}, out, OPTIONS)
    assert not out.exists()  # nothing half-written
    (out / "keep").mkdir(parents=True)  # a directory that is not an export is never replaced
    with pytest.raises(ConfigError, match="not an earlier export"):
        export_fairseq_st({"train": [corpus["train"]]}, out, OPTIONS)
    assert (out / "keep").is_dir()
    with pytest.raises(ConfigError, match="--split"):
        cli_main(["--cuts", "a.jsonl.gz", "b.jsonl.gz", "--split", "train", "--out-dir", "x"])


def test_spm_dict_and_config_load_in_fairseq(corpus: dict, tmp_path: Path) -> None:
    from argparse import Namespace

    from fairseq.data import Dictionary, encoders
    from fairseq.data.audio.speech_to_text_joint_dataset import (
        S2TJointDataConfig,
        SpeechToTextJointDatasetCreator,
    )
    from fairseq.tasks.multilingual_denoising import (
        MultilingualDenoisingConfig,
        MultilingualDenoisingTask,
    )

    manifest = tmp_path / "train_cuts.jsonl.gz"
    corpus["train"].to_file(manifest)
    extra = tmp_path / "raw_de.txt"
    extra.write_text("\n".join(reversed(DE)) + "\n", encoding="utf-8")
    out = tmp_path / "st"
    cli_main([
        "--cuts", str(manifest), "--split", "train", "--out-dir", str(out),
        "--spm-vocab-size", "60", "--max-duration", "1.0", "--text", f"de={extra}",
        "--denoising-text",
    ])  # fmt: skip
    cfg = S2TJointDataConfig(out / "config_st.yaml")
    assert cfg.use_audio_input and cfg.prepend_tgt_lang_tag_no_change and cfg.standardize_audio()
    assert cfg.src_vocab_filename == cfg.vocab_filename == "dict.txt"
    tgt_dict = Dictionary.load(str(out / cfg.vocab_filename))
    bpe = encoders.build_bpe(Namespace(**cfg.bpe_tokenizer))
    src_bpe = encoders.build_bpe(Namespace(**cfg.src_bpe_tokenizer))
    ds = SpeechToTextJointDatasetCreator.from_tsv(
        str(out), cfg, "dev", tgt_dict, tgt_dict, None, bpe, None, src_bpe,
        is_train_split=False, epoch=1, seed=1,
    )  # fmt: skip
    dev = read_st_tsv(out / "dev.tsv")
    assert len(ds) == len(dev) >= 1 and ds.n_frames == [int(r["n_frames"]) for r in dev]
    unk = tgt_dict.unk()
    for i, row in enumerate(dev):
        target = tgt_dict.encode_line(ds.get_tokenized_tgt_text(i), add_if_not_exist=False)
        assert unk not in target.tolist()
        assert bpe.decode(tgt_dict.string(target)) == row["tgt_text"]
    assert ds.get_lang_tag_idx("de", tgt_dict) == tgt_dict.index("<lang:de>")

    # dict.txt rows == the multilingual_denoising task's dictionary on mbart_text/ (pieces,
    # [code] per --langs, <mask>): a pretrained tiny mBART's embeddings fit row for row
    langs = (out / "mbart_text" / "langs.txt").read_text().strip()
    assert langs == "de_DE,en_XX" and mbart_code("de") == "de_DE"
    mcfg = MultilingualDenoisingConfig(data=str(out / "mbart_text"), langs=langs,
                                       add_lang_token=True)  # fmt: skip
    mbart_dict = MultilingualDenoisingTask.setup_task(mcfg).dictionary
    assert len(mbart_dict) == len(tgt_dict)
    for code in langs.split(","):
        iso = code.split("_")[0]
        assert mbart_dict.index(f"[{code}]") == tgt_dict.index(f"<lang:{iso}>") != unk
    assert mbart_dict.index("<mask>") == tgt_dict.index("<mask>") == len(tgt_dict) - 1
    for code in langs.split(","):
        lines = (out / "mbart_text" / code / "train.spm").read_text().splitlines()
        assert lines and all(tgt_dict.index(p) != unk for line in lines for p in line.split())
    de_train = (out / "mbart_text" / "de_DE" / "train.spm").read_text()
    de_valid = (out / "mbart_text" / "de_DE" / "valid.spm").read_text()
    assert len((de_train + de_valid).splitlines()) == 8 + 8 - 1  # ST German + extra, 1 held


def _sourced_args(name: str) -> list[str]:
    script = f'. "{REPO}/conf/st_kd/mbart_pretrain_tiny.sh"; printf "%s\\n" "${{{name}[@]}}"'
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


def test_mbart_args_parse_and_match_the_tiny_teacher() -> None:
    from fairseq import options

    args = _sourced_args("mbart_train_args")
    parser = options.get_training_parser()
    ns = options.parse_args_and_arch(parser, ["data", *args, "--langs", "de_DE,en_XX"])
    assert ns.task == "multilingual_denoising" and ns.arch == "mbart_base" and ns.add_lang_token
    teacher = yaml.safe_load((REPO / "conf/st_kd/arch/tiny_teacher.yaml").read_text())["model"]
    for key in ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers",
                "encoder_attention_heads", "decoder_embed_dim", "decoder_ffn_embed_dim",
                "decoder_layers", "decoder_attention_heads", "activation_fn"):  # fmt: skip
        assert getattr(ns, key) == teacher[key], key
    assert ns.encoder_normalize_before and ns.decoder_normalize_before and ns.layernorm_embedding
    assert ns.max_source_positions == ns.max_target_positions == 1024  # the xm model's tables
    assert _sourced_args("mbart_preprocess_args")[0] == "--only-source"


def test_w2v2_config_matches_the_tiny_teacher_speech_encoder() -> None:
    cfg = yaml.safe_load((REPO / "conf/st_kd/w2v2_pretrain_tiny.yaml").read_text())
    teacher = yaml.safe_load((REPO / "conf/st_kd/arch/tiny_teacher.yaml").read_text())["model"]
    model = cfg["model"]
    assert cfg["task"]["_name"] == "audio_pretraining" and model["_name"] == "wav2vec2"
    assert model["encoder_layers"] == teacher["w2v_encoder_layers"]
    assert model["encoder_embed_dim"] == teacher["w2v_embed_dim"]
    assert model["encoder_ffn_embed_dim"] == teacher["w2v_ffn_embed_dim"]
    assert model["encoder_attention_heads"] == teacher["w2v_attention_heads"]
    assert model["conv_feature_layers"] == teacher["w2v_conv_feature_layers"]
    assert model["extractor_mode"] == teacher["w2v_extractor_mode"]
    assert model["layer_norm_first"] == teacher["w2v_layer_norm_first"]
    assert model["conv_bias"] == teacher["w2v_conv_bias"]
    assert model["conv_pos"] == teacher["w2v_conv_pos"]
    assert model["conv_pos_groups"] == teacher["w2v_conv_pos_groups"]
    # fairseq's Wav2VecEncoder asserts the fine-tuning normalize equals the pretraining one
    assert cfg["task"]["normalize"] == teacher["normalize"]


def test_prepared_mustc_and_covost_combine_into_one_train_split(tmp_path: Path) -> None:
    """Our MuST-C (segments of talks) and CoVoST 2 (48 kHz mp3 clips) manifests: one train
    split, every clip zipped at 16 kHz, one cut held out, fields from the preparers."""
    import io

    from fairseq.data.audio.audio_utils import parse_path, read_from_stored_zip
    from fake_corpora import covost2 as fake_covost
    from fake_corpora import mustc as fake_mustc

    from speechkd.data.prepare import covost2, mustc

    man = tmp_path / "manifests"
    ted = mustc.prepare(fake_mustc.build_mustc(tmp_path / "mustc"), man, tgt_lang="de")
    cv_root = fake_covost.build_covost2(tmp_path / "covost", src="en", tgt="de")
    cv = covost2.prepare(cv_root, man, src_lang="en", tgt_lang="de")
    inputs = [ted["en-de_train"]["cuts"], cv["en-de_train"]["cuts"]]
    want = sorted(c.id for p in inputs for c in CutSet.from_file(p))
    res = export_fairseq_st(
        {"train": inputs, "tst-COMMON": [ted["en-de_tst-COMMON"]["cuts"]]},
        tmp_path / "st",
        ExportOptions(spm_vocab_size=45),
    )
    rows = read_st_tsv(res.tsv["train"]) + read_st_tsv(res.tsv["dev"])
    assert sorted(r["id"] for r in rows) == want and res.stats["dev"].written == 1
    assert res.stats["train"].zipped == res.stats["train"].written == len(want) - 1
    by_id = {c.id: c for p in inputs for c in CutSet.from_file(p)}
    for row in rows:
        cut = by_id[row["id"]]
        sup = cut.supervisions[0]
        assert (row["src_text"], row["tgt_text"]) == (sup.text, sup.custom["translation"])
        assert (row["src_lang"], row["tgt_lang"]) == ("en", "de")
        path, (offset, length) = parse_path(row["audio"])
        audio, sr = sf.read(io.BytesIO(read_from_stored_zip(path, offset, length)))
        assert sr == SR and len(audio) == int(row["n_frames"]) == round(cut.duration * SR)
