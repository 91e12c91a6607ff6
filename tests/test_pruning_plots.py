"""PEPSI / S2-LoRA figures: rank functions on tiny adapted models, the alive-ratio plot from a
real IMP history, the CER-versus-prune curve from real score files, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from speechkd.bin import pruning_plots as cli
from speechkd.errors import ConfigError, DataError
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.pruning_plots import (
    adalora_ranks,
    alive_table,
    error_series,
    error_table,
    load_prune_scores,
    plot_alive_ratio,
    plot_error_vs_prune,
    plot_rank_heatmaps,
    rank_grid,
    s2lora_ranks,
)
from speechkd.eval.wer import Utterance, score_utterances
from speechkd.whisper.imp import load_history, run_imp
from speechkd.whisper.params import build_whisper, small_whisper_config
from speechkd.whisper.peft_methods import apply_peft
from speechkd.whisper.trainer import save_model_weights

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(method: str, **options):
    torch.manual_seed(0)
    return apply_peft(build_whisper(small_whisper_config(), device="cpu"), method, **options)


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def s2lora_model():
    model = tiny("s2lora")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("decoder.layers.1.encoder_attn.v_proj.s2lora_s"):
                p.copy_(torch.tensor([1e-4, -2e-4, 5e-5, 0, 0.3, 0, 0, -1e-3]))  # rank 4
            elif name.endswith("encoder.layers.0.fc2.s2lora_s"):
                p[:2] = 0.5  # rank 2
    return model


def adalora_model():
    model = tiny("adalora", total_step=10)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_E." in name:
                p.zero_()
                if "encoder.layers.1.self_attn.v_proj" in name:
                    p[:5] = 0.1
                elif "decoder.layers.0.self_attn.q_proj" in name:
                    p[3] = -0.2
    return model


def test_s2lora_ranks_threshold_and_keys(tmp_path: Path) -> None:
    model = s2lora_model()
    ranks = s2lora_ranks(model)
    # 2 layers × (enc q,k,v,o + fc1,fc2 + dec self q,k,v,o + cross q,k,v,o + fc1,fc2)
    assert len(ranks) == 2 * (4 + 2 + 4 + 4 + 2)
    assert ranks[(1, "dec_cam.v")] == 4 and ranks[(0, "enc_ffm.fc2")] == 2
    assert sum(ranks.values()) == 6
    assert s2lora_ranks(model, threshold=1e-3)[(1, "dec_cam.v")] == 2
    path = tmp_path / "model.safetensors"
    save_model_weights(model, path)
    assert s2lora_ranks(tmp_path) == ranks == s2lora_ranks(model.state_dict())
    with pytest.raises(DataError, match="S2-LoRA"):
        s2lora_ranks(tiny("lora"))


def test_adalora_ranks_and_grid(tmp_path: Path) -> None:
    model = adalora_model()
    ranks = adalora_ranks(model)
    assert set(m for _, m in ranks) == {
        "enc_sam.q",
        "enc_sam.v",
        "dec_sam.q",
        "dec_sam.v",
        "dec_cam.q",
        "dec_cam.v",
    }
    assert ranks[(1, "enc_sam.v")] == 5 and ranks[(0, "dec_sam.q")] == 1
    assert sum(ranks.values()) == 6
    save_model_weights(model, tmp_path / "ada.safetensors")
    assert adalora_ranks(tmp_path / "ada.safetensors") == ranks
    grid = rank_grid(ranks, "enc_sam")  # rows q, v, k, o
    assert grid.shape == (4, 2)
    assert grid[1, 1] == 5 and grid[0, 0] == 0
    assert all(math.isnan(x) for x in grid[2:].ravel())  # k, o not adapted by AdaLoRA
    assert rank_grid(s2lora_ranks(s2lora_model()), "enc_ffm").tolist() == [[0, 0], [2, 0]]
    with pytest.raises(ConfigError):
        rank_grid(ranks, "encoder")
    out = plot_rank_heatmaps(
        {"S2-LoRA": s2lora_ranks(s2lora_model()), "AdaLoRA": ranks}, tmp_path / "ranks.png", 8
    )
    assert is_png(out)


def no_training(model, round_index, work_dir, after_step):
    return {"global_step": 0}


def test_alive_ratio_plot_from_imp_history(tmp_path: Path) -> None:
    run_imp(tiny("pepsi", train_base=True), no_training, tmp_path, target_sparsity=0.19)
    history = load_history(tmp_path / "imp-history.json")
    groups, rounds, alive = alive_table(history)
    assert rounds == [0, 1, 2]
    assert groups[:3] == ["encoder_conv1", "encoder_conv2", "encoder_layers"]
    assert (alive[:, 0] == 100).all()
    layer_norm = groups.index("decoder_layer_norm")
    assert (alive[layer_norm] == 100).all()
    assert alive[groups.index("decoder_layers"), 2] < alive[groups.index("decoder_layers"), 1]
    assert is_png(plot_alive_ratio(history, tmp_path / "fig3b.png"))
    (tmp_path / "bad.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(DataError, match="not an IMP history"):
        load_history(tmp_path / "bad.json")


def decode_dir(root: Path, errors: dict[str, int], metric: str = "cer") -> Path:
    """Scores of one 10-character utterance per language with ``errors[lang]`` substitutions."""
    ref = "abcdefghij"
    utts = [
        Utterance(f"{lang}-0", ref, "".join("x" if i < n else c for i, c in enumerate(ref)), lang)
        for lang, n in errors.items()
    ]
    write_error_rate_files(
        root, "test", score_utterances(utts, metric), dict.fromkeys(errors, "basic")
    )
    return root


def test_error_vs_prune_curve_and_cli(tmp_path: Path) -> None:
    errors = {0.0: {"ko": 1, "ja": 1}, 0.3: {"ko": 1, "ja": 3}, 0.5: {"ko": 2, "ja": 6}}
    points = {s: decode_dir(tmp_path / f"p{s}", e) for s, e in errors.items()}
    scores = load_prune_scores(points, ["test"])
    series = error_series(scores)
    assert series["test"][0] == "cer"
    assert series["test"][1] == [0.0, 30.0, 50.0]
    assert series["test"][2] == pytest.approx([10.0, 20.0, 40.0])  # macro average
    per_lang = error_series(scores, per_language=True)
    assert per_lang["test ja"][2] == pytest.approx([10.0, 30.0, 60.0])
    assert "| 30 | 20.00 |" in error_table(scores)
    assert is_png(plot_error_vs_prune(scores, tmp_path / "fig4.png", per_language=True))
    with pytest.raises(ConfigError):
        load_prune_scores({1.5: points[0.0]}, ["test"])

    spec = [f"--point={100 * s:g}={d}" for s, d in points.items()]
    out, table = tmp_path / "cli" / "fig4.png", tmp_path / "cli" / "fig4.md"
    assert (
        cli.main(["prune-curve", *spec, "--set", "test", "--out", str(out), "--table", str(table)])
        == 0
    )
    assert is_png(out) and "| 50 | 40.00 |" in table.read_text()
    with pytest.raises(ConfigError, match="PCT=DECODE_DIR"):
        cli.main(["prune-curve", "--point", "120=x", "--set", "test", "--out", str(out)])
    with pytest.raises(DataError, match="scores-dev.json"):
        cli.main(["prune-curve", *spec, "--set", "dev", "--out", str(out)])


def test_cli_alive_and_ranks(tmp_path: Path) -> None:
    run_imp(tiny("pepsi", train_base=True), no_training, tmp_path / "imp", target_sparsity=0.1)
    assert (
        cli.main(["alive", "--history", str(tmp_path / "imp"), "--out", str(tmp_path / "a.png")])
        == 0
    )
    assert is_png(tmp_path / "a.png")
    save_model_weights(s2lora_model(), tmp_path / "s2.safetensors")
    save_model_weights(adalora_model(), tmp_path / "ada.safetensors")
    args = ["ranks", "--s2lora", str(tmp_path / "s2.safetensors"), "--adalora"]
    args += [str(tmp_path / "ada.safetensors"), "--out", str(tmp_path / "r.png")]
    assert cli.main([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert is_png(tmp_path / "r.png")
    data = json.loads((tmp_path / "r.json").read_text())
    assert {"layer": 1, "matrix": "dec_cam.v", "rank": 4} in data["S2-LoRA"]
    assert {"layer": 1, "matrix": "enc_sam.v", "rank": 5} in data["AdaLoRA"]
    with pytest.raises(ConfigError, match="--s2lora"):
        cli.main(["ranks", "--out", str(tmp_path / "r.png")])
