"""Teacher top-k cache CLI: contents, shards and merge, skipping, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import MonoCut
from lhotse.utils import fastcopy

from speechkd.bin import cache_teacher
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import DataError
from speechkd.utils.atomic import save_manifest
from speechkd.whisper.data import (
    IGNORE_INDEX,
    WhisperAsrDataset,
    encoder_num_frames,
    target_sequence,
)
from speechkd.whisper.decode import configure_generation, configure_special_tokens
from speechkd.whisper.params import build_whisper, small_whisper_config
from speechkd.whisper.teacher_cache import TeacherCache
from speechkd.whisper.teacher_outputs import select_cache_shard

UTTERANCES = [
    ("en-0", "en", "the cat sat", 1.2),
    ("en-1", "en", "a dog runs home", 1.6),
    ("en-2", "en", "hello world", 0.9),
    ("ca-0", "ca", "bon dia", 1.0),
    ("ca-1", "ca", "el gat dorm", 1.4),
    ("ca-2", "ca", "la casa", 1.1),
]
TOP_K = 8


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tok")
    return load_whisper_tokenizer(
        "openai/whisper-small", cache_dir=root / "cache", hf_cache_dir=root / "hf"
    )


def make_cuts(root: Path, utterances=UTTERANCES) -> CutSet:
    """Cuts of synthetic tones (a different chord per utterance)."""
    rng = np.random.default_rng(0)
    out = []
    for index, (utt, lang, text, duration) in enumerate(utterances):
        t = np.arange(int(duration * 16000)) / 16000
        audio = sum(np.sin(2 * np.pi * (200 + 150 * index * k) * t) for k in (1, 2)) * 0.2
        audio = (audio + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        path = root / f"{utt}.wav"
        sf.write(path, audio, 16000)
        rec = Recording.from_file(path, recording_id=utt)
        sup = SupervisionSegment(utt, utt, 0.0, rec.duration, text=text, language=lang)
        out.append(MonoCut(utt, 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(out)


def tiny_teacher(vocab_size: int, seed: int = 0):
    config = small_whisper_config(
        d_model=64,
        layers=2,
        heads=4,
        ffn_dim=128,
        vocab_size=vocab_size,
        num_mel_bins=80,
        max_source_positions=150,
        max_target_positions=32,
    )
    torch.manual_seed(seed)
    return config, build_whisper(config, device="cpu")


@pytest.fixture(scope="module")
def setup(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A saved tiny teacher, the tokenizer directory and a cuts manifest."""
    root = tmp_path_factory.mktemp("setup")
    config, model = tiny_teacher(len(tokenizer))
    configure_special_tokens(config, tokenizer)
    configure_generation(model, tokenizer)
    model.save_pretrained(root / "teacher", safe_serialization=True)
    tokenizer.save_pretrained(root / "tok")
    (root / "audio").mkdir()
    cuts = make_cuts(root / "audio")
    save_manifest(cuts, root / "cuts.jsonl.gz")
    return {
        "teacher": root / "teacher",
        "tok": root / "tok",
        "cuts_path": root / "cuts.jsonl.gz",
        "cuts": cuts,
        "model": model.eval(),
    }


def cli_args(setup: dict, out_dir: Path, *extra: str) -> list[str]:
    return [
        "--model-dir",
        str(setup["teacher"]),
        "--tokenizer",
        str(setup["tok"]),
        "--cuts",
        str(setup["cuts_path"]),
        "--out-dir",
        str(out_dir),
        "--top-k",
        str(TOP_K),
        "--max-duration",
        "3",
        "--no-progress",
        *extra,
    ]


