"""Decode a CutSet with a saved Whisper model (greedy by default) and score it (WER/CER).

Writes ``hyp-<set>.txt``, ``ref-<set>.txt``, ``recogs-<set>.txt``, ``errs-<set>.txt``,
``<metric>-summary-<set>.txt`` and ``scores-<set>.json`` into ``--out-dir``.

Example::

    python -m speechkd.bin.whisper_decode --model-dir exp/whisper/mini/model \\
        --cuts data/fbank/mini_cuts_test.jsonl.gz --set-name test \\
        --out-dir exp/whisper/mini/decode --metric wer
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from lhotse import CutSet

from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import DataError
from speechkd.eval.wer import METRICS
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper.decode import decode_cuts, load_whisper_model, write_and_score
from speechkd.whisper.trainer import default_device

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", required=True, help="save_pretrained Whisper model directory")
    p.add_argument("--tokenizer", default=None, help="default: the model directory")
    p.add_argument("--cuts", required=True, help="lhotse CutSet to decode (with references)")
    p.add_argument("--set-name", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--metric", choices=METRICS, default="wer")
    p.add_argument("--max-duration", type=float, default=200.0, help="seconds per batch")
    p.add_argument("--num-beams", type=int, default=1, help="1: greedy")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    setup_logging(out_dir / "log" / f"decode-{args.set_name}.log")
    command = "python -m speechkd.bin.whisper_decode " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    if not Path(args.cuts).is_file():
        raise DataError(f"{args.cuts}: CutSet manifest not found")
    device = default_device(args.device)
    tokenizer = load_whisper_tokenizer(args.tokenizer or args.model_dir)
    model = load_whisper_model(args.model_dir, device)
    cuts = CutSet.from_file(args.cuts).to_eager()
    start = time.time()
    hyps = decode_cuts(
        model,
        tokenizer,
        cuts,
        max_duration=args.max_duration,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        task=args.task,
        device=device,
        progress=not args.no_progress,
    )
    seconds = time.time() - start
    audio = sum(c.duration for c in cuts)
    paths = write_and_score(
        hyps,
        out_dir,
        args.set_name,
        args.metric,
        model_dir=str(args.model_dir),
        cuts=str(args.cuts),
        command=command,
        decode_seconds=round(seconds, 3),
        rtf=round(seconds / audio, 5) if audio else None,
        device=str(device),
    )
    logger.info("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    run_cli(main)
