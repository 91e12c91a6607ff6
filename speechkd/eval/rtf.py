"""DistillW2V2 model sizes and CPU speed (the paper's Table 1): parameters and real-time factor.

Every model is built from its architecture file (``conf/distill_w2v2/arch``) with random weights
and timed on random audio with ``torch.set_num_threads(threads)`` (1: the paper's single-thread
CPU RTF), in eval mode under ``torch.inference_mode``. RTF = processing time / audio duration
(the median over ``repeats`` runs after one warm-up run); processing time is elapsed time
(``clock="wall"``) or the process's CPU time (``clock="cpu"``, which other jobs on a shared host
disturb far less; with one thread both agree on an idle machine).

Parameter conventions (both reported):

* ``params`` — our model: encoder (CNN, projection, positional convolution, blocks) and the
  prediction layer with ``pred_dim`` = encoder dim and ``num_outputs`` units, no quantiser;
* ``params_w2v2`` — fairseq's stock pre-training ``Wav2Vec2Model`` of the same dimensions
  (with quantiser, ``project_q`` and ``final_proj``; ``final_dim`` 768 for the 1024-dim large
  configuration, 256 otherwise, as fairseq's wav2vec2 large/base configs).

With ``streaming`` the SS variant (per-frame LayerNorm CNN, causal positional convolution,
``chunk_size`` 48 / ``history_size`` 600 frames) is streamed chunk by chunk: its RTF and the mean
per-chunk latency on a short input (``audio_seconds``) and over the last ``audio_seconds`` of a
long one (``long_seconds``), which stays flat because the attention history is bounded.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from speechkd.errors import ConfigError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
TABLE1_MODELS = ("T1", "S1", "S2", "S3", "S4", "S5")
TINY_MODELS = ("tiny_teacher", "tiny_student")
# DistillW2V2 paper, Table 1: parameters and single-thread CPU RTF (Intel 8255C).
PAPER_TABLE1: dict[str, tuple[float, float]] = {
    "T1": (317e6, 0.889),
    "S1": (95e6, 0.357),
    "S2": (44e6, 0.196),
    "S3": (27e6, 0.135),
    "S4": (23e6, 0.121),
    "S5": (22e6, 0.111),
}
TABLE_HEADER = [
    "Model",
    "CNN ch",
    "Enc dim",
    "FFN dim",
    "Blocks",
    "Params (ours)",
    "Params (fairseq w2v2)",
    "Params (paper)",
    "diff % (ours)",
    "diff % (w2v2)",
    "RTF",
    "RTF (paper)",
    "speed-up vs T1",
    "RTF streaming",
    "chunk ms (short)",
    "chunk ms (long)",
]


@dataclass
class RtfRow:
    """One model's sizes and measured speed (None where not measured)."""

    model: str
    cnn_channels: int
    encoder_dim: int
    ffn_dim: int
    blocks: int
    params: int
    params_w2v2: int
    params_paper: float | None = None
    rtf_paper: float | None = None
    rtf: float | None = None
    rtf_streaming: float | None = None
    chunk_ms_short: float | None = None
    chunk_ms_long: float | None = None

    def diff_pct(self, count: int) -> float | None:
        """Relative difference of ``count`` to the paper's parameter count, in percent."""
        if self.params_paper is None:
            return None
        return 100.0 * (count - self.params_paper) / self.params_paper

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["diff_pct"] = self.diff_pct(self.params)
        out["diff_pct_w2v2"] = self.diff_pct(self.params_w2v2)
        return out


def expand_models(spec: str | Sequence[str]) -> list[str]:
    """Model names from ``"T1,S5"``; ``table`` = T1..S5, ``tiny`` = the mini-recipe pair."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        out.extend(TABLE1_MODELS if name == "table" else TINY_MODELS if name == "tiny" else [name])
    if not out:
        raise ConfigError(f"--models: no model named in {spec!r}")
    return out


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def w2v2_pretraining_params(cfg: Any) -> int:
    """Parameters of fairseq's stock ``Wav2Vec2Model`` with the dimensions of ``cfg``."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    from speechkd.fairseq_plugin.models.w2v2_student import conv_feature_layers

    layers = conv_feature_layers(cfg.conv_first_channels, cfg.conv_channels)
    dim = int(cfg.encoder_embed_dim)
    w2v2_cfg = Wav2Vec2Config(
        conv_feature_layers=repr(layers),
        encoder_embed_dim=dim,
        encoder_ffn_embed_dim=int(cfg.encoder_ffn_embed_dim),
        encoder_layers=int(cfg.encoder_layers),
        encoder_attention_heads=int(cfg.encoder_attention_heads) or dim // 64,
        conv_pos=int(cfg.conv_pos),
        conv_pos_groups=int(cfg.conv_pos_groups),
        final_dim=768 if dim >= 1024 else 256,
    )
    with warnings.catch_warnings():  # fairseq's positional conv uses the old weight_norm API
        warnings.simplefilter("ignore", FutureWarning)
        return count_parameters(Wav2Vec2Model(w2v2_cfg))


