"""Figures of the PEPSI and S2-LoRA papers, from files other stages wrote.

* :func:`plot_alive_ratio`: alive percentage of each layer group per IMP iteration (PEPSI
  Fig. 3b), from ``imp-history.json`` of ``speechkd.whisper.imp``;
* :func:`plot_error_vs_prune`: CER/WER versus prune percentage (PEPSI Fig. 4; with the per-round
  models also Fig. 3a), from ``scores-<set>.json`` of one decode directory per pruning level;
* :func:`plot_rank_heatmaps`: the rank of every adapted matrix per layer, rows q, v, k, o
  (attention) and fc1, fc2 (FFN), S2-LoRA beside AdaLoRA (S2-LoRA Fig. 3). The rank of an S2-LoRA
  matrix is its number of coefficients |s_k| ≥ 1e-4 (:func:`s2lora_ranks`), of an AdaLoRA matrix
  its number of non-zero singular values ``lora_E`` after the budget allocation
  (:func:`adalora_ranks`). Both read a model, a state dict or a safetensors checkpoint (the
  trainer's ``checkpoints/epoch-N/model.safetensors``: exported models have the adapters merged);
  :func:`load_ranks` reads the ranks back from the JSON written beside the heatmap and
  :func:`render_rank_table` gives their numbers (mean rank and rank-0 layers per matrix).

PNGs are drawn with matplotlib's Agg backend and written atomically.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.eval.report_kit import (
    DASH,
    SetScores,
    load_json_object,
    load_set_scores,
    md_table,
    pyplot,
    save_png,
)
from speechkd.utils.atomic import atomic_write_text
from speechkd.whisper.pruning import LAYER_GROUPS
from speechkd.whisper.s2lora import RANK_THRESHOLD, ROW_ORDER, S2LORA_GROUPS, parse_target

RankKey = tuple[int, str]  # (layer index, "<module group>.<matrix>"), e.g. (3, "dec_cam.v")
RankSource = nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike

SHORT_NAMES = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "out_proj": "o",
    "fc1": "fc1",
    "fc2": "fc2",
}
GROUP_TITLES = {
    "enc_sam": "Encoder SAM",
    "enc_ffm": "Encoder FFM",
    "dec_sam": "Decoder SAM",
    "dec_cam": "Decoder CAM",
    "dec_ffm": "Decoder FFM",
}
LAYER_GROUP_TITLES = {
    "encoder_conv1": "Enc. Conv 1",
    "encoder_conv2": "Enc. Conv 2",
    "encoder_layers": "Enc. Blocks",
    "encoder_layer_norm": "Enc. LayerNorm",
    "decoder_token_embedding": "Dec. Token Emb.",
    "decoder_position_embedding": "Dec. Pos. Emb.",
    "decoder_layers": "Dec. Blocks",
    "decoder_layer_norm": "Dec. LayerNorm",
}
_S2LORA_KEY = re.compile(r"^(.*)\.s2lora_s$")
_ADALORA_KEY = re.compile(r"^(.*)\.lora_E\.[^.]+$")


# ---------------------------------------------------------------------------------------------
# Ranks
# ---------------------------------------------------------------------------------------------


def _checkpoint_file(path: Path) -> Path:
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found (a safetensors file or a checkpoint dir)")
    return path


def _matching_tensors(
    source: RankSource, pattern: re.Pattern
) -> Iterator[tuple[str, torch.Tensor]]:
    """(module name, tensor) of every parameter whose name matches ``pattern`` (group 1)."""
    if isinstance(source, nn.Module):
        items: Any = source.named_parameters()
    elif isinstance(source, Mapping):
        items = source.items()
    else:
        from safetensors import safe_open

        path = _checkpoint_file(Path(source))
        with safe_open(str(path), framework="pt") as f:
            keys = [k for k in f.keys() if pattern.match(k)]
            items = [(k, f.get_tensor(k)) for k in keys]
    for name, tensor in items:
        match = pattern.match(name)
        if match:
            yield match.group(1), tensor.detach()


def _rank_key(module_name: str) -> RankKey | None:
    target = parse_target(module_name)
    if target is None:
        return None
    return target.layer, f"{target.group}.{SHORT_NAMES[target.projection]}"


def s2lora_ranks(model: RankSource, threshold: float = RANK_THRESHOLD) -> dict[RankKey, int]:
    """Rank of every S2-LoRA matrix: its number of coefficients with |s_k| ≥ ``threshold``.

    Keys are ``(layer, "<group>.<matrix>")``: group in enc_sam, enc_ffm, dec_sam, dec_cam,
    dec_ffm; matrix in q, k, v, o, fc1, fc2.
    """
    ranks = {}
    for module, s in _matching_tensors(model, _S2LORA_KEY):
        key = _rank_key(module)
        if key is not None:
            ranks[key] = int((s.abs() >= threshold).sum())
    if not ranks:
        raise DataError("no S2-LoRA coefficient vectors (…s2lora_s) found")
    return ranks


def adalora_ranks(model: RankSource) -> dict[RankKey, int]:
    """Rank of every AdaLoRA matrix: its non-zero singular values ``lora_E`` (pruned to zero
    by peft's budget allocation). Keys as in :func:`s2lora_ranks`."""
    ranks = {}
    for module, values in _matching_tensors(model, _ADALORA_KEY):
        key = _rank_key(module.removeprefix("base_model.model."))
        if key is not None:
            ranks[key] = int((values != 0).sum())
    if not ranks:
        raise DataError("no AdaLoRA singular values (…lora_E.<adapter>) found")
    return ranks


def rank_grid(ranks: Mapping[RankKey, int], group: str, n_layers: int | None = None) -> np.ndarray:
    """The heatmap matrix of a module group: rows q, v, k, o (attention) or fc1, fc2 (FFN),
    columns layers; NaN where the matrix is not adapted."""
    if group not in S2LORA_GROUPS:
        raise ConfigError(f"module group {group!r} unknown; choose from {list(S2LORA_GROUPS)}")
    rows = _rows(group)
    layers = [layer for layer, matrix in ranks if matrix.startswith(group + ".")]
    if n_layers is None:
        n_layers = 1 + max(layers, default=-1)
    grid = np.full((len(rows), n_layers), np.nan)
    for (layer, matrix), rank in ranks.items():
        g, _, short = matrix.partition(".")
        if g == group and short in rows and layer < n_layers:
            grid[rows.index(short), layer] = rank
    return grid


def _rows(group: str) -> list[str]:
    projections = ROW_ORDER["ffn" if group.endswith("ffm") else "attention"]
    return [SHORT_NAMES[p] for p in projections]


def plot_rank_heatmaps(
    panels: Mapping[str, Mapping[RankKey, int]],
    out: str | os.PathLike,
    max_rank: int | None = None,
) -> Path:
    """One row per module group, one column per method (e.g. ``{"S2-LoRA": …, "AdaLoRA": …}``);
    cells hold the rank, grey cells are matrices the method does not adapt."""
    if not panels:
        raise ConfigError("no rank distributions to plot")
    groups = [
        g
        for g in S2LORA_GROUPS
        if any(m.startswith(g + ".") for r in panels.values() for _, m in r)
    ]
    if not groups:
        raise DataError("the rank distributions name no Whisper module group")
    if max_rank is None:
        max_rank = max(max(r.values(), default=0) for r in panels.values()) or 1
    n_layers = {
        g: 1 + max(layer for r in panels.values() for layer, m in r if m.startswith(g + "."))
        for g in groups
    }
    plt = pyplot()

    widest = max(n_layers.values())
    fig, axes = plt.subplots(
        len(groups),
        len(panels),
        figsize=(max(4.0, 0.32 * widest + 1.5) * len(panels), 1.0 + 2.0 * len(groups)),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap("YlGnBu").with_extremes(bad="lightgrey")
    image = None
    for row, group in enumerate(groups):
        labels = [f"W_{r}" for r in _rows(group)]
        for col, (method, ranks) in enumerate(panels.items()):
            ax = axes[row][col]
            grid = rank_grid(ranks, group, n_layers[group])
            image = ax.imshow(
                np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=max_rank, aspect="auto"
            )
            for (i, j), value in np.ndenumerate(grid):
                if not math.isnan(value):
                    color = "white" if value > 0.6 * max_rank else "black"
                    ax.text(
                        j, i, str(int(value)), ha="center", va="center", fontsize=7, color=color
                    )
            ax.set_yticks(range(len(labels)), labels)
            ax.set_xticks(range(n_layers[group]))
            ax.tick_params(labelsize=7)
            ax.set_title(f"{method}: {GROUP_TITLES[group]}", fontsize=9)
            if row == len(groups) - 1:
                ax.set_xlabel("layer")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="rank")
    return save_png(fig, out)


# ---------------------------------------------------------------------------------------------
# IMP: alive ratio per layer group and iteration
# ---------------------------------------------------------------------------------------------


def alive_table(history: Mapping[str, Any]) -> tuple[list[str], list[int], np.ndarray]:
    """(groups, rounds, alive %) with ``alive[g, r]`` for group g after round r (round 0:
    before pruning). PEPSI's eight groups in its order; a parameter outside them (the fixed
    sinusoidal encoder positions: "other") is shown only if it was pruned."""
    rounds = history["rounds"]
    present = {g for r in rounds for g in r["alive_fraction_by_group"]}
    extra = sorted(
        g
        for g in present - set(LAYER_GROUPS)
        if any(r["alive_fraction_by_group"].get(g, 1.0) < 1.0 for r in rounds)
    )
    groups = [g for g in LAYER_GROUPS if g in present] + extra
    alive = np.array(
        [[100.0 * r["alive_fraction_by_group"].get(g, math.nan) for r in rounds] for g in groups]
    )
    return groups, [int(r["round"]) for r in rounds], alive


def plot_alive_ratio(history: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """PEPSI Fig. 3b: alive parameters (%) per layer group, one bar per IMP iteration."""
    groups, rounds, alive = alive_table(history)
    sparsity = {int(r["round"]): r["sparsity"] for r in history["rounds"]}
    plt = pyplot()

    n = len(rounds)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(groups) + 0.12 * n * len(groups)), 4.5))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, n))
    for k, rnd in enumerate(rounds):
        ax.bar(
            [i + (k - (n - 1) / 2) * width for i in range(len(groups))],
            alive[:, k],
            width,
            color=colors[k],
            label=f"iter {rnd} ({100 * sparsity[rnd]:.1f}% pruned)",
        )
    ax.set_xticks(range(len(groups)), [LAYER_GROUP_TITLES.get(g, g) for g in groups])
    ax.tick_params(axis="x", labelsize=8, rotation=30)
    ax.set_ylabel("alive parameters (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize="x-small", ncol=2 if n > 6 else 1, loc="lower left")
    return save_png(fig, out)


# ---------------------------------------------------------------------------------------------
# Error rate versus prune percentage
# ---------------------------------------------------------------------------------------------


def load_prune_scores(
    points: Mapping[float, str | os.PathLike], sets: Sequence[str]
) -> dict[str, dict[float, SetScores]]:
    """``{set: {sparsity: SetScores}}`` from one decode directory per sparsity in [0, 1)."""
    if not points:
        raise ConfigError("no pruning levels given")
    if not sets:
        raise ConfigError("no test sets given")
    bad = [s for s in points if not 0.0 <= s < 1.0]
    if bad:
        raise ConfigError(f"sparsities must lie in [0, 1), got {bad}")
    return {
        set_name: {s: load_set_scores(points[s], set_name) for s in sorted(points)}
        for set_name in sets
    }


def error_series(
    scores: Mapping[str, Mapping[float, SetScores]], per_language: bool = False
) -> dict[str, tuple[str, list[float], list[float]]]:
    """Series to plot: label → (metric, prune %, error rate %). One per set (its macro average
    over languages), or one per set and language."""
    series: dict[str, tuple[str, list[float], list[float]]] = {}
    for set_name, by_sparsity in scores.items():
        levels = sorted(by_sparsity)
        metric = by_sparsity[levels[0]].metric
        if per_language:
            languages = sorted({lang for s in by_sparsity.values() for lang in s.per_language})
            for lang in languages:
                xs = [100 * p for p in levels if lang in by_sparsity[p].per_language]
                ys = [
                    by_sparsity[p].per_language[lang]
                    for p in levels
                    if lang in by_sparsity[p].per_language
                ]
                series[f"{set_name} {lang}"] = (metric, xs, ys)
        else:
            ys = [by_sparsity[p].average for p in levels]
            series[set_name] = (metric, [100 * p for p in levels], ys)
    return series


def plot_error_vs_prune(
    scores: Mapping[str, Mapping[float, SetScores]],
    out: str | os.PathLike,
    per_language: bool = False,
    title: str | None = None,
) -> Path:
    """PEPSI Fig. 4: error rate (%) against the pruned percentage of all parameters."""
    series = error_series(scores, per_language)
    metrics = {metric for metric, _, _ in series.values()}
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for label, (metric, xs, ys) in series.items():
        shown = label if len(metrics) == 1 else f"{label} ({metric.upper()})"
        ax.plot(xs, [y if math.isfinite(y) else math.nan for y in ys], marker="o", label=shown)
    ax.set_xlabel("pruned (% of all parameters)")
    ax.set_ylabel(f"{metrics.pop().upper()} (%)" if len(metrics) == 1 else "error rate (%)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return save_png(fig, out)


def error_table(scores: Mapping[str, Mapping[float, SetScores]], per_language: bool = False) -> str:
    """A Markdown table of the same numbers: one row per prune percentage."""
    series = error_series(scores, per_language)
    levels = sorted({x for _, xs, _ in series.values() for x in xs})
    header = ["pruned (%)", *(f"{label} {m.upper()}" for label, (m, _, _) in series.items())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for level in levels:
        cells = [f"{level:g}"]
        for _, xs, ys in series.values():
            value = dict(zip(xs, ys, strict=True)).get(level)
            cells.append("–" if value is None else f"{value:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_error_table(scores, out: str | os.PathLike, per_language: bool = False) -> Path:
    atomic_write_text(out, error_table(scores, per_language))
    return Path(out)


RankTable = Mapping[str, Mapping[str, Sequence[int]]]  # {method: {matrix: [rank per layer]}}


def _matrix_order(matrix: str) -> tuple[int, int, str]:
    group, _, short = matrix.partition(".")
    groups = list(S2LORA_GROUPS)
    rows = [SHORT_NAMES[p] for p in ROW_ORDER["ffn" if group.endswith("ffm") else "attention"]]
    position = groups.index(group) if group in groups else len(groups)
    return position, rows.index(short) if short in rows else len(rows), matrix


def load_ranks(path: str | os.PathLike) -> dict[str, dict[str, list[int]]]:
    """``{method: {matrix: [rank per layer]}}`` from the JSON of ``pruning_plots ranks``."""
    path = Path(path)
    out: dict[str, dict[str, list[int]]] = {}
    for method, entries in load_json_object(path, "rank file").items():
        if not isinstance(entries, list):
            raise DataError(f"{path}: {method!r} must be a list of rank entries")
        per_matrix: dict[str, dict[int, int]] = {}
        for entry in entries:
            try:
                layer, matrix, rank = int(entry["layer"]), str(entry["matrix"]), int(entry["rank"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: {method!r}: bad entry {entry!r}") from None
            per_matrix.setdefault(matrix, {})[layer] = rank
        out[method] = {m: [ranks[k] for k in sorted(ranks)] for m, ranks in per_matrix.items()}
    return out


def render_rank_table(ranks: RankTable) -> list[str]:
    """Mean rank over the layers and the layers left at rank 0, per matrix and method."""
    header = ["Matrix"] + [f"{m} {what}" for m in ranks for what in ("mean rank", "rank-0 layers")]
    rows = []
    for matrix in sorted({m for r in ranks.values() for m in r}, key=_matrix_order):
        group, _, short = matrix.partition(".")
        row = [f"{GROUP_TITLES.get(group, group)} W_{short}"]
        for method in ranks:
            values = ranks[method].get(matrix)
            zero = sum(v == 0 for v in values or ())
            row += (
                [f"{sum(values) / len(values):.2f}", f"{zero}/{len(values)}"]
                if values
                else [DASH, DASH]
            )
        rows.append(row)
    return [*md_table(header, rows), ""]


__all__ = [
    "load_ranks",
    "render_rank_table",
    "adalora_ranks",
    "alive_table",
    "error_series",
    "error_table",
    "load_prune_scores",
    "plot_alive_ratio",
    "plot_error_vs_prune",
    "plot_rank_heatmaps",
    "rank_grid",
    "s2lora_ranks",
    "write_error_table",
]
