"""PEPSI's pruning phase: lottery-ticket IMP of Whisper with LoRA on the decoder attention.

Each round trains Whisper+LoRA briefly on the target language (``--round-epochs`` 2 at
``--round-lr`` 1e-5), prunes by global magnitude to sparsity 1 − 0.9^i (``--rate`` of the
parameters still alive; the last round clamped to ``--target-sparsity``), and rewinds the
survivors to the pretrained weights (``--rewind init``) or to those after step t of round 1
(``--rewind t``). LoRA and the Whisper weights it is attached to (decoder q/v) are never pruned.

Sparsities (target, milestones) are shares of ALL Whisper parameters, as PEPSI's 0.77B alive of
1.54B for whisper-large at 50%: the unprunable parameters (biases, norms, the fixed encoder
positions, the LoRA-carrying q/v) count as alive, so the prunable weights lose more than the
target (whisper-large: 58%). A target the prunable weights cannot reach is an error.

Writes into ``--exp-dir`` (see ``speechkd.whisper.imp``)::

    model/                the pruned model (the ticket): a plain Whisper directory with the pruned
                          weights stored as zeros. The IMP LoRA is merged into it; rewound to
                          init it is zero, so this is the pretrained Whisper with the masks
                          applied. PEPSI then trains a fresh decoder LoRA on it:
                          whisper_train --init-from <exp>/model --masks <exp>/masks.safetensors
                          --peft pepsi --lr 1e-3 (LTH-FT: --peft full with the same masks).
                          Decoded as is, it is the "LTH" (pruned, zero-shot) baseline.
    masks.safetensors     keep-masks with plain Whisper parameter names (speechkd.whisper.pruning
                          load_masks / resolve_masks)
    pruned.safetensors    the same model in the compact form (load_pruned)
    trained-model/        the last round's trained weights (LoRA merged) with the final masks
    imp-history.json      per round: sparsity and alive share of all parameters, alive count,
                          pruned share of the prunable weights, alive fraction per layer group,
                          losses, time
    result.json           the ticket's alive_params, total_params, alive_share, sparsity
    params.json, results_meta.json   parameter counts (inference = alive, alive_share,
                          sparsity) for write_results
    milestones/prune-<pct>/   with --milestones: the same files for each pruning level, equal to
                          a separate IMP run to that level (PEPSI Fig. 4: --target-sparsity 0.9
                          --milestones 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9)
    imp/round-<i>/        per round: round.json, masks.safetensors (with --save-every-round also
                          model/, trained-model/, pruned.safetensors: sparsity 1 − 0.9^i)

An interrupted run continues after its last finished round with ``--resume`` (same settings).

Examples::

    python -m speechkd.bin.pepsi_prune --init-from exp/whisper/mini/model \\
        --tokenizer data/lang_whisper --train-cuts data/fbank/mini_cuts_train_ko.jsonl.gz \\
        --dev-cuts data/fbank/mini_cuts_dev_ko.jsonl.gz --exp-dir exp/pepsi/imp
    python -m speechkd.bin.pepsi_prune --init-from whisper-large-dir --train-cuts train.jsonl.gz \\
        --exp-dir exp/pepsi/imp90 --target-sparsity 0.9 \\
        --milestones 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 --save-every-round --resume
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

from speechkd.data.manifest_io import read_cuts
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import HelpFormatter, run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper.data import DurationBatchSampler, WhisperAsrDataset
from speechkd.whisper.decode import configure_generation
from speechkd.whisper.imp import WhisperRoundTrainer, parse_rewind, run_imp
from speechkd.whisper.params import count_parameters
from speechkd.whisper.peft_methods import PEPSI_TARGETS, apply_peft
from speechkd.whisper.trainer import TrainerConfig, seed_everything

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--init-from", required=True, help="save_pretrained Whisper model directory")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --init-from)")
    p.add_argument("--train-cuts", required=True, help="CutSet of the target language")
    p.add_argument("--dev-cuts", default=None, help="CutSet for the per-epoch validation loss")
    p.add_argument("--exp-dir", required=True, help="experiment directory")
    imp = p.add_argument_group("iterative magnitude pruning")
    imp.add_argument(
        "--target-sparsity", type=float, default=0.5, help="pruned share of all parameters"
    )
    imp.add_argument("--rate", type=float, default=0.1, help="pruned share of the rest per round")
    imp.add_argument("--rewind", default="init", help="'init' or an optimizer step t of round 1")
    imp.add_argument(
        "--exclude", nargs="*", default=[], metavar="REGEX", help="parameter names not to prune"
    )
    imp.add_argument(
        "--milestones",
        nargs="*",
        type=float,
        default=[],
        metavar="SPARSITY",
        help="also export the models pruned to these fractions (each <= --target-sparsity)",
    )
    imp.add_argument(
        "--save-every-round", action="store_true", help="export every round's model for decoding"
    )
    lora = p.add_argument_group("LoRA on the decoder attention (q, v)")
    lora.add_argument("--lora-r", type=int, default=8, help="LoRA rank")
    lora.add_argument("--lora-alpha", type=int, default=64, help="LoRA scaling alpha")
    lora.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout")
    lora.add_argument("--lora-targets", default=PEPSI_TARGETS, help="peft target_modules regex")
    lora.add_argument(
        "--no-lora", action="store_true", help="plain Whisper IMP (every weight prunable)"
    )
    train = p.add_argument_group("training in each round")
    train.add_argument("--round-epochs", type=int, default=2, help="training epochs a round")
    train.add_argument("--round-lr", type=float, default=1e-5, help="peak learning rate")
    train.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    train.add_argument("--warmup-steps", type=int, default=None, help="default: --warmup-epochs")
    train.add_argument("--warmup-epochs", type=float, default=0.0, help="warm-up in epochs")
    train.add_argument("--accum-grad", type=int, default=1, help="batches a step")
    train.add_argument("--clip-grad-norm", type=float, default=1.0, help="0: no clipping")
    train.add_argument("--max-duration", type=float, default=200.0, help="seconds per batch")
    train.add_argument("--max-cuts", type=int, default=None, help="cuts per batch at most")
    train.add_argument("--num-buckets", type=int, default=10, help="duration buckets")
    p.add_argument("--seed", type=int, default=42, help="random seed")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--log-interval", type=int, default=10, help="log every N steps")
    p.add_argument("--resume", action="store_true", help="continue after the last finished round")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    meta = p.add_argument_group("report metadata (results_meta.json)")
    meta.add_argument("--method-name", default="lth", help="method column of RESULTS.md")
    meta.add_argument("--model-name", default=None, help="model column (default: exp dir name)")
    meta.add_argument("--description", default="", help="one line for RESULTS.md")
    return p


def load_cuts(path: str) -> CutSet:
    if not Path(path).is_file():
        raise DataError(f"{path}: CutSet manifest not found")
    return read_cuts(path)


def load_model(init_from: str, tokenizer):
    from transformers import WhisperForConditionalGeneration

    if not (Path(init_from) / "config.json").is_file():
        raise DataError(f"--init-from {init_from}: no config.json: not a Whisper model directory")
    model = WhisperForConditionalGeneration.from_pretrained(init_from, use_safetensors=True)
    configure_generation(model, tokenizer)
    return model


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    rewind_to = parse_rewind(args.rewind)
    exp_dir = Path(args.exp_dir)
    setup_logging(exp_dir / "log" / "pepsi_prune.log")
    command = "python -m speechkd.bin.pepsi_prune " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    logger.info("%s", command)
    tokenizer = load_whisper_tokenizer(args.tokenizer or args.init_from)
    seed_everything(args.seed)  # the LoRA initialisation depends on --seed
    model = load_model(args.init_from, tokenizer)
    if args.no_lora:
        model = apply_peft(model, "full")
    else:
        model = apply_peft(
            model,
            "pepsi",
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules=args.lora_targets,
            train_base=True,
        )
    train_cuts = load_cuts(args.train_cuts)
    dev_cuts = load_cuts(args.dev_cuts) if args.dev_cuts else None

    def sampler(cuts: CutSet, shuffle: bool) -> DurationBatchSampler:
        return DurationBatchSampler(
            cuts,
            args.max_duration,
            shuffle=shuffle,
            seed=args.seed,
            num_buckets=args.num_buckets,
            max_cuts=args.max_cuts,
        )

    dataset = WhisperAsrDataset.for_model(tokenizer, model.config)
    trainer_config = TrainerConfig(
        exp_dir=str(exp_dir),
        epochs=args.round_epochs,
        lr=args.round_lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        warmup_epochs=args.warmup_epochs,
        accum_grad=args.accum_grad,
        clip_grad_norm=args.clip_grad_norm or None,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        log_interval=args.log_interval,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    train_round = WhisperRoundTrainer(
        trainer_config,
        dataset,
        sampler(train_cuts, shuffle=True),
        valid_dataset=dataset if dev_cuts is not None else None,
        valid_sampler=sampler(dev_cuts, shuffle=False) if dev_cuts is not None else None,
    )
    # What a resumed run must share (target and milestones may change).
    settings = {
        key: value
        for key, value in vars(args).items()
        if key
        not in {
            "exp_dir",
            "target_sparsity",
            "milestones",
            "save_every_round",
            "rate",
            "rewind",
            "exclude",
            "resume",
            "no_progress",
            "num_workers",
            "log_interval",
            "method_name",
            "model_name",
            "description",
            "device",
        }
    }
    atomic_write_text(
        exp_dir / "config.yaml", yaml.safe_dump({**vars(args), "command": command}, sort_keys=True)
    )
    result = run_imp(
        model,
        train_round,
        exp_dir,
        target_sparsity=args.target_sparsity,
        rate=args.rate,
        rewind_to=rewind_to,
        exclude=args.exclude,
        milestones=args.milestones,
        save_every_round=args.save_every_round,
        tokenizer=tokenizer,
        settings=settings,
        resume=args.resume,
    )
    final = result.history["rounds"][-1]
    counts = count_parameters(model)
    params = {
        "total": counts.total,
        "trainable": 0,
        "inference": final["alive_params"],
        "alive_share": final["alive_share"],
        "sparsity": final["sparsity"],
        "sparsity_of": result.history["sparsity_of"],
        "prunable": final["prunable"],
        "pruned": final["pruned"],
        "prunable_sparsity": final["prunable_sparsity"],
    }
    atomic_write_text(exp_dir / "params.json", json.dumps(params, indent=2) + "\n")
    meta = {
        "method": args.method_name,
        "model": args.model_name or exp_dir.name,
        "description": args.description
        or f"IMP to {100 * final['sparsity']:.1f}% of all parameters pruned, rewound to "
        f"{rewind_to}",
        "command": command,
        "trainable_params": 0,
        "total_params": counts.total,
    }
    atomic_write_text(exp_dir / "results_meta.json", json.dumps(meta, indent=2) + "\n")
    logger.info(
        "Pruned model: %s (%d of %d Whisper parameters alive: %.4f), masks %s",
        result.model_dir,
        final["alive_params"],
        counts.total,
        final["alive_share"],
        result.masks_path,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