def get_clock(name: str) -> Callable[[], float]:
    """``wall`` (elapsed time) or ``cpu`` (this process's CPU time: steadier on a shared host)."""
    if name not in CLOCKS:
        raise ConfigError(f"--clock: expected one of {sorted(CLOCKS)}, got {name!r}")
    return CLOCKS[name]


def _median_seconds(fn: Callable[[], Any], repeats: int, clock: str) -> float:
    now = get_clock(clock)
    times = []
    for _ in range(max(repeats, 1)):
        start = now()
        fn()
        times.append(now() - start)
    return statistics.median(times)


def time_forward(
    model: torch.nn.Module, audio: torch.Tensor, repeats: int, clock: str = "wall"
) -> float:
    """Median seconds of a full-utterance forward (after one warm-up run)."""
    with torch.inference_mode():
        model(audio)
        return _median_seconds(lambda: model(audio), repeats, clock)


def stream_chunk_times(
    model: torch.nn.Module, audio: torch.Tensor, clock: str = "wall"
) -> tuple[float, list[float]]:
    """(total seconds, seconds of every call that emitted a chunk) of streaming ``audio`` [1,S]
    in pieces of one chunk (the first piece carries the CNN window's extra samples)."""
    from speechkd.fairseq_plugin.models.streaming_encoder import StreamingEncoder

    now = get_clock(clock)
    enc = StreamingEncoder(model)
    first = enc.chunk_samples + enc.window - enc.stride
    bounds = [0, *range(first, audio.shape[1], enc.chunk_samples), audio.shape[1]]
    state = enc.init_state(audio.shape[0])
    chunk_times: list[float] = []
    total = 0.0
    with torch.inference_mode():
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            final = hi == audio.shape[1]
            start = now()
            logits, state = enc.forward_chunk(audio[:, lo:hi], state, final=final)
            elapsed = now() - start
            total += elapsed
            if logits.shape[1] == enc.chunk:
                chunk_times.append(elapsed)
        if not state.finished:
            start = now()
            enc.forward_chunk(audio[:, :0], state, final=True)
            total += now() - start
    return total, chunk_times


def benchmark_model(
    arch: str,
    audio_seconds: float = 10.0,
    repeats: int = 3,
    streaming: bool = False,
    long_seconds: float = 30.0,
    num_outputs: int = 32,
    timing: bool = True,
    seed: int = 0,
    clock: str = "wall",
) -> RtfRow:
    """Sizes of ``arch`` and, with ``timing``, its RTF (and streaming figures)."""
    from speechkd.fairseq_plugin.models.w2v2_student import (
        W2V2Student,
        load_arch,
        receptive_field,
    )

    cfg = load_arch(arch)
    torch.manual_seed(seed)
    model = W2V2Student(cfg, num_outputs).eval()
    name = Path(arch).stem
    paper = PAPER_TABLE1.get(name)
    row = RtfRow(
        model=name,
        cnn_channels=int(cfg.conv_first_channels),
        encoder_dim=int(cfg.encoder_embed_dim),
        ffn_dim=int(cfg.encoder_ffn_embed_dim),
        blocks=int(cfg.encoder_layers),
        params=count_parameters(model),
        params_w2v2=w2v2_pretraining_params(cfg),
        params_paper=paper[0] if paper else None,
        rtf_paper=paper[1] if paper else None,
    )
    if not timing:
        return row
    generator = torch.Generator().manual_seed(seed)
    num_samples = int(round(audio_seconds * SAMPLE_RATE))
    audio = torch.randn(1, num_samples, generator=generator)
    row.rtf = time_forward(model, audio, repeats, clock) / audio_seconds
    logger.info("%s: %d parameters, RTF %.3f", name, row.params, row.rtf)
    if streaming:
        del model
        torch.manual_seed(seed)
        ss = W2V2Student(load_arch(arch, "ss"), num_outputs).eval()
        stream_chunk_times(ss, audio[:, : min(num_samples, 2 * SAMPLE_RATE)], clock)  # warm-up
        runs = [stream_chunk_times(ss, audio, clock) for _ in range(max(repeats, 1))]
        row.rtf_streaming = statistics.median(t for t, _ in runs) / audio_seconds
        means = [statistics.mean(c) for _, c in runs if c]
        row.chunk_ms_short = 1000 * statistics.median(means) if means else None
        long_audio = torch.randn(1, int(round(long_seconds * SAMPLE_RATE)), generator=generator)
        _, long_times = stream_chunk_times(ss, long_audio, clock)
        chunk_seconds = ss.chunk_size * receptive_field(ss.conv_layers_spec)[1] / SAMPLE_RATE
        tail = max(1, math.ceil(audio_seconds / chunk_seconds))
        row.chunk_ms_long = 1000 * statistics.mean(long_times[-tail:]) if long_times else None
        logger.info(
            "%s streaming: RTF %.3f, ms/chunk %s (%g s input), %s (%g s input)",
            name,
            row.rtf_streaming,
            _f(row.chunk_ms_short, ".1f"),
            audio_seconds,
            _f(row.chunk_ms_long, ".1f"),
            long_seconds,
        )
    return row


