"""The DistillW2V2 student (speechkd_w2v2_student): fairseq parity, chunk masks, streaming."""

from __future__ import annotations

import warnings

import pytest
import torch

from speechkd.errors import ConfigError
from speechkd.fairseq_plugin.models.streaming_encoder import StreamingEncoder
from speechkd.fairseq_plugin.models.w2v2_student import (
    ARCH_DIR,
    StudentEncoderLayer,
    W2V2Student,
    W2V2StudentConfig,
    build_student,
    conv_output_lengths,
    load_arch,
)

TINY = dict(
    conv_first_channels=32,
    conv_channels=48,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_layers=2,
    encoder_attention_heads=2,
    conv_pos=16,
    conv_pos_groups=4,
)


def tiny(**overrides) -> W2V2Student:
    cfg = W2V2StudentConfig(**{**TINY, **overrides})
    return W2V2Student(cfg, num_outputs=11).eval()


def frames(num_samples: int) -> int:
    return (num_samples - 400) // 320 + 1


def test_forward_interface() -> None:
    model = tiny(pred_dim=40)
    lengths = [8000, 5000]
    source = torch.randn(2, 8000)
    pad = torch.arange(8000)[None, :] >= torch.tensor(lengths)[:, None]
    out = model(source, pad)
    T = frames(8000)
    assert out["logits"].shape == (2, T, 11)
    assert len(out["hidden"]) == 2 and all(h.shape == (2, T, 32) for h in out["hidden"])
    assert out["padding_mask"].dtype == torch.bool
    assert (~out["padding_mask"]).sum(-1).tolist() == [frames(n) for n in lengths]
    assert model.pred_adapter is not None and model.pred_adapter.out_features == 40
    assert model.output_proj.in_features == 40 and len(model.layers) == 2
    assert len(model.feature_extractor.conv_layers) == 7
    no_pad = model(source)["padding_mask"]
    assert no_pad.shape == (2, T) and not no_pad.any()
    log_probs = model.get_normalized_probs(out, log_probs=True)
    assert log_probs.shape == (T, 2, 11)  # time-first, fairseq's CTC convention
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(T, 2), atol=1e-5)
    assert torch.equal(model.get_logits(out), out["logits"].transpose(0, 1))
    assert tiny().pred_adapter is None


def test_conv_output_lengths_rule() -> None:
    model = tiny()
    lengths = torch.tensor([0, 399, 400, 719, 720, 16000, 16001])
    got = conv_output_lengths(lengths, model.conv_layers_spec).tolist()
    assert got == [0, 0, 1, 1, 2, 49, 49]


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_block_matches_fairseq_layer(layer_norm_first: bool) -> None:
    from fairseq.models.wav2vec.wav2vec2 import TransformerSentenceEncoderLayer

    kw = dict(embedding_dim=32, ffn_embedding_dim=64, num_attention_heads=4)
    kw.update(activation_fn="gelu", layer_norm_first=layer_norm_first)
    ours, ref = StudentEncoderLayer(**kw).eval(), TransformerSentenceEncoderLayer(**kw).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 9, 32)
    with torch.no_grad():
        got, _ = ours(x)
        want, _ = ref(x.transpose(0, 1))
    assert torch.allclose(got, want.transpose(0, 1), atol=1e-5)


