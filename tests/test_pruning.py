"""PEPSI lottery-ticket pruning: schedule, exclusions, exact global magnitude pruning, rewinding,
masks through training, compact save/load."""

from __future__ import annotations

import pytest
import torch

from speechkd.errors import ConfigError, DataError
from speechkd.whisper.params import (
    alive_parameter_count,
    build_whisper,
    small_whisper_config,
    total_parameter_count,
)
from speechkd.whisper.peft_methods import apply_peft, merge_peft
from speechkd.whisper.pruning import (
    alive_fraction_by_group,
    apply_masks,
    enforce_masks,
    global_magnitude_prune,
    init_masks,
    load_masks,
    load_pruned,
    mask_sparsity,
    max_sparsity,
    prunable_parameters,
    prune_round,
    prune_schedule,
    pruned_count,
    pruned_share,
    rewind,
    save_masks,
    save_pruned,
    snapshot,
    unwrap_mask_names,
)

# peft calls a transformers attribute deprecated in v5 (not our code).
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and stably on a busy machine) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_pepsi(seed: int = 0, **options):
    torch.manual_seed(seed)
    model = build_whisper(small_whisper_config(), device="cpu").eval()
    return apply_peft(model, "pepsi", **options)


def inputs(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 16, 32, generator=g), torch.randint(0, 120, (2, 5), generator=g)


def test_schedule_values():
    assert prune_schedule() == pytest.approx(
        [0.1, 0.19, 0.271, 0.3439, 0.40951, 0.468559, 0.5], abs=1e-12
    )
    assert prune_schedule(0.9)[:3] == pytest.approx([0.1, 0.19, 0.271])
    assert prune_schedule(0.9)[-1] == 0.9 and len(prune_schedule(0.9)) == 22
    assert prune_schedule(0.1) == [0.1]
    with pytest.raises(ConfigError):
        prune_schedule(1.0)


def test_lora_and_attached_weights_are_never_prunable():
    model = tiny_pepsi()
    names = set(prunable_parameters(model))
    assert not any("lora_" in n for n in names)
    for layer in range(2):
        for attn in ("self_attn", "encoder_attn"):
            for proj in ("q_proj", "v_proj"):
                prefix = f"model.decoder.layers.{layer}.{attn}.{proj}"
                assert not any(n.startswith(prefix) for n in names), prefix
        assert any(f"decoder.layers.{layer}.self_attn.k_proj" in n for n in names)
    assert any("encoder.layers.0.self_attn.q_proj" in n for n in names)
    assert any(n.endswith("encoder.conv1.weight") for n in names)
    assert any(n.endswith("decoder.embed_tokens.weight") for n in names)
    assert not any(n.endswith("bias") or "layer_norm" in n for n in names)
    assert not any("encoder.embed_positions" in n for n in names)


def test_global_magnitude_prune_is_exact_and_global():
    model = tiny_pepsi()
    masks = init_masks(model)
    total = total_parameter_count(model)  # the sparsity is a share of all parameters
    params = prunable_parameters(model)
    all_abs = torch.cat([p.detach().abs().flatten() for p in params.values()])
    new = global_magnitude_prune(model, masks, 0.3)
    assert sum(int((~m).sum()) for m in new.values()) == pruned_count(total, 0.3)
    pruned_max = max(
        float(params[k].detach().abs()[~m].max()) for k, m in new.items() if (~m).any()
    )
    alive_min = min(float(params[k].detach().abs()[m].min()) for k, m in new.items())
    assert pruned_max <= alive_min
    assert pruned_max == pytest.approx(float(all_abs.sort().values[pruned_count(total, 0.3) - 1]))
    # ties: equal magnitudes still give the exact count
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.sign(p) * 0.5)
    tied = global_magnitude_prune(model, masks, 0.25)
    assert sum(int((~m).sum()) for m in tied.values()) == pruned_count(total, 0.25)
    # an explicit total (here: the prunable weights alone) changes what the share is of
    n = sum(m.numel() for m in masks.values())
    of_prunable = global_magnitude_prune(model, masks, 0.25, total=n)
    assert sum(int((~m).sum()) for m in of_prunable.values()) == pruned_count(n, 0.25)


def test_sparsity_counts_all_parameters():
    """50% of ALL parameters: the unprunable ones (LoRA-carrying q/v, biases, norms, fixed
    positions) stay alive, so the prunable weights are pruned beyond 50%."""
    model = tiny_pepsi()
    total = total_parameter_count(model)
    masks = init_masks(model)
    n = sum(m.numel() for m in masks.values())
    assert n < total  # some weights are never pruned
    for sparsity in prune_schedule(0.5):
        masks = prune_round(model, masks, sparsity)
        pruned = sum(int((~m).sum()) for m in masks.values())
        assert pruned == pruned_count(total, sparsity)
        assert abs(pruned_share(masks, total) - sparsity) <= 0.5 / total
    merged = merge_peft(model)  # the LoRA merges away: alive over all parameters of the model
    alive = alive_parameter_count(merged, unwrap_mask_names(masks))
    assert alive == total - pruned_count(total, 0.5)
    assert abs(alive / total_parameter_count(merged) - 0.5) <= 1 / total
    assert mask_sparsity(masks) == pytest.approx((total - alive) / n) and mask_sparsity(masks) > 0.5
    with pytest.raises(ConfigError, match="prunable"):
        prune_round(model, masks, max_sparsity(n, total) + 0.01)


