"""Fine-tune a Whisper model (full or a PEFT method) on a lhotse CutSet.

Writes into ``--exp-dir``: ``config.yaml``, ``log/train.log``, ``tensorboard/``,
``checkpoints/epoch-<N>/`` (model, optimizer, scheduler, sampler and RNG states),
``best-checkpoint.json`` and, at the end, the best model exported with ``save_pretrained``
(adapters merged) into ``<exp-dir>/model`` for ``whisper_decode``.

Examples::

    python -m speechkd.bin.whisper_train --train-cuts data/fbank/mini_cuts_train.jsonl.gz \\
        --dev-cuts data/fbank/mini_cuts_dev.jsonl.gz --model-config conf/whisper_mini.json \\
        --tokenizer data/lang_whisper --exp-dir exp/whisper/mini --epochs 10 --lr 1e-3
    python -m speechkd.bin.whisper_train --train-cuts train.jsonl.gz --init-from exp/base/model \\
        --peft s2lora --peft-options '{"r": 8}' --exp-dir exp/s2lora --epochs 3 --lr 1e-3 --resume
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import yaml
from lhotse import CutSet

from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper.data import DurationBatchSampler, WhisperAsrDataset, encoder_num_frames
from speechkd.whisper.decode import configure_generation, configure_special_tokens
from speechkd.whisper.params import WHISPER_SIZES, build_whisper, count_parameters, whisper_config
from speechkd.whisper.peft_methods import PEFT_METHODS, apply_peft, peft_regularization
from speechkd.whisper.trainer import TrainerConfig, WhisperTrainer, export_model, seed_everything

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--train-cuts", required=True, help="lhotse CutSet of the training data")
    p.add_argument("--dev-cuts", default=None, help="CutSet for the per-epoch validation loss")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model-config",
        help=f"random init: a Whisper size ({'|'.join(WHISPER_SIZES)}) or a config.json path",
    )
    model.add_argument("--init-from", help="directory of a save_pretrained Whisper model")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer directory or hub name (default: --init-from, else openai/whisper-small)",
    )
    p.add_argument("--peft", choices=PEFT_METHODS, default="full")
    p.add_argument("--peft-options", default="{}", help="JSON dict of apply_peft options")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--accum-grad", type=int, default=1)
    p.add_argument("--clip-grad-norm", type=float, default=1.0, help="0: no clipping")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--max-duration", type=float, default=200.0, help="seconds of audio per batch")
    p.add_argument("--max-cuts", type=int, default=None, help="cuts per batch at most")
    p.add_argument("--num-buckets", type=int, default=10)
    p.add_argument(
        "--language-homogeneous", action="store_true", help="one language per batch (CLSR)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--keep-last", type=int, default=None, help="epoch checkpoints to keep")
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--export-dir", default=None, help="default: <exp-dir>/model")
    p.add_argument("--no-progress", action="store_true")
    return p


def load_cuts(path: str) -> CutSet:
    if not Path(path).is_file():
        raise DataError(f"{path}: CutSet manifest not found")
    return CutSet.from_file(path).to_eager()


def build_model(args: argparse.Namespace, tokenizer):
    """A Whisper model from ``--init-from`` or ``--model-config``, with the tokenizer's ids."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if args.init_from:
        model = WhisperForConditionalGeneration.from_pretrained(
            args.init_from, use_safetensors=True
        )
    else:
        if args.model_config in WHISPER_SIZES:
            config = whisper_config(args.model_config)
        elif Path(args.model_config).is_file():
            config = WhisperConfig.from_json_file(args.model_config)
        else:
            raise ConfigError(
                f"--model-config {args.model_config!r}: neither a Whisper size "
                f"({', '.join(WHISPER_SIZES)}) nor a config.json file"
            )
        configure_special_tokens(config, tokenizer)
        model = build_whisper(config, device="cpu")
    configure_generation(model, tokenizer)
    return model


def parse_peft_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--peft-options is not valid JSON ({err})") from None
    if not isinstance(options, dict):
        raise ConfigError("--peft-options must be a JSON object")
    return options


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    exp_dir = Path(args.exp_dir)
    setup_logging(exp_dir / "log" / "train.log")
    command = "python -m speechkd.bin.whisper_train " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    logger.info("%s", command)
    tokenizer = load_whisper_tokenizer(args.tokenizer or args.init_from or "openai/whisper-small")
    seed_everything(args.seed)  # the random initialisation and adapters depend on --seed
    model = build_model(args, tokenizer)
    train_cuts = load_cuts(args.train_cuts)
    dev_cuts = load_cuts(args.dev_cuts) if args.dev_cuts else None

    def sampler(cuts: CutSet, shuffle: bool) -> DurationBatchSampler:
        return DurationBatchSampler(
            cuts,
            args.max_duration,
            shuffle=shuffle,
            seed=args.seed,
            num_buckets=args.num_buckets,
            language_homogeneous=args.language_homogeneous,
            max_cuts=args.max_cuts,
        )

    dataset = WhisperAsrDataset(
        tokenizer,
        num_frames=encoder_num_frames(model.config),
        num_mel_bins=model.config.num_mel_bins,
        max_target_length=model.config.max_target_positions,
    )
    train_sampler = sampler(train_cuts, shuffle=True)
    config = TrainerConfig(
        exp_dir=str(exp_dir),
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        warmup_epochs=args.warmup_epochs,
        accum_grad=args.accum_grad,
        clip_grad_norm=args.clip_grad_norm or None,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        log_interval=args.log_interval,
        keep_last=args.keep_last,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    peft_options = parse_peft_options(args.peft_options)
    if args.peft == "adalora" and "total_step" not in peft_options:
        steps = -(-len(train_sampler) // args.accum_grad) * args.epochs
        peft_options["total_step"] = steps
    model = apply_peft(model, args.peft, **peft_options)
    counts = count_parameters(model)
    logger.info(
        "%s: %d Whisper parameters, %d trainable (%.3f%%)",
        args.peft,
        counts.total,
        counts.trainable,
        counts.trainable_percent,
    )
    extra_loss = None
    if args.peft == "s2lora":

        def extra_loss(model, batch, outputs):
            return {"s2lora_reg": peft_regularization(model)}

    trainer = WhisperTrainer(
        model,
        config,
        dataset,
        train_sampler,
        valid_dataset=dataset if dev_cuts is not None else None,
        valid_sampler=sampler(dev_cuts, shuffle=False) if dev_cuts is not None else None,
        extra_loss=extra_loss,
    )
    settings = {**vars(args), "peft_options": peft_options, "command": command}
    atomic_write_text(exp_dir / "config.yaml", yaml.safe_dump(settings, sort_keys=True))
    if args.resume:
        trainer.resume()
    summary = trainer.fit()
    best = trainer.load_best()
    logger.info("Best checkpoint: %s", best)
    export_model(trainer.model, args.export_dir or exp_dir / "model", tokenizer, merge=True)
    atomic_write_text(
        exp_dir / "train-summary.json", json.dumps(summary, indent=2, default=str) + "\n"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
