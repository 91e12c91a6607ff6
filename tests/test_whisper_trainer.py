"""Whisper engine: batches (prompt/labels layout), sampler, trainer (loss, resume), decoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import MonoCut

from speechkd.data.features import WhisperLogMel, compute_and_store
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import DataError
from speechkd.whisper.data import (
    IGNORE_INDEX,
    DurationBatchSampler,
    WhisperAsrDataset,
    encoder_num_frames,
    text_token_ids,
)
from speechkd.whisper.decode import (
    configure_generation,
    configure_special_tokens,
    decode_cuts,
    load_whisper_model,
    write_and_score,
)
from speechkd.whisper.params import build_whisper, small_whisper_config
from speechkd.whisper.trainer import (
    TrainerConfig,
    WhisperTrainer,
    checkpoint_dirs,
    export_model,
    move_batch,
)

UTTERANCES = [
    ("en-0", "en", "the cat sat", 1.2),
    ("en-1", "en", "a dog runs home", 1.6),
    ("en-2", "en", "hello world", 0.9),
    ("ca-0", "ca", "bon dia", 1.0),
    ("ca-1", "ca", "el gat dorm", 1.4),
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tok")
    return load_whisper_tokenizer(
        "openai/whisper-small", cache_dir=root / "cache", hf_cache_dir=root / "hf"
    )


@pytest.fixture(scope="module")
def cuts(tmp_path_factory: pytest.TempPathFactory) -> CutSet:
    """Five cuts of synthetic tones (a different chord per utterance), two languages."""
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    out = []
    for index, (utt, lang, text, duration) in enumerate(UTTERANCES):
        t = np.arange(int(duration * 16000)) / 16000
        audio = sum(np.sin(2 * np.pi * (200 + 150 * index * k) * t) for k in (1, 2)) * 0.2
        audio = (audio + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
        path = root / f"{utt}.wav"
        sf.write(path, audio, 16000)
        rec = Recording.from_file(path, recording_id=utt)
        sup = SupervisionSegment(utt, utt, 0.0, rec.duration, text=text, language=lang)
        out.append(MonoCut(utt, 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(out)


def tiny_model(tokenizer, seed: int = 0):
    config = small_whisper_config(
        d_model=64,
        layers=2,
        heads=4,
        ffn_dim=128,
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        max_source_positions=150,
        max_target_positions=32,
    )
    configure_special_tokens(config, tokenizer)
    torch.manual_seed(seed)
    model = build_whisper(config, device="cpu")
    configure_generation(model, tokenizer)
    return model


def dataset_for(model, tokenizer) -> WhisperAsrDataset:
    return WhisperAsrDataset(tokenizer, num_frames=encoder_num_frames(model.config))


def test_prompt_and_label_layout(tokenizer, cuts: CutSet) -> None:
    dataset = WhisperAsrDataset(tokenizer, num_frames=300)
    batch = dataset[cuts.subset(cut_ids=["en-1", "ca-0"])]
    ids = tokenizer.convert_tokens_to_ids
    sot, eot = ids("<|startoftranscript|>"), ids("<|endoftext|>")
    tail = [ids("<|transcribe|>"), ids("<|notimestamps|>")]
    assert batch["input_features"].shape == (2, 80, 300)
    assert batch["feature_lengths"].tolist() == [160, 100]
    assert batch["languages"] == ["en", "ca"] and batch["language"] is None
    for row, (lang, text) in enumerate([("en", "a dog runs home"), ("ca", "bon dia")]):
        text_ids = text_token_ids(tokenizer, text)
        n = 3 + len(text_ids) + 1  # decoder positions: prompt (4) + text, targets text + eot
        inputs = batch["decoder_input_ids"][row].tolist()
        labels = batch["labels"][row].tolist()
        assert inputs[:n] == [sot, ids(f"<|{lang}|>"), *tail, *text_ids]
        assert labels[:n] == [IGNORE_INDEX] * 3 + [*text_ids, eot]
        assert all(x == IGNORE_INDEX for x in labels[n:])
        assert all(x == eot for x in inputs[n:])
        assert batch["decoder_attention_mask"][row].tolist() == [1] * n + [0] * (len(inputs) - n)
        assert tokenizer.decode(text_ids).strip() == text


def test_stored_features_match_computed(tokenizer, cuts: CutSet, tmp_path: Path) -> None:
    stored, _ = compute_and_store(cuts.subset(first=2), WhisperLogMel(), tmp_path / "feats")
    computed = WhisperAsrDataset(tokenizer, num_frames=300, use_stored_features=False)
    from_store = WhisperAsrDataset(tokenizer, num_frames=300)
    a = computed[stored]["input_features"]
    b = from_store[stored]["input_features"]
    assert not torch.equal(a, b)  # the stored (lilcom-compressed) features were read
    assert torch.allclose(a, b, atol=0.05)


def test_sampler_language_homogeneous_and_deterministic(cuts: CutSet) -> None:
    sampler = DurationBatchSampler(
        cuts, max_duration=2.7, seed=3, num_buckets=2, language_homogeneous=True
    )
    first = [[c.id for c in b] for b in sampler.batches()]
    assert sorted(i for b in first for i in b) == sorted(c.id for c in cuts)
    for batch in sampler.batches():
        assert len({c.supervisions[0].language for c in batch}) == 1
        assert len(batch) == 1 or sum(c.duration for c in batch) <= 2.7
    assert first == [[c.id for c in b] for b in sampler.batches()]
    orders = set()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        orders.add(tuple(tuple(c.id for c in b) for b in sampler.batches()))
    assert len(orders) > 1  # the epoch reshuffles


def test_training_steps_reduce_loss(tokenizer, cuts: CutSet, tmp_path: Path) -> None:
    model = tiny_model(tokenizer)
    dataset = dataset_for(model, tokenizer)
    sampler = DurationBatchSampler(cuts, max_duration=100.0)
    config = TrainerConfig(exp_dir=str(tmp_path), epochs=1, lr=3e-3, progress=False)
    trainer = WhisperTrainer(model, config, dataset, sampler)
    batch = move_batch(dataset[cuts], trainer.device)
    losses = []
    for _ in range(3):
        loss, _ = trainer.compute_loss(batch)
        loss.backward()
        trainer._optimizer_step()
        losses.append(float(loss.detach()))
    final, _ = trainer.compute_loss(batch)
    assert float(final) < losses[0] - 0.1


def _trainer(tokenizer, cuts, exp_dir: Path, seed: int, calls: list | None = None):
    model = tiny_model(tokenizer, seed=seed)
    model.config.dropout = 0.1  # the RNG state matters for an exact resume
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.1
    dataset = dataset_for(model, tokenizer)

    def extra_loss(model, batch, outputs):
        if calls is not None:
            calls.append(batch["cut_ids"])
        return {"l2": 1e-4 * outputs.logits.float().pow(2).mean()}

    config = TrainerConfig(
        exp_dir=str(exp_dir),
        epochs=2,
        lr=2e-3,
        warmup_steps=1,
        accum_grad=2,
        label_smoothing=0.1,
        progress=False,
    )
    return WhisperTrainer(
        model,
        config,
        dataset,
        DurationBatchSampler(cuts, max_duration=2.7, seed=5, num_buckets=2),
        valid_dataset=dataset,
        valid_sampler=DurationBatchSampler(cuts, max_duration=5.0, shuffle=False),
        extra_loss=extra_loss,
    )


def test_resume_matches_uninterrupted_training(tokenizer, cuts: CutSet, tmp_path: Path) -> None:
    full_calls: list = []
    full = _trainer(tokenizer, cuts, tmp_path / "full", seed=0, calls=full_calls)
    summary = full.fit()
    assert summary["epochs"] == 2 and summary["best_epoch"] in (1, 2)
    assert [e for e, _ in checkpoint_dirs(tmp_path / "full")] == [1, 2]
    assert json.loads((tmp_path / "full" / "best-checkpoint.json").read_text())["epoch"] in (1, 2)

    part = _trainer(tokenizer, cuts, tmp_path / "part", seed=0)
    part.config.epochs = 1
    part.fit()
    resumed_calls: list = []
    resumed = _trainer(tokenizer, cuts, tmp_path / "part", seed=1, calls=resumed_calls)
    (tmp_path / "part" / "checkpoints" / "epoch-1").rename(tmp_path / "part" / "moved")
    assert not resumed.resume()  # nothing to resume from
    (tmp_path / "part" / "moved").rename(tmp_path / "part" / "checkpoints" / "epoch-1")
    assert resumed.resume() and resumed.epoch == 1
    resumed.fit()
    # the second epoch sees the same batches in the same order, with the same losses
    assert resumed_calls == full_calls[len(full_calls) - len(resumed_calls) :]
    assert resumed.history[1]["train_loss"] == pytest.approx(full.history[1]["train_loss"], 1e-6)
    assert resumed.global_step == full.global_step
    resumed_state = resumed.model.state_dict()
    for name, value in full.model.state_dict().items():
        assert torch.allclose(value, resumed_state[name], atol=1e-6), name


def test_decode_writes_scores(tokenizer, cuts: CutSet, tmp_path: Path) -> None:
    model = tiny_model(tokenizer)
    export_model(model, tmp_path / "model", tokenizer)
    loaded = load_whisper_model(tmp_path / "model")
    batch = dataset_for(model, tokenizer)[cuts.subset(first=2)]
    with torch.no_grad():
        a = model.eval()(**{k: batch[k] for k in ("input_features", "decoder_input_ids")}).logits
        b = loaded(**{k: batch[k] for k in ("input_features", "decoder_input_ids")}).logits
    assert torch.allclose(a, b, atol=1e-5)
    hyps = decode_cuts(loaded, tokenizer, cuts, max_new_tokens=4, progress=False)
    assert [h.cut_id for h in hyps] == [c.id for c in cuts]
    assert {h.language for h in hyps} == {"en", "ca"}
    paths = write_and_score(hyps, tmp_path / "decode", "test", "wer")
    for key in ("hyp", "ref", "recogs", "errs", "summary", "scores"):
        assert paths[key].is_file(), key
    scores = json.loads(paths["scores"].read_text())
    assert scores["set"] == "test" and scores["metric"] == "wer"
    assert sorted(scores["per_language"]) == ["ca", "en"]
    ref_lines = paths["ref"].read_text().splitlines()
    assert "en-1 a dog runs home" in ref_lines


def test_cli_train_then_decode(tokenizer, cuts: CutSet, tmp_path: Path) -> None:
    from speechkd.bin import whisper_decode, whisper_train
    from speechkd.utils.atomic import save_manifest

    tok_dir = tmp_path / "lang_whisper"
    tokenizer.save_pretrained(tok_dir)
    cuts_path = tmp_path / "cuts.jsonl.gz"
    save_manifest(cuts, cuts_path)
    config_path = tmp_path / "config.json"
    tiny_model(tokenizer).config.to_json_file(config_path)
    exp = tmp_path / "exp"
    common = ["--train-cuts", str(cuts_path), "--dev-cuts", str(cuts_path), "--no-progress"]
    args = [*common, "--model-config", str(config_path), "--tokenizer", str(tok_dir)]
    args += ["--exp-dir", str(exp), "--epochs", "1", "--lr", "1e-3", "--max-duration", "3"]
    assert whisper_train.main([*args, "--peft", "lora"]) == 0
    assert (exp / "model" / "model.safetensors").is_file()
    assert (exp / "config.yaml").is_file() and (exp / "log" / "train.log").is_file()
    # --resume with every epoch done only re-exports the best model
    assert whisper_train.main([*args, "--peft", "lora", "--resume"]) == 0
    assert [e for e, _ in checkpoint_dirs(exp)] == [1]
    out = tmp_path / "decode"
    decode_args = ["--model-dir", str(exp / "model"), "--cuts", str(cuts_path)]
    decode_args += ["--set-name", "dev", "--out-dir", str(out), "--metric", "cer"]
    assert whisper_decode.main([*decode_args, "--max-new-tokens", "3", "--no-progress"]) == 0
    scores = json.loads((out / "scores-dev.json").read_text())
    assert scores["metric"] == "cer" and sorted(scores["per_language"]) == ["ca", "en"]


def test_memorised_transcripts_decode_back(tokenizer, cuts: CutSet, tmp_path: Path) -> None:
    """Training and ``generate`` agree on the prompt: an overfitted model decodes its data."""
    model = tiny_model(tokenizer)
    dataset = dataset_for(model, tokenizer)
    config = TrainerConfig(exp_dir=str(tmp_path), epochs=1, lr=3e-3, progress=False)
    trainer = WhisperTrainer(model, config, dataset, DurationBatchSampler(cuts, 100.0))
    batch = move_batch(dataset[cuts], trainer.device)
    for _ in range(120):
        loss, _ = trainer.compute_loss(batch)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    hyps = decode_cuts(model, tokenizer, cuts, progress=False)
    assert [h.hyp for h in hyps] == [text for _, _, text, _ in UTTERANCES]
    short = decode_cuts(model, tokenizer, cuts, max_new_tokens=1, progress=False)
    assert [h.hyp for h in short] == [
        tokenizer.decode(text_token_ids(tokenizer, h.ref)[:1]).strip() for h in short
    ]


def test_clsr_hooks_route_batches_and_checkpoint_noise(
    tokenizer, cuts: CutSet, tmp_path: Path
) -> None:
    from speechkd.whisper.clsr import add_clsr, clsr_noise_schedule, language_module_tensors
    from speechkd.whisper.trainer import clsr_training_hooks

    model = add_clsr(tiny_model(tokenizer), ["en", "ca"], noise_ramp_steps=100)
    dataset = dataset_for(model, tokenizer)
    ca_only = cuts.filter(lambda c: c.supervisions[0].language == "ca").to_eager()
    sampler = DurationBatchSampler(ca_only, 100.0, language_homogeneous=True)
    config = TrainerConfig(exp_dir=str(tmp_path), epochs=1, lr=1e-2, progress=False)
    hooks = clsr_training_hooks(model)
    trainer = WhisperTrainer(model, config, dataset, sampler, **hooks.kwargs())
    before = {k: v.detach().clone() for k, v in language_module_tensors(model, "en").items()}
    ca_before = {k: v.detach().clone() for k, v in language_module_tensors(model, "ca").items()}
    trainer.fit()
    assert clsr_noise_schedule(model).current_step == trainer.global_step == 2
    for name, value in language_module_tensors(model, "en").items():
        assert torch.equal(value, before[name]), name  # the inactive language never trains
    changed = [
        not torch.equal(v, ca_before[k]) for k, v in language_module_tensors(model, "ca").items()
    ]
    assert any(changed)
    state = torch.load(tmp_path / "checkpoints" / "epoch-1" / "trainer_state.pt", weights_only=True)
    assert state["stateful"]["clsr_noise"]["step"] == 2
    mixed = dataset[cuts]
    with pytest.raises(DataError, match="one language per batch"):
        hooks.before_forward(model, mixed)