def test_imp_rounds_keep_excluded_weights_dense_and_count_alive():
    model = tiny_pepsi()
    excluded = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if n not in prunable_parameters(model)
    }
    masks = init_masks(model)
    whisper = total_parameter_count(model)
    total = sum(p.numel() for p in model.parameters())  # with the (unmerged) LoRA
    previous = masks
    for sparsity in prune_schedule(0.5):
        masks = prune_round(model, masks, sparsity)
        assert all(bool((m <= previous[k]).all()) for k, m in masks.items())  # only shrinks
        previous = masks
        assert pruned_share(masks, whisper) == pytest.approx(sparsity, abs=1 / whisper)
    assert alive_parameter_count(model, masks) == total - pruned_count(whisper, 0.5)
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.count_nonzero(p[~masks[name]]) == 0
        else:
            assert torch.equal(p, excluded[name]), name
    fractions = alive_fraction_by_group(model, masks)
    assert fractions["decoder_layer_norm"] == 1.0
    assert 0.0 < fractions["decoder_layers"] < 1.0


def test_rewind_restores_surviving_weights_exactly():
    model = tiny_pepsi(train_base=True)
    pretrained = snapshot(model)
    masks = init_masks(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    features, tokens = inputs()
    for _ in range(2):
        model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    params = dict(model.named_parameters())
    name = next(iter(masks))
    assert not torch.equal(params[name], pretrained[name])  # training moved it
    masks = prune_round(model, masks, 0.1)
    rewind(model, pretrained, masks)
    for n, p in model.named_parameters():
        if n in masks:
            torch.testing.assert_close(p[masks[n]], pretrained[n][masks[n]], rtol=0, atol=0)
            assert torch.count_nonzero(p[~masks[n]]) == 0
        else:
            assert torch.equal(p, pretrained[n]), n


def test_masks_persist_through_optimizer_steps():
    model = tiny_pepsi(train_base=True)
    masks = prune_round(model, init_masks(model), 0.5)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1
    )
    enforcement = enforce_masks(model, masks, optimizer)
    features, tokens = inputs()
    params = dict(model.named_parameters())
    start = {n: params[n].detach().clone() for n in masks}
    for _ in range(3):
        model(input_features=features, decoder_input_ids=tokens, labels=tokens).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    moved = 0
    for n, m in masks.items():
        assert torch.count_nonzero(params[n][~m]) == 0, n
        moved += int((params[n][m] != start[n][m]).sum())
    assert moved > 0  # alive weights trained
    enforcement.remove()
    with torch.no_grad():  # without the hooks a step revives pruned entries
        for n in masks:
            params[n].add_(1.0)
    assert any(torch.count_nonzero(params[n][~m]) > 0 for n, m in masks.items())
    apply_masks(model, masks)
    assert all(torch.count_nonzero(params[n][~m]) == 0 for n, m in masks.items())


def test_compact_save_load_gives_identical_outputs(tmp_path):
    model = tiny_pepsi()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.1)
    masks = prune_round(model, init_masks(model), 0.5)
    path = tmp_path / "pruned.safetensors"
    save_pruned(model, masks, path)
    dense_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert path.stat().st_size < 0.75 * dense_bytes
    features, tokens = inputs()
    model.eval()
    with torch.no_grad():
        expected = model(input_features=features, decoder_input_ids=tokens).logits
    fresh = tiny_pepsi(seed=5).eval()
    loaded_masks = load_pruned(fresh, path)
    assert loaded_masks.keys() == masks.keys()
    assert all(torch.equal(loaded_masks[k], masks[k]) for k in masks)
    with torch.no_grad():
        got = fresh(input_features=features, decoder_input_ids=tokens).logits
    assert torch.equal(got, expected)
    mask_path = tmp_path / "masks.safetensors"
    save_masks(masks, mask_path)
    assert all(torch.equal(load_masks(mask_path)[k], masks[k]) for k in masks)
    with pytest.raises(DataError):
        load_pruned(fresh, mask_path)
    # merged LoRA (on unpruned q, v) keeps the sparsity; the plain model saves compactly too
    merged = merge_peft(model)
    plain_masks = unwrap_mask_names(masks)
    assert alive_parameter_count(merged, plain_masks) == alive_parameter_count(model, masks) - sum(
        p.numel() for n, p in model.named_parameters() if "lora_" in n
    )
    save_pruned(merged, plain_masks, tmp_path / "merged.safetensors")
    with torch.no_grad():
        assert torch.allclose(
            merged(input_features=features, decoder_input_ids=tokens).logits, expected, atol=1e-5
        )


def test_param_table_whisper_large_half_of_all_parameters_alive(capsys):
    """PEPSI's 50% of whisper-large: 0.77B of 1.54B alive (the paper's Tables 3 and 4)."""
    from speechkd.bin.peft_param_table import main, pepsi_rows

    rows = {row[0]: row for row in pepsi_rows("large", 0.5, materialize=False)}
    pepsi = rows["PEPSI, LoRA merged (50% of all pruned)"]
    lth = rows["LTH (50% of all pruned)"]
    assert rows["zero-shot"][2] == "1,543,304,960"
    assert pepsi[2] == lth[2] == "771,652,480"  # exactly half of 1,543,304,960
    assert pepsi[3] == "0.500"
    # the LoRA-carrying decoder q/v, biases, norms and fixed positions stay: 58% of the rest go
    assert pepsi[4] == "1,330,474,240" and pepsi[5] == "0.580"
    main(["--size", "tiny", "--pepsi-size", "large"])
    assert "| 771,652,480 | 0.500 |" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="prunable"):
        pepsi_rows("large", 0.9, materialize=False)
