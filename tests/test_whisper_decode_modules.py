"""Decoding with language modules loaded from disk, gate usage and decoding speed records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from lhotse import CutSet
from test_cache_teacher import make_cuts

from speechkd.bin import whisper_decode
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import save_manifest
from speechkd.whisper.clsr import (
    add_clsr,
    clsr_gates,
    installed_languages,
    remove_language,
    set_active_language,
)
from speechkd.whisper.data import PROMPT_LENGTH, PromptTokens, WhisperAsrDataset
from speechkd.whisper.decode import (
    GateUsage,
    configure_generation,
    configure_special_tokens,
    decode_cuts,
    decoder_positions,
    generated_tokens,
)
from speechkd.whisper.language_modules import save_language_modules
from speechkd.whisper.params import build_whisper, small_whisper_config

UTTERANCES = [
    ("ca-0", "ca", "bon dia", 1.0),
    ("ca-1", "ca", "el gat dorm", 1.4),
    ("ca-2", "ca", "la casa", 1.1),
    ("th-0", "th", "sawatdi", 1.2),
    ("th-1", "th", "khop khun", 0.9),
    ("en-0", "en", "the cat sat", 1.3),
]
MAX_NEW = 5


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tok")
    return load_whisper_tokenizer(
        "openai/whisper-small", cache_dir=root / "cache", hf_cache_dir=root / "hf"
    )


def stock_model(tokenizer):
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
    torch.manual_seed(0)
    model = build_whisper(config, device="cpu")
    configure_generation(model, tokenizer)
    return model.eval()


def trained_clsr(stock, languages, seed: int = 1):
    """CLSR experts and gates that differ from their initialisation (gates neither 0 nor 1)."""
    model = copy.deepcopy(stock)
    add_clsr(model, languages)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                scale = 1.0 if "proj_out" in name else 0.3
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def setup(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("decode")
    stock = stock_model(tokenizer)
    stock.save_pretrained(root / "stock", safe_serialization=True)
    tokenizer.save_pretrained(root / "stock")
    trained = trained_clsr(stock, ["ca", "th"])
    save_language_modules(trained, root / "modules")
    (root / "audio").mkdir()
    cuts = make_cuts(root / "audio", UTTERANCES)
    save_manifest(cuts, root / "cuts.jsonl.gz")
    return {"root": root, "stock": stock, "trained": trained, "cuts": cuts}


def decode_args(setup: dict, out: Path, modules: Path | None, *languages: str) -> list[str]:
    args = ["--model-dir", str(setup["root"] / "stock"), "--cuts"]
    args += [str(setup["root"] / "cuts.jsonl.gz"), "--set-name", "test", "--out-dir", str(out)]
    args += ["--max-new-tokens", str(MAX_NEW), "--metric", "cer", "--no-progress"]
    if modules is not None:
        args += ["--language-modules", str(modules), "--languages", *languages]
    return args


def read_hyps(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, text = line.partition(" ")
        out[key] = text
    return out


def test_only_requested_modules_are_opened(tokenizer, setup, tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    for name in ("ca.safetensors", "ca.json"):
        (modules / name).write_bytes((setup["root"] / "modules" / name).read_bytes())
    (modules / "th.safetensors").write_bytes(b"not a safetensors file")
    (modules / "th.json").write_text("{broken")

    out = tmp_path / "decode"
    assert whisper_decode.main(decode_args(setup, out, modules, "ca")) == 0
    from_disk = read_hyps(out / "hyp-test.txt")

    in_memory = copy.deepcopy(setup["trained"])
    remove_language(in_memory, "th")
    assert installed_languages(in_memory) == ["ca"]
    expected = decode_cuts(in_memory, tokenizer, setup["cuts"], max_new_tokens=MAX_NEW)
    assert from_disk == {h.cut_id: h.hyp for h in expected}
    # the experts matter: the stock model decodes Catalan differently
    stock = decode_cuts(setup["stock"], tokenizer, setup["cuts"], max_new_tokens=MAX_NEW)
    stock_hyps = {h.cut_id: h.hyp for h in stock}
    assert any(stock_hyps[k] != from_disk[k] for k in from_disk if k.startswith("ca"))
    # th (no module loaded) and en take the shared path
    assert all(stock_hyps[k] == from_disk[k] for k in from_disk if not k.startswith("ca"))

    scores = json.loads((out / "scores-test.json").read_text())
    assert scores["languages"] == ["ca"] and scores["rtf"] > 0
    record = json.loads((out / "decode-test.json").read_text())
    assert record["languages"] == ["ca"] and record["num_utterances"] == len(UTTERANCES)
    assert record["decode_seconds"] > 0
    assert record["rtf"] == pytest.approx(record["decode_seconds"] / record["audio_seconds"], 1e-2)
    assert "RTF" in (out / "log" / "decode-test.log").read_text()

    with pytest.raises(DataError, match="th.json"):  # asked for, th is read and found broken
        whisper_decode.main(decode_args(setup, tmp_path / "d2", modules, "all"))
    with pytest.raises(ConfigError, match="needs --languages"):
        args = decode_args(setup, tmp_path / "d3", None) + ["--language-modules", str(modules)]
        whisper_decode.main(args)
    with pytest.raises(ConfigError, match="'all' cannot be combined"):
        whisper_decode.main(decode_args(setup, tmp_path / "d4", modules, "all", "ca"))


def manual_gate_usage(
    model, tokenizer, cuts: CutSet, tokens_out: dict | None = None
) -> tuple[dict, dict[str, str]]:
    """Greedy decoding one step at a time (full forward of the prefix), gates of each new
    position as the incremental decoder computes them."""
    dataset = WhisperAsrDataset(tokenizer, num_frames=2 * model.config.max_source_positions)
    eot = PromptTokens.from_tokenizer(tokenizer).eot
    totals: dict[str, list[float]] = {}
    hyps = {}
    for cut in cuts:
        batch = dataset[CutSet.from_cuts([cut])]
        language = batch["language"]
        set_active_language(model, language if language in installed_languages(model) else None)
        prefix = batch["decoder_input_ids"][:, :PROMPT_LENGTH]
        real = (int(batch["feature_lengths"][0]) + 1) // 2
        entry = totals.setdefault(language, [0.0, 0, 0.0, 0, 0])
        tokens: list[int] = []
        for step in range(MAX_NEW):
            with torch.no_grad():
                logits = model(input_features=batch["input_features"], decoder_input_ids=prefix)
            encoder, decoder = clsr_gates(model)
            if step == 0:
                entry[0] += sum(float(g[0, :real].sum()) for g in encoder)
                entry[1] += len(encoder) * real
            new = slice(0, PROMPT_LENGTH) if step == 0 else slice(-1, None)
            entry[2] += sum(float(g[0, new].sum()) for g in decoder)
            entry[3] += len(decoder) * (PROMPT_LENGTH if step == 0 else 1)
            token = int(logits.logits[0, -1].argmax())
            tokens.append(token)
            if token == eot:
                break
            prefix = torch.cat([prefix, torch.tensor([[token]])], dim=1)
        entry[4] += 1
        if tokens_out is not None:
            tokens_out[cut.id] = tokens
        hyps[cut.id] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    usage = {
        lang: {
            "encoder": e_sum / e_n,
            "decoder": d_sum / d_n,
            "all": (e_sum + d_sum) / (e_n + d_n),
            "utterances": n,
        }
        for lang, (e_sum, e_n, d_sum, d_n, n) in totals.items()
    }
    return usage, hyps


def test_gate_usage_file_equals_step_by_step_decoding(tokenizer, setup, tmp_path: Path) -> None:
    out = tmp_path / "decode"
    assert whisper_decode.main(decode_args(setup, out, setup["root"] / "modules", "all")) == 0
    written = json.loads((out / "gate-usage-test.json").read_text())
    assert written["set"] == "test" and sorted(written["per_language"]) == ["ca", "en", "th"]
    for values in written["per_language"].values():
        assert all(0.0 <= values[key] <= 1.0 for key in ("encoder", "decoder", "all"))
    assert written["per_language"]["en"] == {
        "encoder": 0.0,
        "decoder": 0.0,
        "all": 0.0,
        "utterances": 1,
    }
    assert 0.0 < written["per_language"]["ca"]["all"] < 1.0
    assert 0.0 < written["per_language"]["ca"]["decoder"] < 1.0

    expected, hyps = manual_gate_usage(setup["trained"], tokenizer, setup["cuts"])
    assert read_hyps(out / "hyp-test.txt") == hyps
    for language, values in expected.items():
        got = written["per_language"][language]
        assert got["utterances"] == values["utterances"], language
        for key in ("encoder", "decoder", "all"):
            assert got[key] == pytest.approx(values[key], abs=1e-9), (language, key)
    assert not list(out.glob(".tmp-*"))


def test_gate_usage_of_hypotheses_ending_at_different_steps(tokenizer, setup) -> None:
    """Make <|endoftext|> win where one Thai hypothesis emitted a token the other did not."""
    model = copy.deepcopy(setup["trained"])
    tokens: dict[str, list[int]] = {}
    manual_gate_usage(model, tokenizer, setup["cuts"], tokens)
    pairs = zip(tokens["th-0"], tokens["th-1"], strict=True)
    step = next(i for i, (a, b) in enumerate(pairs) if a != b)
    eot = PromptTokens.from_tokenizer(tokenizer).eot
    embedding = model.get_output_embeddings().weight  # tied with the decoder's input embedding
    with torch.no_grad():
        embedding[eot] = 1.05 * embedding[tokens["th-1"][step]]
    ended: dict[str, list[int]] = {}
    expected, hyps = manual_gate_usage(model, tokenizer, setup["cuts"], ended)
    lengths = {key: len(value) for key, value in ended.items()}
    assert ended["th-1"][-1] == eot and lengths["th-1"] < MAX_NEW
    assert lengths["th-0"] != lengths["th-1"]  # one batch, hypotheses of different lengths

    usage = GateUsage()
    found = decode_cuts(model, tokenizer, setup["cuts"], max_new_tokens=MAX_NEW, gate_usage=usage)
    assert {h.cut_id: h.hyp for h in found} == hyps
    for language, values in expected.items():
        got = usage.per_language()[language]
        assert got["utterances"] == values["utterances"], language
        for key in ("encoder", "decoder", "all"):
            assert got[key] == pytest.approx(values[key], abs=1e-9), (language, key)
    assert usage.seconds > 0


def test_decode_without_clsr_collects_no_gate_usage(tokenizer, setup, tmp_path: Path) -> None:
    usage = GateUsage()
    decode_cuts(setup["stock"], tokenizer, setup["cuts"].subset(first=2), 1, gate_usage=usage)
    assert usage.per_language() == {}
    out = tmp_path / "decode"
    assert whisper_decode.main(decode_args(setup, out, None)) == 0
    assert not (out / "gate-usage-test.json").exists()
    assert json.loads((out / "decode-test.json").read_text())["languages"] == []


def test_language_models_decode_the_cuts_of_their_language(
    tokenizer, setup, tmp_path: Path
) -> None:
    """One model per language (per-language fine-tuning): each decodes its language's cuts."""
    other = copy.deepcopy(setup["stock"])
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.5 * torch.randn(parameter.shape, generator=generator))
    other.save_pretrained(tmp_path / "th_model", safe_serialization=True)
    ca_th = setup["cuts"].filter(lambda c: c.supervisions[0].language != "en").to_eager()
    save_manifest(ca_th, tmp_path / "ca_th.jsonl.gz")
    models = ["--language-models", f"ca={setup['root'] / 'stock'}", f"th={tmp_path / 'th_model'}"]
    args = [*decode_args(setup, tmp_path / "decode", None)[2:], *models]
    with pytest.raises(DataError, match="language\\(s\\) en have no --language-models entry"):
        whisper_decode.main(args)  # the test set has English cuts
    args[args.index("--cuts") + 1] = str(tmp_path / "ca_th.jsonl.gz")
    assert whisper_decode.main(args) == 0
    out = tmp_path / "decode"
    expected = {}
    for model, language in ((setup["stock"], "ca"), (other, "th")):
        own = ca_th.filter(lambda c, lang=language: c.supervisions[0].language == lang)
        for hyp in decode_cuts(model, tokenizer, own.to_eager(), 100.0, 1, MAX_NEW, progress=False):
            expected[hyp.cut_id] = hyp.hyp
    assert read_hyps(out / "hyp-test.txt") == expected
    stock_th = decode_cuts(setup["stock"], tokenizer, ca_th, 100.0, 1, MAX_NEW, progress=False)
    assert any(expected[h.cut_id] != h.hyp for h in stock_th if h.language == "th")
    scores = json.loads((out / "scores-test.json").read_text())
    assert sorted(scores["per_language"]) == ["ca", "th"]
    record = json.loads((out / "decode-test.json").read_text())
    assert record["language_models"] == {
        "ca": str(setup["root"] / "stock"),
        "th": str(tmp_path / "th_model"),
    }
    assert record["model_dir"] is None and record["num_utterances"] == len(ca_th)
    with pytest.raises(ConfigError, match="no --language-"):
        whisper_decode.main([*args, "--languages", "ca"])


