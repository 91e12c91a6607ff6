"""Save a pretrained Whisper model and its tokenizer into a local directory (safetensors).

Recipes run on compute nodes that often have no internet access: this stage runs once where the
Hugging Face hub is reachable (or its cache holds the model) and every later stage reads the
directory. The tokenizer is built offline from openai-whisper's assets when the hub has none, and
its vocabulary must match the model's.

Example::

    python -m speechkd.bin.fetch_whisper --model openai/whisper-small --out-dir exp/models/small
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_directory
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="hub name (openai/whisper-small) or directory")
    p.add_argument("--out-dir", required=True, help="directory to write (replaced atomically)")
    p.add_argument("--tokenizer", default=None, help="tokenizer name or dir (default: --model)")
    return p


def fetch_whisper(model_name: str, out_dir: str | Path, tokenizer_name: str | None = None) -> Path:
    """Load ``model_name`` (hub or directory) and save model + tokenizer into ``out_dir``."""
    from transformers import WhisperForConditionalGeneration

    tokenizer = load_whisper_tokenizer(tokenizer_name or model_name)
    try:
        model = WhisperForConditionalGeneration.from_pretrained(model_name)
    except OSError as err:
        raise DataError(
            f"{model_name}: cannot load the Whisper model ({err}); run this stage where the "
            "Hugging Face hub is reachable or point --model at a local copy"
        ) from None
    if model.config.vocab_size != len(tokenizer):
        raise DataError(
            f"{model_name}: model vocabulary {model.config.vocab_size} differs from its "
            f"tokenizer's {len(tokenizer)}"
        )
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    logger.info("saved %s (%d parameters) to %s", model_name, model.num_parameters(), out_dir)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    fetch_whisper(args.model, args.out_dir, args.tokenizer)
    return 0


if __name__ == "__main__":
    run_cli(main)
