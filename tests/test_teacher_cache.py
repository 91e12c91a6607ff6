"""Teacher top-k probability cache and top-k KD."""

from __future__ import annotations

import json

import pytest
import torch

from speechkd.errors import DataError
from speechkd.losses import forward_kl, js_divergence
from speechkd.whisper.teacher_cache import (
    TeacherCache,
    TeacherCacheWriter,
    TopKTargets,
    topk_kd_loss,
    topk_teacher_logits,
)

VOCAB = 40


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors run fastest single-threaded (and do not stall on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def teacher_batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(3, 6, VOCAB, generator=generator)
    lengths = torch.tensor([6, 4, 1])
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
    student = 3.0 * torch.randn(3, 6, VOCAB, generator=generator)
    return ["cut-a", "cut-b", "cut-c"], logits, mask, student


def write_cache(directory, k: int, shard_size: int = 2, seed: int = 0):
    keys, logits, mask, student = teacher_batch(seed)
    with TeacherCacheWriter(
        directory, k=k, vocab_size=VOCAB, shard_size=shard_size, metadata={"teacher": "t1"}
    ) as writer:
        writer.add_batch(keys[:2], logits[:2], mask[:2])
        writer.add_batch(keys[2:], logits[2:], mask[2:])
    return keys, logits, mask, student


def test_round_trip_of_top_k_ids_and_log_probs(tmp_path):
    directory = tmp_path / "cache"
    keys, logits, mask, _ = write_cache(directory, k=5)
    index = json.loads((directory / "index.json").read_text())
    assert index["num_utterances"] == 3 and index["num_tokens"] == 11
    assert len(index["shards"]) == 2
    assert not list(tmp_path.glob(".tmp-*"))

    cache = TeacherCache(directory)
    assert len(cache) == 3 and "cut-b" in cache and cache.metadata == {"teacher": "t1"}
    assert (cache.k, cache.vocab_size) == (5, VOCAB)
    log_probs = torch.log_softmax(logits, dim=-1)
    for row, key in enumerate(keys):
        ids, values = cache.get(key)
        length = int(mask[row].sum())
        expected_values, expected_ids = log_probs[row, :length].topk(5, dim=-1)
        assert torch.equal(ids, expected_ids)
        assert torch.allclose(values, expected_values)
    targets = cache.batch(keys, length=6)
    assert torch.equal(targets.mask, mask)
    assert targets.ids.shape == (3, 6, 5)
    assert torch.isfinite(targets.log_probs).all()
    with pytest.raises(DataError, match="cut-z is not in the teacher cache"):
        cache.get("cut-z")
    with pytest.raises(DataError, match="more than the batch length"):
        cache.batch(keys, length=3)


def test_top_k_kd_equals_full_kd_when_k_is_the_vocabulary(tmp_path):
    keys, logits, mask, student = write_cache(tmp_path / "cache", k=VOCAB)
    targets = TeacherCache(tmp_path / "cache").batch(keys, length=6)
    for temperature in (1.0, 3.0):
        full = js_divergence(logits, student, mask, temperature=temperature)
        cached = topk_kd_loss(student, targets, "js", temperature=temperature)
        assert cached.item() == pytest.approx(full.item(), rel=1e-5)
        full_kl = forward_kl(logits, student, mask, temperature=temperature)
        cached_kl = topk_kd_loss(student, targets, "kl", temperature=temperature)
        assert cached_kl.item() == pytest.approx(full_kl.item(), rel=1e-5)


def test_top_k_target_is_the_renormalised_teacher_distribution(tmp_path):
    keys, logits, mask, student = write_cache(tmp_path / "cache", k=3)
    targets = TeacherCache(tmp_path / "cache").batch(keys, length=6)
    dense = topk_teacher_logits(targets.ids, targets.log_probs, VOCAB)
    assert torch.allclose(dense.exp().sum(-1), torch.ones(3, 6))  # already log-probabilities
    probs = torch.softmax(dense, dim=-1)
    full = torch.softmax(logits, dim=-1)
    top_values, top_ids = full.topk(3, dim=-1)
    expected = torch.zeros_like(full).scatter(-1, top_ids, top_values / top_values.sum(-1, True))
    assert torch.allclose(probs[mask], expected[mask], atol=1e-6)
    assert (probs > 0).sum(-1).eq(3).all()
    loss = topk_kd_loss(student.requires_grad_(), targets, "js")
    (grad,) = torch.autograd.grad(loss, student)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert grad[~mask].abs().sum() == 0  # padding gets no gradient
    full_loss = js_divergence(logits, student, mask)
    assert loss.item() != pytest.approx(full_loss.item(), rel=1e-3)


def test_writer_is_atomic_and_rejects_bad_input(tmp_path):
    directory = tmp_path / "cache"
    keys, logits, mask, _ = teacher_batch()
    with pytest.raises(DataError, match="added twice"):
        with TeacherCacheWriter(directory, k=4, vocab_size=VOCAB) as writer:
            writer.add_batch(keys, logits, mask)
            writer.add_batch(keys[:1], logits[:1], mask[:1])
    assert not directory.exists()
    assert not list(tmp_path.iterdir())
    bad_mask = mask.clone()
    bad_mask[1, 0] = False
    with pytest.raises(DataError, match="cut-b: the position mask is not a prefix"):
        with TeacherCacheWriter(directory, k=4, vocab_size=VOCAB) as writer:
            writer.add_batch(keys, logits, bad_mask)
    with pytest.raises(DataError, match="classes"):
        with TeacherCacheWriter(directory, k=4, vocab_size=VOCAB + 1) as writer:
            writer.add_batch(keys, logits, mask)
    with pytest.raises(DataError, match="index is missing"):
        TeacherCache(directory)


def test_targets_move_between_devices_and_shapes_are_checked(tmp_path):
    keys, logits, mask, student = write_cache(tmp_path / "cache", k=4)
    targets: TopKTargets = TeacherCache(tmp_path / "cache").batch(keys).to("cpu")
    assert targets.mask.shape == (3, 6)
    from speechkd.errors import ConfigError

    with pytest.raises(ConfigError, match="student positions"):
        topk_kd_loss(student[:, :5], targets)
