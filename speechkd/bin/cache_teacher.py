"""Cache a Whisper teacher's top-k output distributions over a CutSet for knowledge distillation.

A teacher-forced pass over the training batches (same prompt, text tokens and features as
``whisper_train``) stores, for every non-padding decoder position of every cut, the teacher's
``--top-k`` token ids and log-probabilities (see :mod:`speechkd.whisper.teacher_outputs`).
``TeacherCache(<out-dir>)`` reads the result.

    # whole set in one process (shard 1/1, then merged)
    python -m speechkd.bin.cache_teacher --model-dir exp/teacher/model \\
        --tokenizer data/lang_whisper --cuts data/fbank/mini_cuts_train.jsonl.gz \\
        --out-dir exp/distilwhisper/teacher_cache --top-k 64
    # as a job array: shard J of N into <out-dir>/shards/J, then merge
    $cuda_cmd JOB=1:4 exp/distilwhisper/teacher_cache/log/cache.JOB.log \\
        python -m speechkd.bin.cache_teacher --model-dir ... --tokenizer ... --cuts ... \\
        --out-dir exp/distilwhisper/teacher_cache --top-k 64 --shard JOB/4
    python -m speechkd.bin.cache_teacher --out-dir exp/distilwhisper/teacher_cache --merge 4

A shard whose cache is complete and made from the same teacher, tokenizer, cuts and options
(fingerprint) is skipped; otherwise it is recomputed and written atomically (a merged index
pointing at it is removed first). Logs go to ``<out-dir>/log/``; the index metadata records the
teacher directory, the tokenizer's vocabulary size, the wall time and the real-time factor.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from speechkd.data.manifest_io import read_cuts
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import ConfigError, DataError
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.utils.shards import parse_shard
from speechkd.whisper.data import TASKS
from speechkd.whisper.decode import load_whisper_model
from speechkd.whisper.teacher_cache import DTYPES
from speechkd.whisper.teacher_outputs import (
    TeacherCacheSpec,
    merge_teacher_caches,
    remove_merged_index,
    select_cache_shard,
    shard_dir,
    shard_is_complete,
    write_teacher_cache,
)
from speechkd.whisper.trainer import default_device

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", help="save_pretrained Whisper teacher (safetensors)")
    p.add_argument("--tokenizer", help="the student's Whisper tokenizer (directory or hub name)")
    p.add_argument("--cuts", help="lhotse CutSet of the training data (with transcripts)")
    p.add_argument("--out-dir", required=True, help="cache directory")
    p.add_argument("--top-k", type=int, default=64, help="tokens kept per position")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="of log-probs")
    p.add_argument("--max-duration", type=float, default=200.0, help="seconds of audio per batch")
    p.add_argument("--max-cuts", type=int, default=None, help="cuts per batch at most")
    p.add_argument("--task", choices=TASKS, default="transcribe")
    p.add_argument("--text-field", default="text", help="supervision field of the transcript")
    p.add_argument("--default-language", default=None, help="for supervisions without one")
    p.add_argument("--utterances-per-file", type=int, default=2000)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--shard", default=None, help="J/N: cache only the J-th of N shards")
    group.add_argument("--merge", type=int, default=None, metavar="N", help="merge N shards")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_shard(args: argparse.Namespace, job: int, num_shards: int, command: str) -> Path:
    """Cache shard ``job`` of ``num_shards`` into ``<out-dir>/shards/<job>`` (or skip it)."""
    for name in ("model_dir", "tokenizer", "cuts"):
        if getattr(args, name) is None:
            raise ConfigError(f"--{name.replace('_', '-')} is required unless --merge is given")
    if not Path(args.cuts).is_file():
        raise DataError(f"{args.cuts}: CutSet manifest not found")
    out_dir = Path(args.out_dir)
    directory = shard_dir(out_dir, job)
    tokenizer = load_whisper_tokenizer(args.tokenizer)
    spec = TeacherCacheSpec(
        teacher=str(args.model_dir),
        tokenizer=str(args.tokenizer),
        cuts=str(args.cuts),
        vocab_size=len(tokenizer),
        top_k=args.top_k,
        dtype=args.dtype,
        num_shards=num_shards,
        max_duration=args.max_duration,
        max_cuts=args.max_cuts,
        task=args.task,
        text_field=args.text_field,
        default_language=args.default_language,
        amp=args.amp,
    )
    all_cuts = read_cuts(args.cuts)
    cuts = select_cache_shard(all_cuts, job, num_shards)
    done, why = shard_is_complete(directory, spec.fingerprint(), job, len(cuts))
    if done:
        logger.info("shard %d/%d in %s: %s, skipping", job, num_shards, directory, why)
        return directory
    logger.info("shard %d/%d: %d of %d cuts (%s)", job, num_shards, len(cuts), len(all_cuts), why)
    remove_merged_index(out_dir)
    device = default_device(args.device)
    start = time.time()
    model = load_whisper_model(args.model_dir, device)
    load_seconds = time.time() - start
    write_teacher_cache(
        model,
        tokenizer,
        cuts,
        directory,
        spec,
        job=job,
        total_cuts=len(all_cuts),
        metadata={"command": command, "load_seconds": round(load_seconds, 3)},
        device=device,
        utterances_per_file=args.utterances_per_file,
        progress=not args.no_progress,
        start_time=start,
    )
    return directory


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    command = "python -m speechkd.bin.cache_teacher " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    if args.merge is not None:
        setup_logging(out_dir / "log" / "cache_teacher.merge.log")
        logger.info("%s", command)
        merge_teacher_caches(out_dir, args.merge)
        return 0
    if args.shard is not None:
        job, num_shards = parse_shard(args.shard)
        setup_logging(out_dir / "log" / f"cache_teacher.{job}.log")
        logger.info("%s", command)
        run_shard(args, job, num_shards, command)
        return 0
    setup_logging(out_dir / "log" / "cache_teacher.log")
    logger.info("%s", command)
    run_shard(args, 1, 1, command)
    merge_teacher_caches(out_dir, 1)
    return 0


if __name__ == "__main__":
    run_cli(main)