def test_cache_holds_top_k_of_the_teacher_logits(tokenizer, setup, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    assert cache_teacher.main(cli_args(setup, out)) == 0
    cache = TeacherCache(out)
    cuts = setup["cuts"]
    assert cache.k == TOP_K and cache.vocab_size == len(tokenizer)
    # deterministic order: by (duration, id)
    assert cache.keys() == [c.id for c in sorted(cuts, key=lambda c: (c.duration, c.id))]
    meta = cache.metadata
    assert meta["teacher"] == str(setup["teacher"])
    assert meta["tokenizer_vocab_size"] == len(tokenizer)
    assert meta["positions"] == "decoder_attention_mask"
    assert meta["wall_seconds"] > 0 and meta["num_shards"] == 1 and meta["num_cuts"] == 6
    assert abs(meta["audio_seconds"] - sum(c.duration for c in cuts)) < 1e-3
    assert (out / "log" / "cache_teacher.log").is_file()
    assert not list(out.rglob(".tmp-*"))

    model = setup["model"]
    dataset = WhisperAsrDataset(tokenizer, num_frames=encoder_num_frames(model.config))
    for cut in cuts:  # one utterance at a time: no padding at all
        batch = dataset[CutSet.from_cuts([cut])]
        with torch.no_grad():
            logits = model(
                input_features=batch["input_features"],
                decoder_input_ids=batch["decoder_input_ids"],
            ).logits[0]
        expected_values, expected_ids = torch.log_softmax(logits, dim=-1).topk(TOP_K, dim=-1)
        ids, values = cache.get(cut.id)
        text, lang = cut.supervisions[0].text, cut.supervisions[0].language
        assert ids.shape[0] == len(target_sequence(tokenizer, text, lang)) - 1
        assert torch.equal(ids, expected_ids), cut.id
        assert torch.allclose(values, expected_values, atol=1e-4), cut.id

    # a training batch: the cache is aligned with every decoder position, the KD positions
    # (labels != -100) included
    batch = dataset[cuts]
    targets = cache.batch(batch["cut_ids"], length=batch["decoder_input_ids"].shape[1])
    assert torch.equal(targets.mask, batch["decoder_attention_mask"].bool())
    assert bool(targets.mask[batch["labels"] != IGNORE_INDEX].all())


def read_all(directory: Path) -> tuple[list[str], dict]:
    cache = TeacherCache(directory)
    return cache.keys(), {key: cache.get(key) for key in cache.keys()}


def test_two_shards_merge_to_the_single_run(setup, tmp_path: Path) -> None:
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert cache_teacher.main(cli_args(setup, single, "--dtype", "float16")) == 0
    for job in (1, 2):
        args = cli_args(setup, sharded, "--dtype", "float16", "--shard", f"{job}/2")
        assert cache_teacher.main(args) == 0
    with pytest.raises(DataError, match="made as shard 1/2, not 1/3"):
        cache_teacher.main(["--out-dir", str(sharded), "--merge", "3"])
    assert cache_teacher.main(["--out-dir", str(sharded), "--merge", "2"]) == 0

    keys_1, data_1 = read_all(single)
    keys_2, data_2 = read_all(sharded)
    assert keys_1 == keys_2 and len(keys_1) == 6
    for key in keys_1:
        assert torch.equal(data_1[key][0], data_2[key][0]), key
        assert torch.allclose(data_1[key][1], data_2[key][1], atol=1e-3), key
    shard_keys = [TeacherCache(sharded / "shards" / str(j)).keys() for j in (1, 2)]
    assert [len(k) for k in shard_keys] == [3, 3] and shard_keys[0] + shard_keys[1] == keys_1
    index = json.loads((sharded / "index.json").read_text())
    assert index["metadata"]["num_shards"] == 2 and index["dtype"] == "float16"
    assert index["metadata"]["wall_seconds"] == pytest.approx(
        sum(index["metadata"]["shard_wall_seconds"]), abs=1e-3
    )
    assert all(s["file"].startswith("shards/") for s in index["shards"])

    # a finished shard is skipped; an incomplete one is recomputed (and the merge is undone)
    shard_index = sharded / "shards" / "1" / "index.json"
    before = shard_index.stat().st_mtime_ns
    assert cache_teacher.main(cli_args(setup, sharded, "--dtype", "float16", "--shard", "1/2")) == 0
    assert shard_index.stat().st_mtime_ns == before
    assert "skipping" in (sharded / "log" / "cache_teacher.1.log").read_text()
    next((sharded / "shards" / "2").glob("shard-*.safetensors")).unlink()
    assert cache_teacher.main(cli_args(setup, sharded, "--dtype", "float16", "--shard", "2/2")) == 0
    assert not (sharded / "index.json").exists()
    assert cache_teacher.main(["--out-dir", str(sharded), "--merge", "2"]) == 0
    assert read_all(sharded)[0] == keys_1
    # other options: the shard is not current any more
    args = cli_args(setup, sharded, "--dtype", "float16", "--shard", "1/2", "--top-k", "4")
    assert cache_teacher.main(args) == 0
    assert shard_index.stat().st_mtime_ns != before
    with pytest.raises(DataError, match="fingerprint differs"):
        cache_teacher.main(["--out-dir", str(sharded), "--merge", "2"])


def test_shards_are_contiguous_in_duration_order(setup) -> None:
    cuts = setup["cuts"]
    parts = [[c.id for c in select_cache_shard(cuts, j, 4)] for j in range(1, 5)]
    ordered = [c.id for c in sorted(cuts, key=lambda c: (c.duration, c.id))]
    assert sum(parts, []) == ordered and [len(p) for p in parts] == [1, 2, 1, 2]


def test_vocabulary_mismatch_and_missing_text_are_data_errors(
    tokenizer, setup, tmp_path: Path
) -> None:
    _, wrong = tiny_teacher(len(tokenizer) + 3)
    wrong.save_pretrained(tmp_path / "wrong", safe_serialization=True)
    args = cli_args(setup, tmp_path / "cache")
    args[1] = str(tmp_path / "wrong")
    with pytest.raises(DataError, match=f"{len(tokenizer) + 3} tokens but the tokenizer"):
        cache_teacher.main(args)

    cuts = list(setup["cuts"])
    bad = fastcopy(cuts[2], supervisions=[fastcopy(cuts[2].supervisions[0], text=None)])
    save_manifest(CutSet.from_cuts([*cuts[:2], bad]), tmp_path / "bad.jsonl.gz")
    args = cli_args(setup, tmp_path / "cache")
    args[5] = str(tmp_path / "bad.jsonl.gz")
    with pytest.raises(DataError, match=f"cut {bad.id}.*no 'text' field"):
        cache_teacher.main(args)
    assert not (tmp_path / "cache" / "index.json").exists()