def run_benchmark(
    models: str | Sequence[str] = "table",
    audio_seconds: float = 10.0,
    repeats: int = 3,
    streaming: bool = False,
    long_seconds: float = 30.0,
    num_outputs: int = 32,
    threads: int = 1,
    timing: bool = True,
    seed: int = 0,
    clock: str = "wall",
) -> dict[str, Any]:
    """The table as a JSON-able dict: ``environment``, ``settings`` and ``rows``."""
    from speechkd.eval.env import cpu_model

    if audio_seconds < 0.1 or (streaming and long_seconds < audio_seconds):
        raise ConfigError(
            f"--audio-seconds {audio_seconds} / --long-seconds {long_seconds}: need audio "
            ">= 0.1 s and long >= audio"
        )
    if threads < 1:
        raise ConfigError(f"--threads: expected >= 1, got {threads}")
    get_clock(clock)
    names = expand_models(models)
    settings = {
        "models": names,
        "audio_seconds": audio_seconds,
        "repeats": repeats,
        "streaming": streaming,
        "long_seconds": long_seconds if streaming else None,
        "num_outputs": num_outputs,
        "threads": threads,
        "timing": timing,
        "seed": seed,
        "clock": clock,
    }
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = [
            benchmark_model(
                name,
                audio_seconds,
                repeats,
                streaming,
                long_seconds,
                num_outputs,
                timing,
                seed,
                clock,
            )
            for name in names
        ]
    finally:
        torch.set_num_threads(previous)
    environment = {"cpu": cpu_model(), "torch": torch.__version__, "threads": threads}
    return {
        "environment": environment,
        "settings": settings,
        "rows": [row.to_json() for row in rows],
    }


def _m(count: float | None) -> str:
    return "-" if count is None else f"{count / 1e6:.1f}M"


def _f(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_rows(rows: Iterable[dict[str, Any]]) -> list[list[str]]:
    """Table cells (strings) of the JSON rows, in :data:`TABLE_HEADER` order."""
    rows = list(rows)
    t1 = next((r for r in rows if r["model"] == "T1" and r["rtf"]), None)
    cells = []
    for r in rows:
        speed_up = t1["rtf"] / r["rtf"] if t1 and r["rtf"] else None
        cells.append(
            [
                r["model"],
                str(r["cnn_channels"]),
                str(r["encoder_dim"]),
                str(r["ffn_dim"]),
                str(r["blocks"]),
                _m(r["params"]),
                _m(r["params_w2v2"]),
                _m(r["params_paper"]),
                _f(r["diff_pct"], "+.1f"),
                _f(r["diff_pct_w2v2"], "+.1f"),
                _f(r["rtf"], ".3f"),
                _f(r["rtf_paper"], ".3f"),
                _f(speed_up, ".1f") + ("x" if speed_up else ""),
                _f(r["rtf_streaming"], ".3f"),
                _f(r["chunk_ms_short"], ".1f"),
                _f(r["chunk_ms_long"], ".1f"),
            ]
        )
    return cells


def render_table(payload: dict[str, Any]) -> str:
    """Markdown table like the paper's Table 1, with the environment and the conventions."""
    header = TABLE_HEADER
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(payload["rows"])]
    s, env = payload["settings"], payload["environment"]
    notes = [
        "",
        f"CPU: {env['cpu']}; torch {env['torch']}; {env['threads']} thread(s); RTF = processing "
        f"time ({s.get('clock', 'wall')} clock) / audio duration on {s['audio_seconds']:g} s of "
        f"random audio (median of {s['repeats']} after a warm-up).",
        f"Params (ours): encoder + prediction layer ({s['num_outputs']} outputs, pred_dim = "
        "encoder dim), no quantiser. Params (fairseq w2v2): fairseq's pre-training "
        "Wav2Vec2Model of the same dimensions (quantiser, project_q, final_proj; final_dim 768 "
        "for dim 1024, else 256). diff % is relative to the paper.",
    ]
    if s["streaming"]:
        notes.append(
            "Streaming: SS variant (LayerNorm CNN, causal positional conv, history 600 / chunk "
            f"48 frames); chunk ms = mean compute per 0.96 s chunk on a {s['audio_seconds']:g} s "
            f"input (short) and over the last {s['audio_seconds']:g} s of a "
            f"{s['long_seconds']:g} s input (long)."
        )
    return "\n".join(lines + notes)
