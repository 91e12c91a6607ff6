"""Best checkpoint by dev WER/CER: the trainer's criterion, its resume, the dev scorer, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from lhotse import CutSet

from speechkd.errors import ConfigError
from speechkd.whisper.data import DurationBatchSampler, text_token_ids
from speechkd.whisper.decode import decode_cuts, duration_token_cap, write_and_score
from speechkd.whisper.selection import DevErrorRate, DevScore
from speechkd.whisper.trainer import TrainerConfig, WhisperTrainer, best_checkpoint
from tests.test_whisper_trainer import cuts, dataset_for, tiny_model, tokenizer  # noqa: F401


class ScriptedScorer:
    """A dev scorer returning the given WERs in turn; records the mode the model was in."""

    def __init__(self, values: list[float]) -> None:
        self.values = list(values)
        self.training_modes: list[bool] = []

    def __call__(self, model: torch.nn.Module, device: torch.device) -> DevScore:
        self.training_modes.append(model.training)
        value = self.values.pop(0)
        return DevScore("wer", value, {"ca": value + 1.0, "en": value - 1.0}, 5)


def _trainer(tok, data: CutSet, exp: Path, epochs: int, scorer=None, select_by: str = "wer"):
    model = tiny_model(tok)
    dataset = dataset_for(model, tok)
    config = TrainerConfig(
        exp_dir=str(exp), epochs=epochs, lr=3e-3, progress=False, select_by=select_by
    )
    return WhisperTrainer(
        model,
        config,
        dataset,
        DurationBatchSampler(data, max_duration=2.7, seed=1, num_buckets=2),
        valid_dataset=dataset,
        valid_sampler=DurationBatchSampler(data, max_duration=5.0, shuffle=False),
        dev_scorer=scorer,
    )


def test_select_by_wer_records_and_picks_dev_wer(tokenizer, cuts, tmp_path) -> None:  # noqa: F811
    scorer = ScriptedScorer([10.0, 30.0, 20.0])
    trainer = _trainer(tokenizer, cuts, tmp_path, epochs=3, scorer=scorer)
    summary = trainer.fit()
    losses = [h["valid_loss"] for h in trainer.history]
    assert [h["valid_wer"] for h in trainer.history] == [10.0, 30.0, 20.0]
    assert trainer.history[0]["valid_wer_per_language"] == {"ca": 11.0, "en": 9.0}
    # the dev loss keeps falling on this data: by loss the last epoch would win, by WER the first
    assert losses.index(min(losses)) == 2
    assert summary["best_epoch"] == 1 and summary["select_by"] == "wer"
    assert summary["best_score"] == 10.0 and summary["best_valid_loss"] == losses[0]
    best = json.loads((tmp_path / "best-checkpoint.json").read_text())
    assert best == {
        "epoch": 1,
        "select_by": "wer",
        "valid_loss": losses[0],
        "valid_wer": 10.0,
        "valid_wer_per_language": {"ca": 11.0, "en": 9.0},
    }
    assert best_checkpoint(tmp_path).name == "epoch-1"
    assert scorer.training_modes == [True, True, True]


def test_resume_keeps_the_selection_state(tokenizer, cuts, tmp_path) -> None:  # noqa: F811
    first = _trainer(tokenizer, cuts, tmp_path, epochs=1, scorer=ScriptedScorer([10.0]))
    first.fit()
    resumed = _trainer(tokenizer, cuts, tmp_path, epochs=2, scorer=ScriptedScorer([30.0]))
    assert resumed.resume()
    assert (resumed.best_epoch, resumed.best_score) == (1, 10.0)
    summary = resumed.fit()
    # a fresh state would have taken epoch 2 (the only score it saw)
    assert summary["best_epoch"] == 1
    assert [h["valid_wer"] for h in summary["history"]] == [10.0, 30.0]
    best = json.loads((tmp_path / "best-checkpoint.json").read_text())
    assert (best["epoch"], best["valid_wer"]) == (1, 10.0)
    by_loss = _trainer(tokenizer, cuts, tmp_path, epochs=3, select_by="loss")
    with pytest.raises(ConfigError, match="selects its best epoch by wer, select_by='loss'"):
        by_loss.resume()


def test_bad_selection_options(tokenizer, cuts, tmp_path) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="select_by must be one of"):
        TrainerConfig(exp_dir=str(tmp_path), select_by="bleu")
    with pytest.raises(ConfigError, match="needs a dev scorer"):
        _trainer(tokenizer, cuts, tmp_path, epochs=1)
    with pytest.raises(ConfigError, match="must be >= 1"):
        DevErrorRate(tokenizer, cuts, max_cuts=0)


def test_dev_error_rate_equals_decode_and_score(tokenizer, cuts, tmp_path) -> None:  # noqa: F811
    model = tiny_model(tokenizer).train()
    scorer = DevErrorRate(tokenizer, cuts, "cer", max_duration=3.0, tokens_per_second=3.0)
    score = scorer(model, torch.device("cpu"))
    assert model.training  # left as it was
    hyps = decode_cuts(
        model, tokenizer, cuts, max_duration=3.0, tokens_per_second=3.0, progress=False
    )
    paths = write_and_score(hyps, tmp_path, "dev", "cer")
    expected = json.loads(paths["scores"].read_text())["per_language"]
    assert score.metric == "cer" and score.num_cuts == len(cuts)
    rates = {k: v["rate"] for k, v in expected.items()}
    assert score.per_language == pytest.approx(rates, abs=1e-3)
    assert score.value == pytest.approx(sum(score.per_language.values()) / 2)
    capped = DevErrorRate(tokenizer, cuts, "wer", max_cuts=1)
    assert [c.id for c in capped.cuts] == ["en-0", "ca-0"]


def test_new_tokens_are_capped_by_the_batch_duration(tokenizer, cuts) -> None:  # noqa: F811
    model = tiny_model(tokenizer)
    seen: list[tuple[float, int]] = []
    generate = model.generate

    def spy(**kwargs):
        frames = int(kwargs["input_features"].shape[0])
        seen.append((frames, model.generation_config.max_new_tokens))
        return generate(**kwargs)

    model.generate = spy
    single = decode_cuts(model, tokenizer, cuts, 1.0, tokens_per_second=2.0, progress=False)
    # one cut per batch (each is about 1 s or longer): the cap follows each cut's duration
    durations = sorted(c.duration for c in cuts)
    assert sorted(cap for _, cap in seen) == [math.ceil(2.0 * d) for d in durations]
    # one batch per language, generated to its longest cut's cap: each row cut at its own
    seen.clear()
    batched = decode_cuts(model, tokenizer, cuts, 100.0, tokens_per_second=2.0, progress=False)
    assert len(seen) == 2 and batched == single
    for hyp, cut in zip(single, cuts, strict=True):
        assert len(text_token_ids(tokenizer, hyp.hyp)) <= math.ceil(2.0 * cut.duration) + 1
    assert duration_token_cap(0.01, 2.0) == 1
    with pytest.raises(ConfigError, match="tokens_per_second must be positive"):
        decode_cuts(model, tokenizer, cuts, tokens_per_second=0.0, progress=False)


def test_decoder_positions_with_a_limit_per_row() -> None:
    """Rows capped by their duration feed their own cap - 1 tokens (gate usage counts them)."""
    from speechkd.whisper.decode import decoder_positions

    eot = 9
    prompt = torch.tensor([[1, 2], [1, 2], [1, 2]])
    generated = torch.tensor([[5, 6, 7, 8], [5, 6, eot, eot], [5, eot, eot, eot]])
    _, mask = decoder_positions(prompt, generated, eot, [3, 4, 4])
    assert mask.sum(dim=1).tolist() == [2 + 2, 2 + 2, 2 + 1]
    _, same = decoder_positions(prompt, generated, eot, 4)
    assert same.sum(dim=1).tolist() == [2 + 3, 2 + 2, 2 + 1]
    with pytest.raises(ConfigError, match="max_new_tokens must be >= 1"):
        decoder_positions(prompt, generated, eot, [3, 0, 4])


def _cli_args(tok, data: CutSet, tmp_path: Path, exp: Path) -> list[str]:
    from speechkd.utils.atomic import save_manifest

    tok_dir = tmp_path / "lang_whisper"
    tok.save_pretrained(tok_dir)
    cuts_path = tmp_path / "cuts.jsonl.gz"
    save_manifest(data, cuts_path)
    config_path = tmp_path / "config.json"
    tiny_model(tok).config.to_json_file(config_path)
    return [
        "--train-cuts", str(cuts_path), "--dev-cuts", str(cuts_path), "--no-progress",
        "--model-config", str(config_path), "--tokenizer", str(tok_dir), "--exp-dir", str(exp),
        "--epochs", "2", "--lr", "1e-3", "--max-duration", "3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "method", [["--peft", "lora"], ["--clsr-languages", "en", "ca"]], ids=["lora", "clsr"]
)
def test_cli_selects_by_wer(tokenizer, cuts, tmp_path, method: list[str]) -> None:  # noqa: F811
    from speechkd.bin import whisper_train

    exp = tmp_path / "exp"
    args = _cli_args(tokenizer, cuts, tmp_path, exp)
    conf = tmp_path / "select.yaml"
    conf.write_text(yaml.safe_dump({"select_by": "wer", "select_max_cuts": 1}))
    selection = ["--config", str(conf), "--select-tokens-per-second", "2"]
    assert whisper_train.main([*args, *method, *selection]) == 0
    summary = json.loads((exp / "train-summary.json").read_text())
    wers = [h["valid_wer"] for h in summary["history"]]
    assert len(wers) == 2 and all(w >= 0 for w in wers)
    assert all(set(h["valid_wer_per_language"]) == {"ca", "en"} for h in summary["history"])
    best = json.loads((exp / "best-checkpoint.json").read_text())
    assert best["select_by"] == "wer" and best["valid_wer"] == min(wers)
    assert best["epoch"] == 1 + wers.index(min(wers))
    assert yaml.safe_load((exp / "config.yaml").read_text())["select_by"] == "wer"
    exported = exp / ("language_modules" if "--clsr-languages" in method else "model")
    assert exported.is_dir()


def test_cli_select_options_are_checked(tokenizer, cuts, tmp_path) -> None:  # noqa: F811
    from speechkd.bin import whisper_train

    args = _cli_args(tokenizer, cuts, tmp_path, tmp_path / "exp")
    at = args.index("--dev-cuts")
    no_dev = args[:at] + args[at + 2 :]
    with pytest.raises(ConfigError, match="--select-by wer decodes --dev-cuts"):
        whisper_train.main([*no_dev, "--select-by", "wer"])
    with pytest.raises(ConfigError, match="--select-max-cuts must be >= 1"):
        whisper_train.main([*args, "--select-by", "cer", "--select-max-cuts", "0"])
    conf = tmp_path / "bad.yaml"
    conf.write_text("select_by: bleu\n")
    with pytest.raises(ConfigError, match="select_by='bleu' is not one of"):
        whisper_train.main([*args, "--config", str(conf)])