def fairseq_twin(model: W2V2Student):
    """fairseq's Wav2Vec2Model with the same dimensions and ``model``'s weights."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(
        conv_feature_layers=repr(model.conv_layers_spec),
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_layers=2,
        encoder_attention_heads=2,
        conv_pos=16,
        conv_pos_groups=4,
        final_dim=16,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = Wav2Vec2Model(cfg).eval()
    rename = {"pos_conv.": "encoder.pos_conv.", "layers.": "encoder.layers."}
    rename["encoder_layer_norm."] = "encoder.layer_norm."
    state = {}
    for key, value in model.state_dict().items():
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        state[key] = value
    result = ref.load_state_dict(state, strict=False)
    assert set(result.unexpected_keys) == {"output_proj.weight", "output_proj.bias"}
    assert all(
        k.split(".")[0] in {"quantizer", "project_q", "final_proj", "mask_emb"}
        for k in result.missing_keys
    )
    return ref


def test_encoder_matches_fairseq_wav2vec2() -> None:
    model = tiny()  # group-norm extractor, post-LN, non-causal positional conv, full context
    ref = fairseq_twin(model)
    source = torch.randn(2, 9000)
    pad = torch.arange(9000)[None, :] >= torch.tensor([9000, 6100])[:, None]
    with torch.no_grad():
        ours = model(source, pad)
        want = ref(source, pad, mask=False, features_only=True)
    assert torch.equal(ours["padding_mask"], want["padding_mask"])
    valid = ~ours["padding_mask"]
    assert torch.allclose(ours["hidden"][-1][valid], want["x"][valid], atol=1e-5)


def test_padding_does_not_change_valid_frames() -> None:
    model = tiny(extractor_mode="layer_norm", chunk_size=4, history_size=0)
    long, short = torch.randn(1, 12000), torch.randn(1, 5000)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 7000))])
    pad = torch.zeros(2, 12000, dtype=torch.bool)
    pad[1, 5000:] = True
    with torch.no_grad():
        out = model(batch, pad)
        alone = model(short)
    n = frames(5000)
    assert torch.isfinite(out["logits"]).all()  # fully padded chunks do not produce NaN
    assert torch.allclose(out["logits"][1, :n], alone["logits"][0], atol=1e-5)
    assert out["padding_mask"][1, n:].all() and not out["padding_mask"][1, :n].any()


def test_chunk_mask_limits_what_earlier_chunks_see() -> None:
    kw = dict(extractor_mode="layer_norm", causal_pos_conv=True)
    chunked, full = tiny(chunk_size=5, history_size=3, **kw), tiny(**kw)
    full.load_state_dict(chunked.state_dict())
    a = torch.randn(1, 16000)
    b = a.clone()
    b[:, 9000:] = torch.randn(1, 7000)  # changes frames from 27 on (chunk 5 starts at 25)
    with torch.no_grad():
        ca, cb = chunked(a)["logits"], chunked(b)["logits"]
        fa, fb = full(a)["logits"], full(b)["logits"]
    assert torch.allclose(ca[:, :25], cb[:, :25], atol=1e-6)
    assert not torch.allclose(ca[:, 25:], cb[:, 25:], atol=1e-3)
    assert not torch.allclose(fa[:, :25], fb[:, :25], atol=1e-3)  # full context looks ahead


@pytest.mark.parametrize(
    ("chunk", "history", "layer_norm_first"),
    [(4, 6, False), (4, 6, True), (3, 0, False), (5, None, True), (48, 600, False)],
)
def test_streaming_equals_full_forward(chunk: int, history, layer_norm_first: bool) -> None:
    model = tiny(
        extractor_mode="layer_norm",
        causal_pos_conv=True,
        chunk_size=chunk,
        history_size=history,
        layer_norm_first=layer_norm_first,
        conv_bias=True,
    )
    for num_samples in (400, 3000, 4000 + 320 * chunk * 2, 25000):
        source = torch.randn(2, num_samples)
        with torch.no_grad():
            want = model(source)["logits"]
        got = model.stream(source)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() < 1e-4, num_samples


def test_streaming_pieces_of_any_size_and_bounded_state() -> None:
    model = tiny(extractor_mode="layer_norm", causal_pos_conv=True, chunk_size=4, history_size=7)
    source = torch.randn(1, 30000)
    with torch.no_grad():
        want = model(source)["logits"]
    enc = StreamingEncoder(model)
    state = enc.init_state()
    outs, pos = [], 0
    gen = torch.Generator().manual_seed(0)
    while pos < source.shape[1]:
        step = int(torch.randint(1, 3000, (1,), generator=gen))
        logits, state = enc.forward_chunk(source[:, pos : pos + step], state)
        assert logits.shape[1] % 4 == 0  # only whole chunks before the end
        outs.append(logits)
        pos += step
        assert all(kv[0].shape[2] <= 7 and kv[1].shape[2] <= 7 for kv in state.kv if kv)
    logits, state = enc.forward_chunk(source[:, :0], state, final=True)
    outs.append(logits)
    got = torch.cat(outs, dim=1)
    assert state.frames == want.shape[1] == got.shape[1]
    assert (got - want).abs().max().item() < 1e-4
    with pytest.raises(ConfigError, match="finished"):
        enc.forward_chunk(source[:, :10], state)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(causal_pos_conv=True, chunk_size=4), "extractor_mode"),
        (dict(extractor_mode="layer_norm", chunk_size=4), "causal_pos_conv"),
        (dict(extractor_mode="layer_norm", causal_pos_conv=True), "chunk_size"),
    ],
)
def test_streaming_needs_streamable_settings(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        StreamingEncoder(tiny(**overrides))


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        tiny(chunk_size=0)
    with pytest.raises(ConfigError, match="history_size"):
        tiny(chunk_size=4, history_size=-1)
    with pytest.raises(ConfigError, match="encoder_attention_heads"):
        tiny(encoder_attention_heads=5)
    with pytest.raises(ConfigError, match="unknown model option"):
        load_arch("tiny_student", encoder_dim=3)
    with pytest.raises(ConfigError, match="no architecture file"):
        load_arch("S9")


def test_training_step_and_frozen_cnn() -> None:
    model = tiny(feature_grad_mult=0.0).train()
    out = model(torch.randn(2, 6000))
    (out["logits"].pow(2).mean() + out["hidden"][0].mean()).backward()
    assert model.output_proj.weight.grad is not None and model.layers[0].fc1.weight.grad is not None
    assert all(p.grad is None for p in model.feature_extractor.parameters())


TABLE1 = {  # CNN first-two channels, encoder dim, FFN dim, blocks
    "T1": (512, 1024, 4096, 24),
    "S1": (512, 768, 3072, 12),
    "S2": (512, 512, 2048, 12),
    "S3": (512, 384, 1536, 12),
    "S4": (512, 384, 1536, 10),
    "S5": (256, 384, 1536, 10),
}


@pytest.mark.parametrize("arch", sorted(TABLE1))
def test_arch_files_follow_table1(arch: str) -> None:
    cfg = load_arch(arch)
    dims = (cfg.conv_first_channels, cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim)
    assert (*dims, cfg.encoder_layers) == TABLE1[arch]
    assert cfg.encoder_attention_heads == cfg.encoder_embed_dim // 64
    ss = load_arch(arch, "ss")
    assert (ss.extractor_mode, ss.causal_pos_conv) == ("layer_norm", True)
    assert (ss.history_size, ss.chunk_size) == (600, 48)
    sn = load_arch(arch, "sn")
    assert (sn.extractor_mode, sn.causal_pos_conv, sn.chunk_size) == ("group_norm", True, None)


def test_tiny_archs_build_and_stream() -> None:
    teacher = build_student("tiny_teacher", num_outputs=7)
    student = build_student("tiny_student", "ss", num_outputs=7, chunk_size=8, history_size=16)
    assert len(teacher.layers) == 4 and len(student.layers) == 2
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters()
    )
    source = torch.randn(1, 12345)
    with torch.no_grad():
        want = student.eval()(source)["logits"]
    assert (student.stream(source) - want).abs().max().item() < 1e-4


def test_fairseq_registration_hydra_and_task_dictionary() -> None:
    from fairseq.data import Dictionary
    from fairseq.models import MODEL_DATACLASS_REGISTRY, build_model
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import speechkd.fairseq_plugin  # noqa: F401

    dataclass = MODEL_DATACLASS_REGISTRY["speechkd_w2v2_student"]
    assert dataclass is W2V2StudentConfig
    with initialize_config_dir(config_dir=str(ARCH_DIR.parent), version_base=None):
        cfg = compose(overrides=["+arch=tiny_student", "+model.chunk_size=16"])
    model_cfg = OmegaConf.merge(OmegaConf.structured(dataclass), cfg.model)
    assert model_cfg.encoder_embed_dim == 64 and model_cfg.chunk_size == 16

    class Task:
        target_dictionary = Dictionary()

    for sym in "abc":
        Task.target_dictionary.add_symbol(sym)
    model = build_model(model_cfg, Task())
    assert isinstance(model, W2V2Student) and model.chunk_size == 16
    assert model.output_proj.out_features == len(Task.target_dictionary)
    model_cfg.num_outputs = 9
    assert W2V2Student.build_model(model_cfg, None).output_proj.out_features == 9
