"""Chunk-by-chunk inference of a :class:`W2V2Student` (chunk transformer, Transformer-XL style).

Audio arrives in pieces of any size; whenever ``chunk_size`` frames are computable (a frame needs
a 400-sample window, hop 320, so ``chunk_size * 320 + 80`` samples) the chunk is encoded:

* the CNN runs on the chunk's samples only (per-frame LayerNorm extractor: no state but the
  80-sample overlap kept in the sample buffer);
* the causal positional convolution sees the cached last ``conv_pos - 1`` frames of its input;
* each block attends the cached keys/values of at most ``history_size`` earlier frames plus the
  current chunk, then the cache keeps the last ``history_size`` frames of them.

The result equals :meth:`W2V2Student.forward` with the chunk mask, and the work per chunk is
bounded by ``history_size`` whatever the utterance length. ``final=True`` flushes the last,
shorter chunk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.models.w2v2_student import W2V2Student, receptive_field


@dataclass
class StreamState:
    """What a stream carries between chunks."""

    samples: torch.Tensor  # [B, n] buffered audio, starting at the next frame's window
    pos_context: torch.Tensor  # [B, conv_pos - 1, D] last inputs of the positional conv
    kv: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    frames: int = 0  # frames emitted so far
    finished: bool = False


class StreamingEncoder:
    """Stateful chunk-streaming wrapper; needs ``extractor_mode: layer_norm``, a causal
    positional convolution and a finite ``chunk_size`` (the SS variant)."""

    def __init__(self, model: W2V2Student) -> None:
        cfg = model.cfg
        if cfg.extractor_mode != "layer_norm":
            raise ConfigError(
                "extractor_mode: streaming needs layer_norm (group_norm normalises over the "
                f"whole utterance), got {cfg.extractor_mode}"
            )
        if not cfg.causal_pos_conv:
            raise ConfigError("causal_pos_conv: streaming needs a causal positional convolution")
        if model.chunk_size is None:
            raise ConfigError("chunk_size: streaming needs a finite chunk size (frames)")
        self.model = model
        self.chunk = model.chunk_size
        self.history = model.history_size
        self.window, self.stride = receptive_field(model.conv_layers_spec)
        self.chunk_samples = self.chunk * self.stride
        self.pos_context = int(cfg.conv_pos) - 1

    def init_state(
        self, batch_size: int = 1, device: torch.device | str | None = None
    ) -> StreamState:
        """An empty stream (zero left context, as the full forward's left padding)."""
        weight = self.model.output_proj.weight
        device = weight.device if device is None else device
        dim = int(self.model.cfg.encoder_embed_dim)
        return StreamState(
            samples=torch.zeros(batch_size, 0, dtype=weight.dtype, device=device),
            pos_context=torch.zeros(
                batch_size, self.pos_context, dim, dtype=weight.dtype, device=device
            ),
            kv=[None] * len(self.model.layers),
        )

    def frames_in(self, num_samples: int) -> int:
        """Frames computable from ``num_samples`` buffered samples."""
        return 0 if num_samples < self.window else (num_samples - self.window) // self.stride + 1

    @torch.no_grad()
    def forward_chunk(
        self, samples: torch.Tensor, state: StreamState, final: bool = False
    ) -> tuple[torch.Tensor, StreamState]:
        """Append ``samples`` [B,n] to the stream; logits [B,t,V] of every chunk completed (t a
        multiple of ``chunk_size``; with ``final`` the remaining frames too) and the new state."""
        if state.finished:
            raise ConfigError("forward_chunk: the stream was already finished (final=True)")
        if samples.dim() != 2 or samples.shape[0] != state.samples.shape[0]:
            raise ConfigError(
                f"samples: expected [B={state.samples.shape[0]}, n], got {tuple(samples.shape)}"
            )
        buffer = torch.cat([state.samples, samples.to(state.samples.dtype)], dim=1)
        outputs = []
        while self.frames_in(buffer.shape[1]) >= self.chunk:
            span = self.chunk_samples + self.window - self.stride
            outputs.append(self._encode(buffer[:, :span], self.chunk, state))
            buffer = buffer[:, self.chunk_samples :]
        if final:
            rest = self.frames_in(buffer.shape[1])
            if rest > 0:
                span = (rest - 1) * self.stride + self.window
                outputs.append(self._encode(buffer[:, :span], rest, state))
            buffer = buffer[:, :0]
            state.finished = True
        state.samples = buffer
        if outputs:
            return torch.cat(outputs, dim=1), state
        vocab = self.model.output_proj.out_features
        return buffer.new_zeros(buffer.shape[0], 0, vocab), state

    def _encode(self, window: torch.Tensor, num_frames: int, state: StreamState) -> torch.Tensor:
        """Logits [B,num_frames,V] of one chunk from its samples; updates the caches."""
        model = self.model
        x = model.cnn_features(window)
        assert x.shape[1] == num_frames, (x.shape, num_frames)
        context = torch.cat([state.pos_context, x], dim=1)
        pos = model.causal_pos_embedding(context)
        if self.pos_context:
            state.pos_context = context[:, -self.pos_context :]
        x = x + pos
        if not model.layer_norm_first:
            x = model.encoder_layer_norm(x)
        for i, layer in enumerate(model.layers):
            x, (k, v) = layer(x, past=state.kv[i])
            if self.history is not None:
                start = max(k.shape[2] - self.history, 0)
                k, v = k[:, :, start:], v[:, :, start:]
            state.kv[i] = (k, v)
        if model.layer_norm_first:
            x = model.encoder_layer_norm(x)
        state.frames += num_frames
        return model.predict(x)

    def stream(self, audio: torch.Tensor | Iterable[torch.Tensor]) -> torch.Tensor:
        """Logits [B,T,V] of a whole stream: ``audio`` [B,S] (fed ``chunk_size`` frames of
        samples at a time) or an iterable of [B,n] pieces."""
        if isinstance(audio, torch.Tensor):
            if audio.dim() != 2:
                raise ConfigError(f"audio: expected [B, S], got {tuple(audio.shape)}")
            pieces: Iterable[torch.Tensor] = audio.split(self.chunk_samples, dim=1)
            batch = audio.shape[0]
        else:
            pieces = list(audio)
            if not pieces:
                raise ConfigError("audio: no pieces to stream")
            batch = pieces[0].shape[0]
        state = self.init_state(batch)
        outputs = []
        for piece in pieces:
            logits, state = self.forward_chunk(piece, state)
            outputs.append(logits)
        logits, state = self.forward_chunk(state.samples[:, :0], state, final=True)
        outputs.append(logits)
        return torch.cat(outputs, dim=1)
