"""PEPSI lottery-ticket IMP loop: schedule, exclusions, rewinding, milestones, resume, the
mask-enforcing hook and the pepsi_prune command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet

from speechkd.errors import ConfigError
from speechkd.whisper.data import DurationBatchSampler
from speechkd.whisper.imp import (
    HISTORY_FILE,
    WhisperRoundTrainer,
    load_history,
    load_reference,
    milestone_name,
    parse_rewind,
    run_imp,
)
from speechkd.whisper.params import build_whisper, small_whisper_config, total_parameter_count
from speechkd.whisper.peft_methods import after_optimizer_step, apply_peft
from speechkd.whisper.pruning import (
    apply_masks,
    enforce_masks,
    init_masks,
    load_masks,
    load_pruned,
    mask_enforcing_hook,
    prunable_parameters,
    prune_round,
    pruned_count,
    resolve_masks,
    snapshot,
)
from speechkd.whisper.trainer import TrainerConfig
from tests.test_whisper_trainer import cuts, dataset_for, tiny_model, tokenizer  # noqa: F401

# peft calls a transformers attribute deprecated in v5 (not our code).
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_pepsi(seed: int = 0):
    torch.manual_seed(seed)
    model = build_whisper(small_whisper_config(), device="cpu")
    return apply_peft(model, "pepsi", train_base=True)


class FakeRound:
    """A few AdamW steps on fixed random inputs (deterministic per round); records states."""

    def __init__(self, steps: int = 3, lr: float = 1e-2) -> None:
        self.steps = steps
        self.lr = lr
        self.states: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def __call__(self, model, round_index, work_dir, after_step):
        torch.manual_seed(round_index)
        features = torch.randn(2, 16, 32)
        tokens = torch.randint(0, 120, (2, 5))
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.1)
        model.train()
        for step in range(1, self.steps + 1):
            model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss.backward()
            optimizer.step()
            after_step(model, step)
            optimizer.zero_grad()
            self.states[(round_index, step)] = snapshot(model)
        return {"global_step": self.steps}


def test_parse_rewind_and_milestone_names() -> None:
    assert parse_rewind("init") == "init" and parse_rewind("0") == "init"
    assert parse_rewind("25") == 25 and parse_rewind(3) == 3
    for bad in ("-1", "later", True):
        with pytest.raises(ConfigError):
            parse_rewind(bad)
    assert milestone_name(0.3) == "prune-30" and milestone_name(0.271) == "prune-27.1"


def test_schedule_exclusions_and_rewind(tmp_path: Path) -> None:
    model = tiny_pepsi()
    pretrained = snapshot(model)
    n = total_parameter_count(model)  # sparsities are shares of all parameters
    train = FakeRound()
    result = run_imp(model, train, tmp_path, target_sparsity=0.3, rate=0.1)
    rounds = result.history["rounds"]
    assert [r["target"] for r in rounds] == pytest.approx([0.0, 0.1, 0.19, 0.271, 0.3], abs=1e-12)
    assert [r["pruned"] for r in rounds[1:]] == [
        pruned_count(n, s) for s in (0.1, 0.19, 0.271, 0.3)
    ]
    assert result.history["finished"] and load_history(tmp_path)["rounds"] == rounds
    masks = result.masks
    assert sum(int((~m).sum()) for m in masks.values()) == pruned_count(n, 0.3)
    # survivors and every unprunable parameter (LoRA, the q/v it is attached to, biases, norms)
    # are exactly the pretrained values; pruned weights are zero
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.equal(p[masks[name]], pretrained[name][masks[name]]), name
            assert torch.count_nonzero(p[~masks[name]]) == 0, name
        else:
            assert torch.equal(p, pretrained[name]), name
    assert not any("lora_" in n or ".base_layer." in n for n in masks)
    # training moved the weights (the round really trained before pruning)
    trained = train.states[(4, 3)]
    assert any(not torch.equal(trained[k], pretrained[k]) for k in masks)
    # round 0 is dense; every group's alive fraction only shrinks
    groups = [r["alive_fraction_by_group"] for r in rounds]
    assert all(v == 1.0 for v in groups[0].values())
    assert groups[-1]["decoder_layer_norm"] == 1.0 and groups[-1]["encoder_layers"] < 1.0
    for before, after in zip(groups, groups[1:], strict=False):
        assert all(after[g] <= before[g] for g in before)
    # exported ticket: plain names, zeros where pruned, the LoRA-carrying q/v dense
    from transformers import WhisperForConditionalGeneration

    plain = WhisperForConditionalGeneration.from_pretrained(result.model_dir)
    plain_masks = load_masks(result.masks_path)
    params = dict(plain.named_parameters())
    assert set(plain_masks) <= set(params)
    for name, m in plain_masks.items():
        assert torch.count_nonzero(params[name][~m]) == 0
    q = params["model.decoder.layers.0.encoder_attn.q_proj.weight"]
    base = pretrained[
        "base_model.model.model.decoder.layers.0.encoder_attn.q_proj.base_layer.weight"
    ]
    assert torch.equal(q, base) and torch.count_nonzero(q) == q.numel()
    compact = build_whisper(small_whisper_config(), device="cpu")
    assert load_pruned(compact, result.pruned_path).keys() == plain_masks.keys()
    assert all(torch.equal(compact.state_dict()[k], v) for k, v in plain.state_dict().items())
    info = json.loads((tmp_path / "result.json").read_text())
    assert info["alive_params"] == result.history["whisper_params"] - pruned_count(n, 0.3)


def test_half_of_all_parameters_alive_after_imp_to_50(tmp_path: Path) -> None:
    """IMP to 50%: alive over ALL parameters is 50% (the unprunable ones count as alive), every
    round prunes 10% of the parameters still alive and the last one ends exactly at 50%."""
    model = tiny_pepsi()
    total = total_parameter_count(model)
    n_prunable = sum(m.numel() for m in init_masks(model).values())
    result = run_imp(model, FakeRound(steps=1), tmp_path, target_sparsity=0.5, rate=0.1)
    history = result.history
    assert history["sparsity_of"] == "all parameters" and history["whisper_params"] == total
    rounds = history["rounds"][1:]
    assert len(rounds) == 7 and rounds[-1]["target"] == 0.5
    for i, r in enumerate(rounds[:-1], start=1):  # 10% of what is alive, per round
        assert abs(r["alive_share"] - 0.9**i) <= 1 / total
    for r in rounds:
        assert abs(r["sparsity"] - r["target"]) <= 0.5 / total  # one round's rounding
        assert r["alive_params"] == total - r["pruned"]
        assert r["alive_share"] == pytest.approx(r["alive_params"] / total)
    final = rounds[-1]
    assert abs(final["alive_params"] / total - 0.5) <= 1 / total
    assert final["prunable_sparsity"] == pytest.approx(final["pruned"] / n_prunable)
    assert final["prunable_sparsity"] > 0.5  # the prunable weights are pruned harder
    # the exported ticket (LoRA merged): its zeros and result.json agree
    from transformers import WhisperForConditionalGeneration

    plain = WhisperForConditionalGeneration.from_pretrained(result.model_dir)
    assert total_parameter_count(plain) == total
    masks = load_masks(result.masks_path)
    alive = total - sum(int((~m).sum()) for m in masks.values())
    info = json.loads((tmp_path / "result.json").read_text())
    assert info["alive_params"] == alive == final["alive_params"]
    assert info["total_params"] == total and abs(info["alive_share"] - 0.5) <= 1 / total
    assert abs(info["sparsity"] - 0.5) <= 1 / total
    # a target beyond the prunable share stops before any training
    untrained = FakeRound()
    with pytest.raises(ConfigError, match="prunable"):
        run_imp(tiny_pepsi(), untrained, tmp_path / "b", n_prunable / total + 0.01)
    assert not untrained.states


def test_rewind_to_step_t_and_exclude(tmp_path: Path) -> None:
    model = tiny_pepsi()
    train = FakeRound(steps=4)
    result = run_imp(
        model, train, tmp_path, target_sparsity=0.19, rewind_to=2, exclude=[r"embed_tokens"]
    )
    theta_t = train.states[(1, 2)]
    assert all(
        torch.equal(v, theta_t[k])
        for k, v in load_reference(tmp_path / "imp" / "rewind-point.safetensors", model).items()
    )
    for name, p in model.named_parameters():
        if name in result.masks:
            m = result.masks[name]
            assert torch.equal(p[m], theta_t[name][m]) and torch.count_nonzero(p[~m]) == 0
        else:
            assert torch.equal(p, theta_t[name]), name
    assert not any("embed_tokens" in n for n in result.masks)
    with pytest.raises(ConfigError, match="never reached"):
        run_imp(tiny_pepsi(), FakeRound(steps=2), tmp_path / "b", 0.1, rewind_to=5)


def test_milestones_equal_separate_runs(tmp_path: Path) -> None:
    result = run_imp(tiny_pepsi(), FakeRound(), tmp_path / "a", 0.3, milestones=[0.15, 0.2, 0.3])
    assert set(result.milestones) == {0.15, 0.2, 0.3}
    assert [r["milestones"] for r in result.history["rounds"][1:]] == [[], [0.15], [0.2], [0.3]]
    separate = run_imp(tiny_pepsi(), FakeRound(), tmp_path / "b", 0.2)
    milestone = tmp_path / "a" / "milestones" / "prune-20"
    got = load_masks(milestone / "masks.safetensors")
    want = load_masks(separate.masks_path)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    for name in ("model/config.json", "trained-model/config.json", "pruned.safetensors"):
        assert (milestone / name).is_file(), name
    # the "trained" export keeps the updated weights (masked), the ticket the rewound ones
    from transformers import WhisperForConditionalGeneration

    ticket = dict(
        WhisperForConditionalGeneration.from_pretrained(milestone / "model").named_parameters()
    )
    trained = dict(
        WhisperForConditionalGeneration.from_pretrained(
            milestone / "trained-model"
        ).named_parameters()
    )
    for name, m in got.items():
        assert torch.count_nonzero(ticket[name][~m]) == 0
        assert torch.count_nonzero(trained[name][~m]) == 0
    name = "model.encoder.layers.0.fc1.weight"
    assert not torch.equal(ticket[name][got[name]], trained[name][got[name]])
    with pytest.raises(ConfigError, match="milestone"):
        run_imp(tiny_pepsi(), FakeRound(), tmp_path / "c", 0.3, milestones=[0.4])


def _round_trainer(model, tok, cut_set: CutSet, exp: Path) -> WhisperRoundTrainer:
    config = TrainerConfig(exp_dir=str(exp), epochs=1, lr=1e-3, progress=False)
    return WhisperRoundTrainer(
        config, dataset_for(model, tok), DurationBatchSampler(cut_set, max_duration=3.0, seed=1)
    )


class Interrupt(RuntimeError):
    pass


def test_resume_gives_the_same_masks(tokenizer, cuts: CutSet, tmp_path: Path) -> None:  # noqa: F811
    def pepsi_model():
        return apply_peft(tiny_model(tokenizer, seed=0), "pepsi", train_base=True)

    model = pepsi_model()
    full = run_imp(
        model, _round_trainer(model, tokenizer, cuts, tmp_path), tmp_path / "full", 0.271
    )

    part_dir = tmp_path / "part"
    model = pepsi_model()
    trainer = _round_trainer(model, tokenizer, cuts, tmp_path)

    def stops_in_round_3(model, round_index, work_dir, after_step):
        if round_index == 3:
            raise Interrupt
        return trainer(model, round_index, work_dir, after_step)

    with pytest.raises(Interrupt):
        run_imp(model, stops_in_round_3, part_dir, 0.271)
    assert json.loads((part_dir / HISTORY_FILE).read_text())["finished"] is False
    with pytest.raises(ConfigError, match="resume"):
        run_imp(pepsi_model(), trainer, part_dir, 0.271)
    with pytest.raises(ConfigError, match="other settings"):
        run_imp(pepsi_model(), trainer, part_dir, 0.271, resume=True, rate=0.2)
    model = pepsi_model()
    with torch.no_grad():  # a different LoRA init is replaced by the saved rewind point
        for n, p in model.named_parameters():
            if "lora_A" in n:
                p.add_(1.0)
    resumed = run_imp(
        model, _round_trainer(model, tokenizer, cuts, tmp_path), part_dir, 0.271, resume=True
    )
    assert [r["round"] for r in resumed.history["rounds"]] == [0, 1, 2, 3]
    assert resumed.masks.keys() == full.masks.keys()
    assert all(torch.equal(resumed.masks[k], full.masks[k]) for k in full.masks)
    assert not (part_dir / "imp" / "train" / "round-3" / "checkpoints").exists()


def test_mask_enforcing_hook_keeps_zeros_through_steps() -> None:
    torch.manual_seed(0)
    plain = build_whisper(small_whisper_config(), device="cpu")
    masks = prune_round(plain, init_masks(plain), 0.5)  # plain Whisper names
    model = apply_peft(plain, "pepsi", train_base=True)  # the names change under peft
    resolved = resolve_masks(model, masks)
    assert len(resolved) == len(prunable_parameters(model)) + 8  # + the q/v LoRA now carries
    steps = []
    hook = mask_enforcing_hook(masks, then=lambda m, s: steps.append(s))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1
    )
    apply_masks(model, resolved)
    params = dict(model.named_parameters())
    start = {n: params[n].detach().clone() for n in resolved}
    torch.manual_seed(1)
    features, tokens = torch.randn(2, 16, 32), torch.randint(0, 120, (2, 5))
    for step in range(1, 4):
        model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()
        hook(model, step)
        after_optimizer_step(model, step)
        optimizer.zero_grad()
        assert all(torch.count_nonzero(params[n][~m]) == 0 for n, m in resolved.items())
    assert steps == [1, 2, 3]
    assert any(not torch.equal(params[n][m], start[n][m]) for n, m in resolved.items())
    # without the hook the optimizer revives pruned weights (the gradients reach them)
    model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss.backward()
    optimizer.step()
    assert any(torch.count_nonzero(params[n][~m]) > 0 for n, m in resolved.items())
    # enforce_masks also zeroes their gradients, on whatever device the model is
    enforcement = enforce_masks(model, resolved)
    optimizer.zero_grad()
    model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss.backward()
    assert all(
        torch.count_nonzero(params[n].grad[~m]) == 0
        for n, m in resolved.items()
        if params[n].grad is not None
    )
    enforcement.remove()
    with pytest.raises(ConfigError, match="lacks"):
        resolve_masks(model, {"model.encoder.nothing.weight": torch.ones(2, dtype=torch.bool)})


def test_cli_writes_pruned_model_loadable_for_training(
    tokenizer,  # noqa: F811
    cuts: CutSet,  # noqa: F811
    tmp_path: Path,
) -> None:
    from speechkd.bin import pepsi_prune
    from speechkd.utils.atomic import save_manifest
    from speechkd.whisper.decode import load_whisper_model

    init = tmp_path / "init"
    tiny_model(tokenizer).save_pretrained(init)
    tokenizer.save_pretrained(init)
    cuts_path = tmp_path / "cuts.jsonl.gz"
    save_manifest(cuts, cuts_path)
    exp = tmp_path / "exp"
    args = ["--init-from", str(init), "--train-cuts", str(cuts_path), "--dev-cuts", str(cuts_path)]
    args += ["--exp-dir", str(exp), "--target-sparsity", "0.19", "--round-epochs", "1"]
    args += ["--round-lr", "1e-3", "--max-duration", "100", "--no-progress", "--save-every-round"]
    assert pepsi_prune.main(args) == 0
    for name in ("model/config.json", "masks.safetensors", "pruned.safetensors", HISTORY_FILE):
        assert (exp / name).is_file(), name
    assert (exp / "imp" / "round-1" / "model" / "config.json").is_file()
    history = load_history(exp)
    assert [r["round"] for r in history["rounds"]] == [0, 1, 2]
    params = json.loads((exp / "params.json").read_text())
    assert params["inference"] == params["total"] - params["pruned"] and params["trainable"] == 0
    assert params["sparsity_of"] == "all parameters"
    assert abs(params["sparsity"] - 0.19) <= 1 / params["total"]
    assert params["alive_share"] == pytest.approx(params["inference"] / params["total"])
    # what whisper_train --init-from <exp>/model --masks <exp>/masks.safetensors --peft pepsi does
    model = apply_peft(load_whisper_model(exp / "model"), "pepsi")
    masks = resolve_masks(model, load_masks(exp / "masks.safetensors"))
    named = dict(model.named_parameters())
    assert all(torch.count_nonzero(named[n][~m]) == 0 for n, m in masks.items())
    assert sum(int((~m).sum()) for m in masks.values()) == params["pruned"]
    with pytest.raises(ConfigError, match="rewind"):
        pepsi_prune.main([*args, "--rewind", "soon"])
    with pytest.raises(ConfigError, match="resume"):
        pepsi_prune.main(args)
    assert pepsi_prune.main([*args, "--resume"]) == 0  # all rounds done: nothing to train