def test_decoder_positions_follow_the_fed_tokens() -> None:
    eot = 9
    prompt = torch.tensor([[1, 2, 3, 4]] * 4)
    # as returned by generate (max_new_tokens=4): ended by eot, eot stripped and padded with eot,
    # stopped by the length limit, eot at the first step
    generated = torch.tensor([[5, 6, eot, eot], [7, 8, 5, eot], [7, 8, 5, 6], [eot] * 4])
    inputs, mask = decoder_positions(prompt, generated, eot, max_new_tokens=4)
    assert torch.equal(inputs, torch.cat([prompt, generated], dim=1))
    assert mask.sum(dim=1).tolist() == [6, 7, 7, 4]
    assert bool(mask[:, :4].all())
    # eot stripped from the row that ended at the limit's last step: 3 tokens, all fed
    _, mask = decoder_positions(prompt[:1], torch.tensor([[5, 6, 7]]), eot, max_new_tokens=4)
    assert mask.sum().item() == 7
    # nothing returned at all (every row ended at once, eot stripped): only the prompt was fed
    _, mask = decoder_positions(prompt, torch.zeros(4, 0, dtype=torch.long), eot, 4)
    assert mask.sum(dim=1).tolist() == [4, 4, 4, 4]
    assert torch.equal(generated_tokens(torch.cat([prompt, generated], 1), prompt), generated)
    assert torch.equal(generated_tokens(generated, prompt), generated)
