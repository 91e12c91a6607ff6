"""Whisper's tokenizer for transformers, built offline from openai-whisper's packaged assets.

Offline, ``WhisperTokenizer.from_pretrained("openai/whisper-small")`` can return a tokenizer with
an empty vocabulary instead of failing. ``build_whisper_tokenizer`` makes the same tokenizer from
openai-whisper's tiktoken files (``multilingual.tiktoken``; ``gpt2.tiktoken`` for English-only
models) with transformers' ``TikTokenConverter`` and adds the special tokens in openai-whisper's
order (``whisper.tokenizer.get_encoding``), so that every token id matches openai-whisper and the
hub tokenizers. ``load_whisper_tokenizer`` loads a directory or a hub name (from the Hugging Face
cache, else built into a local cache) and always checks the vocabulary size.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_directory

logger = logging.getLogger(__name__)

# openai-whisper's pre-tokenizer pattern (GPT-2's), as in whisper.tokenizer.get_encoding.
WHISPER_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
NUM_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in steps of 0.02 s
MAX_TARGET_POSITIONS = 448  # Whisper's decoder length
# Number of mergeable (byte-level BPE) tokens in each tiktoken asset.
BPE_TOKENS = {"multilingual": 50257, "gpt2": 50256}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def default_cache_dir() -> Path:
    """``$SPEECHKD_CACHE_DIR/whisper_tokenizer``, by default under ``~/.cache/speechkd``."""
    root = os.environ.get("SPEECHKD_CACHE_DIR") or Path.home() / ".cache" / "speechkd"
    return Path(root) / "whisper_tokenizer"


def whisper_assets_dir() -> Path:
    """openai-whisper's ``assets`` directory (tiktoken files), found without importing torch."""
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("openai-whisper is not installed: it provides the tokenizer assets")
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def _whisper_languages() -> list[str]:
    from whisper.tokenizer import LANGUAGES

    return list(LANGUAGES)


def _check_num_languages(num_languages: int) -> None:
    available = len(_whisper_languages())
    if not isinstance(num_languages, int) or not 1 <= num_languages <= available:
        raise ConfigError(f"num_languages={num_languages!r}: must be in 1..{available}")


def special_tokens(num_languages: int = 99) -> list[str]:
    """Whisper's special tokens up to ``<|notimestamps|>``, in openai-whisper's id order."""
    _check_num_languages(num_languages)
    languages = _whisper_languages()[:num_languages]
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in languages],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def timestamp_tokens() -> list[str]:
    """``<|0.00|>`` .. ``<|30.00|>``: they follow the special tokens, as in openai-whisper."""
    return [f"<|{i * 0.02:.2f}|>" for i in range(NUM_TIMESTAMPS)]


def expected_vocab_size(multilingual: bool = True, num_languages: int = 99) -> int:
    """51865 (multilingual, 99 languages), 51866 (large-v3, 100), 51864 (English-only)."""
    base = BPE_TOKENS["multilingual" if multilingual else "gpt2"]
    return base + len(special_tokens(num_languages)) + NUM_TIMESTAMPS


KNOWN_VOCAB_SIZES = (51864, 51865, 51866)


def variant_of_vocab_size(size: int) -> tuple[bool, int] | None:
    """``(multilingual, num_languages)`` whose vocabulary has ``size`` tokens, or None."""
    for variant in ((False, 99), (True, 99), (True, 100)):
        if expected_vocab_size(*variant) == size:
            return variant
    return None


def model_variant(name: str) -> tuple[bool, int]:
    """``(multilingual, num_languages)`` of a Whisper model name such as ``openai/whisper-small``.

    ``*.en`` models are English-only; ``large-v3`` (and its turbo / distilled versions) have the
    100-language vocabulary; every other model has 99 languages.
    """
    base = name.rstrip("/").rsplit("/", 1)[-1].lower()
    if base.endswith(".en"):
        return False, 99
    if "large-v3" in base:
        return True, 100
    return True, 99


def _convert_tiktoken(multilingual: bool, num_languages: int):
    """A ``tokenizers.Tokenizer`` equal to openai-whisper's tiktoken encoding."""
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    asset = whisper_assets_dir() / ("multilingual.tiktoken" if multilingual else "gpt2.tiktoken")
    if not asset.is_file():
        raise DataError(f"{asset}: openai-whisper tokenizer asset not found")
    tokenizer = TikTokenConverter(vocab_file=str(asset), pattern=WHISPER_PATTERN).converted()
    base = BPE_TOKENS["multilingual" if multilingual else "gpt2"]
    if tokenizer.get_vocab_size() != base:
        raise DataError(f"{asset}: {tokenizer.get_vocab_size()} tokens, expected {base}")
    tokenizer.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in special_tokens(num_languages)]
    )
    # Timestamps are plain added tokens, as on the hub: transformers' Whisper decoding takes the
    # id after the last special token as the first timestamp.
    tokenizer.add_tokens(
        [AddedToken(t, normalized=False, special=False) for t in timestamp_tokens()]
    )
    return tokenizer


