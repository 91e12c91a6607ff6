"""The offline Whisper tokenizer must give openai-whisper's token ids exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from whisper.tokenizer import LANGUAGES, get_tokenizer

from speechkd.bin.prepare_lang import main as prepare_lang_main
from speechkd.data.whisper_tokenizer import (
    build_whisper_tokenizer,
    expected_vocab_size,
    load_whisper_tokenizer,
    model_variant,
)
from speechkd.errors import DataError

TEXTS = {
    "ca": "Bon dia, com estàs? L'àvia té vint-i-dos anys més que jo.",
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "hu": "Árvíztűrő tükörfúrógép, és egy kis ökör.",
    "pl": "Zażółć gęślą jaźń — pchnąć w tę łódź jeża.",
    "ta": "வணக்கம், நீங்கள் எப்படி இருக்கிறீர்கள்?",
    "th": "สวัสดีครับ วันนี้อากาศดีมาก",
    "uk": "Привіт, світе! Як справи у Києві?",
    "en": "The quick brown fox jumps over the lazy dog. I'll see y'all at 3:30pm.",
    "de": "Fünf große Bären schwimmen über den Fluß, oder?",
    "ko": "안녕하세요, 오늘 날씨가 좋네요.",
    "ml": "നമസ്കാരം, സുഖമാണോ?",
    "sw": "Habari za asubuhi? Ninafurahi kukuona.",
    "ja": "今日はいい天気ですね。東京へ行きましょう！",
    "zh": "今天天气很好，我们去公园散步吧。",
}
TRICKY = [
    "  leading spaces, digits 1234567 and 3.14159 — punctuation!?… «quotes» (brackets)",
    "emojis 😀👍🏽🇪🇸 and\ttabs\nnew lines   trailing  ",
    " ",
    "<notspecial> |x| 12,000.50 $€£ 100%",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("whisper_tokenizer_cache")


@pytest.fixture(scope="module")
def empty_hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf_cache")


@pytest.fixture(scope="module")
def tokenizer(cache_dir: Path, empty_hf_cache: Path):
    """The multilingual tokenizer, built from the assets because the HF cache is empty."""
    return load_whisper_tokenizer(
        "openai/whisper-small", cache_dir=cache_dir, hf_cache_dir=empty_hf_cache
    )


def test_vocab_size(tokenizer) -> None:
    assert len(tokenizer) == 51865 == expected_vocab_size(True, 99)
    assert expected_vocab_size(False) == 51864 and expected_vocab_size(True, 100) == 51866


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_ids_match_openai_whisper(tokenizer, language: str) -> None:
    reference = get_tokenizer(True, language=language, task="transcribe")
    for text in [TEXTS[language], " " + TEXTS[language], *TRICKY]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == reference.encode(text), text
        assert tokenizer.decode(ids) == text


def test_special_token_ids_match(tokenizer) -> None:
    reference = get_tokenizer(True, language="en", task="transcribe")
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == reference.eot
    ids = tokenizer.convert_tokens_to_ids
    assert ids("<|startoftranscript|>") == reference.sot
    assert ids("<|translate|>") == reference.translate
    assert ids("<|transcribe|>") == reference.transcribe
    assert ids("<|startoflm|>") == reference.sot_lm
    assert ids("<|startofprev|>") == reference.sot_prev
    assert ids("<|nospeech|>") == reference.no_speech
    assert ids("<|notimestamps|>") == reference.no_timestamps
    assert ids("<|0.00|>") == reference.timestamp_begin
    assert ids("<|30.00|>") == reference.timestamp_begin + 1500 == len(tokenizer) - 1
    codes = list(LANGUAGES)[:99]
    assert [ids(f"<|{c}|>") for c in codes] == [reference.to_language_token(c) for c in codes]
    assert [ids(f"<|{c}|>") for c in codes] == list(range(reference.sot + 1, reference.sot + 100))
    # transformers' timestamp handling relies on the timestamps following the special tokens
    assert tokenizer.all_special_ids[-1] == reference.no_timestamps


@pytest.mark.parametrize(("language", "task"), [("ca", "transcribe"), ("uk", "translate")])
def test_sot_sequence(tokenizer, language: str, task: str) -> None:
    reference = get_tokenizer(True, language=language, task=task)
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    ids = tokenizer(TEXTS[language]).input_ids
    expected = [*reference.sot_sequence_including_notimestamps, *reference.encode(TEXTS[language])]
    assert ids == [*expected, reference.eot]
    assert tokenizer.decode(ids, skip_special_tokens=True) == TEXTS[language]
    tokenizer.set_prefix_tokens(predict_timestamps=True)
    assert tokenizer.prefix_tokens == list(reference.sot_sequence)


def test_decode_with_timestamps(tokenizer) -> None:
    reference = get_tokenizer(True, language="de", task="transcribe")
    text_ids = reference.encode(" " + TEXTS["de"])
    ids = [*reference.sot_sequence, reference.timestamp_begin, *text_ids,
           reference.timestamp_begin + 50, reference.eot]  # fmt: skip
    assert tokenizer.decode(ids, skip_special_tokens=True) == " " + TEXTS["de"]
    with_times = tokenizer.decode(ids, skip_special_tokens=True, decode_with_timestamps=True)
    assert with_times == f"<|0.00|> {TEXTS['de']}<|1.00|>"


def test_english_only(tmp_path: Path) -> None:
    out = tmp_path / "lang_whisper_en"
    prepare_lang_main(["--type", "whisper", "--english-only", "--out-dir", str(out)])
    tokenizer = load_whisper_tokenizer(out)
    reference = get_tokenizer(False)
    assert len(tokenizer) == 51864
    assert tokenizer.eos_token_id == reference.eot == 50256
    assert tokenizer.convert_tokens_to_ids("<|notimestamps|>") == reference.no_timestamps
    for text in [TEXTS["en"], *TRICKY]:
        assert tokenizer.encode(text, add_special_tokens=False) == reference.encode(text)
    assert tokenizer("hi").input_ids == [*reference.sot_sequence_including_notimestamps,
                                          *reference.encode("hi"), reference.eot]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lang_whisper_en"]


def test_directory_loads_in_transformers(tokenizer, cache_dir: Path) -> None:
    from transformers import AutoTokenizer, WhisperProcessor, WhisperTokenizerFast

    directory = cache_dir / "multilingual-99"
    assert WhisperTokenizerFast.from_pretrained(directory).get_vocab() == tokenizer.get_vocab()
    assert len(AutoTokenizer.from_pretrained(directory)) == 51865
    processor = WhisperProcessor.from_pretrained(directory)
    assert processor.feature_extractor.feature_size == 80
    # normalizer.json (openai-whisper's English spelling map) is used: colour -> color
    assert processor.tokenizer.normalize("The colour of Mr. Smith") == "the color of mister smith"


def test_hub_name_uses_the_built_cache(cache_dir: Path, empty_hf_cache: Path, monkeypatch) -> None:
    def no_build(*args, **kwargs):
        raise AssertionError("the cached tokenizer should be reused")

    monkeypatch.setattr("speechkd.data.whisper_tokenizer.build_whisper_tokenizer", no_build)
    tokenizer = load_whisper_tokenizer(
        "openai/whisper-base", cache_dir=cache_dir, hf_cache_dir=empty_hf_cache, language="pl"
    )
    assert len(tokenizer) == 51865
    assert tokenizer.prefix_tokens[:2] == [50258, tokenizer.convert_tokens_to_ids("<|pl|>")]


def test_empty_hf_cache_copy_is_rejected(tmp_path: Path, cache_dir: Path, caplog) -> None:
    """A cached hub tokenizer without vocabulary (what offline loading can yield) is replaced."""
    from transformers import WhisperTokenizer

    snapshot = tmp_path / "hf" / "models--openai--whisper-tiny" / "snapshots" / ("0" * 40)
    WhisperTokenizer(vocab={}, merges=[]).save_pretrained(snapshot)
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    tokenizer = load_whisper_tokenizer(
        "openai/whisper-tiny", cache_dir=cache_dir, hf_cache_dir=tmp_path / "hf"
    )
    assert len(tokenizer) == 51865
    assert "tokens instead of 51865" in caplog.text


def test_wrong_vocab_size_raises(tmp_path: Path, cache_dir: Path) -> None:
    directory = tmp_path / "model"
    shutil.copytree(cache_dir / "multilingual-99", directory)
    (directory / "config.json").write_text(json.dumps({"vocab_size": 51866}))
    with pytest.raises(DataError, match="51865 tokens, expected 51866"):
        load_whisper_tokenizer(directory)
    with pytest.raises(DataError, match="not a tokenizer directory"):
        load_whisper_tokenizer(tmp_path)
    with pytest.raises(DataError, match="not a Whisper model name"):
        load_whisper_tokenizer("facebook/wav2vec2-base", hf_cache_dir=tmp_path / "hf")


def test_model_variant() -> None:
    assert model_variant("openai/whisper-small") == (True, 99)
    assert model_variant("openai/whisper-large-v2") == (True, 99)
    assert model_variant("openai/whisper-large-v3-turbo") == (True, 100)
    assert model_variant("openai/whisper-tiny.en") == (False, 99)


def test_large_v3_vocabulary(tmp_path: Path) -> None:
    directory = build_whisper_tokenizer(tmp_path / "v3", num_languages=100)
    tokenizer = load_whisper_tokenizer(directory)
    reference = get_tokenizer(True, num_languages=100, language="yue", task="transcribe")
    assert len(tokenizer) == 51866
    tokenizer.set_prefix_tokens(language="yue", task="transcribe")
    assert tokenizer.prefix_tokens == list(reference.sot_sequence_including_notimestamps)
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == reference.timestamp_begin