def build_whisper_tokenizer(
    out_dir: str | os.PathLike,
    multilingual: bool = True,
    num_languages: int = 99,
    feature_extractor: bool = True,
    overwrite: bool = True,
) -> Path:
    """Write a transformers Whisper tokenizer directory to ``out_dir`` and return it.

    It holds ``tokenizer.json``, ``tokenizer_config.json``, ``normalizer.json`` (openai-whisper's
    English spelling map, used by ``decode(normalize=True)``) and, with ``feature_extractor``,
    ``preprocessor_config.json`` (80 mel bins; 128 for the 100-language large-v3 vocabulary) so
    that ``WhisperProcessor.from_pretrained(out_dir)`` works. ``num_languages=100`` gives
    large-v3's vocabulary. The directory appears atomically.
    """
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    _check_num_languages(num_languages)
    out_dir = Path(out_dir)
    backend = _convert_tiktoken(multilingual, num_languages)
    normalizer = Path(whisper_assets_dir()).parent / "normalizers" / "english.json"
    if not normalizer.is_file():
        raise DataError(f"{normalizer}: openai-whisper English normalizer map not found")
    tokenizer = WhisperTokenizer(
        tokenizer_object=backend,
        extra_special_tokens=special_tokens(num_languages),
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=MAX_TARGET_POSITIONS,
    )
    expected = expected_vocab_size(multilingual, num_languages)
    check_vocab_size(tokenizer, expected, "built tokenizer")
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(normalizer, tmp / "normalizer.json")
        if feature_extractor:
            mel_bins = 128 if num_languages >= 100 else 80
            WhisperFeatureExtractor(feature_size=mel_bins).save_pretrained(tmp)
        check_vocab_size(WhisperTokenizer.from_pretrained(tmp), expected, str(out_dir))
    logger.info(
        "Built the %s Whisper tokenizer (%d tokens) in %s",
        f"multilingual ({num_languages} languages)" if multilingual else "English-only",
        expected,
        out_dir,
    )
    return out_dir


def check_vocab_size(tokenizer: Any, expected: int | None, source: str) -> None:
    """Raise ``DataError`` unless ``len(tokenizer)`` is ``expected`` (or a Whisper size if None)."""
    size = len(tokenizer)
    allowed = KNOWN_VOCAB_SIZES if expected is None else (expected,)
    if size not in allowed:
        raise DataError(
            f"{source}: Whisper tokenizer has {size} tokens, expected "
            f"{' or '.join(map(str, allowed))}"
        )


def _config_vocab_size(directory: Path) -> int | None:
    config = directory / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("vocab_size")
    except json.JSONDecodeError as err:
        raise DataError(f"{config}: not valid JSON ({err})") from None


def _from_hf_cache(name: str, hf_cache_dir: str | os.PathLike | None, **kwargs: Any):
    """The tokenizer of ``name`` from the Hugging Face cache, or None if it is not cached."""
    from huggingface_hub import try_to_load_from_cache
    from transformers import WhisperTokenizer

    cached = [
        try_to_load_from_cache(name, filename, cache_dir=hf_cache_dir)
        for filename in ("tokenizer.json", "vocab.json")
    ]
    if not any(isinstance(found, str) for found in cached):
        logger.info("%s: no tokenizer in the Hugging Face cache", name)
        return None
    try:
        return WhisperTokenizer.from_pretrained(
            name, cache_dir=hf_cache_dir, local_files_only=True, **kwargs
        )
    except (OSError, ValueError, TypeError) as err:
        logger.warning("%s: the Hugging Face cache copy does not load (%s)", name, err)
        return None


def load_whisper_tokenizer(
    name_or_dir: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    hf_cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
):
    """Load a Whisper tokenizer from a directory or a hub model name, offline.

    A directory loads directly (its size must be a Whisper size and match its ``config.json``).
    A hub name (``openai/whisper-small``, ``openai/whisper-tiny.en``, ...) is looked up in the
    Hugging Face cache (``hf_cache_dir``; never downloaded); if absent or of the wrong size, the
    same tokenizer is built from openai-whisper's assets into ``cache_dir`` (default
    ``default_cache_dir()``) once and loaded from there. ``kwargs`` (``language``, ``task``,
    ``predict_timestamps``) go to ``from_pretrained``. The vocabulary size is always checked.
    """
    from transformers import WhisperTokenizer

    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / "tokenizer.json").is_file() and not (path / "vocab.json").is_file():
            raise DataError(f"{path}: no tokenizer.json or vocab.json: not a tokenizer directory")
        tokenizer = WhisperTokenizer.from_pretrained(path, **kwargs)
        check_vocab_size(tokenizer, _config_vocab_size(path), str(path))
        return tokenizer
    name = str(name_or_dir)
    if path.exists() or name.startswith((".", "/")) or name.count("/") > 1:
        raise DataError(f"{name}: not a tokenizer directory nor a hub model name")
    multilingual, num_languages = model_variant(name)
    expected = expected_vocab_size(multilingual, num_languages)
    tokenizer = _from_hf_cache(name, hf_cache_dir, **kwargs)
    if tokenizer is not None:
        if len(tokenizer) == expected:
            return tokenizer
        logger.warning(
            "%s from the Hugging Face cache has %d tokens instead of %d: building it from "
            "openai-whisper's assets",
            name,
            len(tokenizer),
            expected,
        )
    if "whisper" not in name.lower():
        raise DataError(
            f"{name}: no usable tokenizer in the Hugging Face cache, and not a Whisper model name "
            "that could be built from openai-whisper's assets"
        )
    variant = f"multilingual-{num_languages}" if multilingual else "english"
    built = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    built = built / variant
    if not (built / "tokenizer.json").is_file():
        build_whisper_tokenizer(built, multilingual, num_languages, overwrite=False)
    tokenizer = WhisperTokenizer.from_pretrained(built, **kwargs)
    check_vocab_size(tokenizer, expected, f"{built} (for {name})")
    return tokenizer
