"""Fine-tune a Whisper model (full or a PEFT method) on a lhotse CutSet.

Writes into ``--exp-dir``: ``config.yaml``, ``log/train.log`` (losses, step/total and ETA every
``--log-interval`` steps), ``tensorboard/``, ``loss-curve.png`` (updated every epoch),
``checkpoints/epoch-<N>/`` (model, optimizer, scheduler, sampler and RNG states),
``best-checkpoint.json`` and, at the end, the best model exported with ``save_pretrained``
(adapters merged) into ``<exp-dir>/model`` for ``whisper_decode``. The best epoch has the lowest
dev loss (``--select-by loss``, the default) or the lowest dev WER/CER (``--select-by wer|cer``:
the dev cuts, or the first ``--select-max-cuts`` of each language, are decoded greedily at the
end of every epoch and scored with the Whisper normalisation; the macro average over languages
decides).

Examples::

    python -m speechkd.bin.whisper_train --train-cuts data/fbank/mini_cuts_train.jsonl.gz \\
        --dev-cuts data/fbank/mini_cuts_dev.jsonl.gz --model-config conf/whisper_mini.json \\
        --tokenizer data/lang_whisper --exp-dir exp/whisper/mini --epochs 10 --lr 1e-3
    python -m speechkd.bin.whisper_train --train-cuts train.jsonl.gz --init-from exp/base/model \\
        --peft s2lora --peft-options '{"r": 8}' --exp-dir exp/s2lora --epochs 3 --lr 1e-3 --resume

DistilWhisper (CLSR experts for ca and th, JS KD from a cached teacher, α = 2, b = 0.5)::

    python -m speechkd.bin.whisper_train --train-cuts train.jsonl.gz --init-from whisper-small \\
        --clsr-languages ca th --kd-cache exp/teacher_cache --kd-divergence js --kd-weight 2 \\
        --label-smoothing 0.1 --dev-cuts dev.jsonl.gz --select-by wer --exp-dir exp/distilwhisper

A CLSR model is exported as one ``<lang>.safetensors`` (+ json) per language in
``<exp-dir>/language_modules`` (loaded onto the unchanged base model by ``whisper_decode
--language-modules``). Every run writes ``params.json`` (total, trainable, inference) and
``results_meta.json`` (method, model, description, command) for ``write_results``.
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
from speechkd.errors import ConfigError, DataError
from speechkd.launch.distributed import init_distributed, is_main_process, teardown_distributed
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import HelpFormatter, run_cli
from speechkd.utils.logging import setup_logging
from speechkd.utils.options import add_dataclass_options, dataclass_from_options
from speechkd.whisper.clsr import add_clsr, language_parameter_count
from speechkd.whisper.data import DurationBatchSampler, WhisperAsrDataset
from speechkd.whisper.decode import (
    configure_generation,
    configure_special_tokens,
    load_whisper_model,
)
from speechkd.whisper.distil import (
    KD_DIVERGENCES,
    DistilOptions,
    OnlineTeacher,
    check_teacher_compatible,
    distil_extra_loss,
)
from speechkd.whisper.language_modules import save_language_modules
from speechkd.whisper.params import WHISPER_SIZES, build_whisper, count_parameters, whisper_config
from speechkd.whisper.peft_methods import PEFT_METHODS, apply_peft, peft_regularization
from speechkd.whisper.pruning import (
    enforce_masks,
    load_masks,
    mask_enforcing_hook,
    resolve_masks,
)
from speechkd.whisper.selection import (
    DEFAULT_TOKENS_PER_SECOND,
    DevErrorRate,
)
from speechkd.whisper.teacher_cache import TeacherCache
from speechkd.whisper.trainer import (
    TrainerConfig,
    TrainingHooks,
    WhisperTrainer,
    clsr_training_hooks,
    default_device,
    export_model,
    planned_steps,
    seed_everything,
)

logger = logging.getLogger(__name__)

# PEFT methods whose export keeps pruned weights at zero (full: the masked weights themselves;
# pepsi: LoRA only on decoder q/v, which pruning never touches)
MASK_SAFE_METHODS = ("full", "pepsi", "bitfit")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--train-cuts", required=True, help="lhotse CutSet of the training data")
    p.add_argument("--dev-cuts", default=None, help="CutSet for the per-epoch validation loss")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        help="YAML file of option defaults (repeatable; later files and explicit flags win)",
    )
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
    p.add_argument("--peft", choices=PEFT_METHODS, default="full", help="fine-tuning method")
    p.add_argument("--peft-options", default="{}", help="JSON dict of apply_peft options")
    p.add_argument(
        "--s2lora-alpha1", type=float, default=0.05, help="S2-LoRA: weight of the L1 on s_i"
    )
    p.add_argument(
        "--s2lora-alpha2", type=float, default=0.1, help="S2-LoRA: weight of the L2 on B, A"
    )
    p.add_argument(
        "--masks",
        default=None,
        help="pruning masks (pepsi_prune's masks.safetensors): pruned weights stay zero "
        "(LTH-FT with --peft full, PEPSI with --peft pepsi)",
    )
    add_dataclass_options(p.add_argument_group("training (TrainerConfig)"), TrainerConfig)
    batches = p.add_argument_group("batches")
    batches.add_argument(
        "--max-duration", type=float, default=200.0, help="seconds of audio per batch"
    )
    batches.add_argument("--max-cuts", type=int, default=None, help="cuts per batch at most")
    batches.add_argument(
        "--num-buckets", type=int, default=10, help="duration buckets of the sampler"
    )
    batches.add_argument(
        "--language-homogeneous", action="store_true", help="one language per batch (CLSR)"
    )
    clsr = p.add_argument_group("CLSR language experts and distillation (DistilWhisper)")
    clsr.add_argument(
        "--clsr-languages",
        nargs="+",
        default=None,
        help="install CLSR experts+gates for these languages and train only them",
    )
    clsr.add_argument(
        "--clsr-options",
        default="{}",
        help="JSON dict of CLSR options (gate_dim, skip_gate_prob, max_noise_std, "
        "noise_ramp_steps: default the total optimizer steps, ...)",
    )
    clsr.add_argument(
        "--gate-budget", type=float, default=0.5, help="b of the gate budget loss |mean g - b|"
    )
    clsr.add_argument("--no-gate-loss", action="store_true", help="train CLSR without L_g")
    clsr.add_argument("--kd-teacher", default=None, help="teacher model dir (online teacher)")
    clsr.add_argument("--kd-cache", default=None, help="teacher top-k cache (cache_teacher)")
    clsr.add_argument("--kd-divergence", choices=KD_DIVERGENCES, default="js", help="KD divergence")
    clsr.add_argument("--kd-weight", type=float, default=2.0, help="alpha of alpha*L_KD")
    clsr.add_argument("--kd-temperature", type=float, default=1.0, help="KD temperature")
    meta = p.add_argument_group("report metadata (results_meta.json)")
    meta.add_argument("--method-name", default=None, help="method column of RESULTS.md")
    meta.add_argument("--model-name", default=None, help="model column (default: exp dir name)")
    meta.add_argument("--description", default="", help="one line for RESULTS.md")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    select = p.add_argument_group("best checkpoint (--select-by wer|cer)")
    select.add_argument(
        "--select-max-cuts",
        type=int,
        default=None,
        help="--select-by wer|cer: decode only the first N dev cuts of each language",
    )
    select.add_argument(
        "--select-tokens-per-second",
        type=float,
        default=DEFAULT_TOKENS_PER_SECOND,
        help="--select-by wer|cer: new tokens allowed per second of audio (looping hypotheses)",
    )
    p.add_argument("--export-dir", default=None, help="default: <exp-dir>/model")
    return p


def load_cuts(path: str) -> CutSet:
    """The eager CutSet of ``path``; a missing, truncated or corrupt file is a DataError."""
    return read_cuts(path)


def build_model(args: argparse.Namespace, tokenizer):
    """A Whisper model from ``--init-from`` or ``--model-config``, with the tokenizer's ids."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    if args.init_from:
        init = Path(args.init_from)
        if init.is_dir() and not any(init.glob("*.safetensors")):
            found = sorted(p.name for p in init.glob("*.bin")) + sorted(
                p.name for p in init.glob("*.pt")
            )
            raise DataError(
                f"{init}: no model.safetensors (found {', '.join(found) or 'nothing'}: pickled "
                "checkpoints are not loaded); convert with save_pretrained(safe_serialization=True)"
            )
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


def parse_json_options(text: str, flag: str = "--peft-options") -> dict:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{flag} is not valid JSON ({err})") from None
    if not isinstance(options, dict):
        raise ConfigError(f"{flag} must be a JSON object")
    return options


def parse_peft_options(text: str) -> dict:
    return parse_json_options(text, "--peft-options")


def check_method_args(args: argparse.Namespace) -> None:
    """Reject flag combinations that cannot mean anything."""
    for flag in ("s2lora_alpha1", "s2lora_alpha2"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    if args.kd_teacher and args.kd_cache:
        raise ConfigError("--kd-teacher and --kd-cache exclude each other")
    if args.clsr_languages and args.peft != "full":
        raise ConfigError(f"--clsr-languages trains CLSR experts only; drop --peft {args.peft}")
    if args.masks and args.peft not in MASK_SAFE_METHODS:
        raise ConfigError(
            f"--masks with --peft {args.peft}: merging its adapters at export would refill pruned "
            f"weights; use one of {MASK_SAFE_METHODS}"
        )
    if args.masks and not Path(args.masks).is_file():
        raise DataError(f"--masks {args.masks}: masks file not found")
    if args.kd_cache and not Path(args.kd_cache).is_dir():
        raise DataError(f"--kd-cache {args.kd_cache}: teacher cache directory not found")
    if args.kd_teacher and not Path(args.kd_teacher).is_dir():
        raise DataError(f"--kd-teacher {args.kd_teacher}: teacher model directory not found")
    if args.select_by != "loss" and not args.dev_cuts:
        raise ConfigError(f"--select-by {args.select_by} decodes --dev-cuts: give them")
    if args.select_max_cuts is not None and args.select_max_cuts < 1:
        raise ConfigError(f"--select-max-cuts must be >= 1, got {args.select_max_cuts}")
    if args.select_tokens_per_second <= 0:
        raise ConfigError(
            f"--select-tokens-per-second must be positive, got {args.select_tokens_per_second}"
        )


def write_report_metadata(
    args: argparse.Namespace, exp_dir: Path, command: str, params: dict[str, int]
) -> None:
    """``params.json`` and ``results_meta.json`` of the experiment directory."""
    atomic_write_text(exp_dir / "params.json", json.dumps(params, indent=2) + "\n")
    meta = {
        "method": args.method_name or ("clsr" if args.clsr_languages else args.peft),
        "model": args.model_name or exp_dir.name,
        "description": args.description,
        "command": command,
        "trainable_params": params["trainable"],
        "total_params": params["total"],
    }
    atomic_write_text(exp_dir / "results_meta.json", json.dumps(meta, indent=2) + "\n")


def build_extra_loss(args: argparse.Namespace, model):
    """The extra-loss hook: S2-LoRA's regulariser, or the gate budget and KD terms."""
    if args.peft == "s2lora":
        alphas = {"alpha1": args.s2lora_alpha1, "alpha2": args.s2lora_alpha2}

        def s2lora_loss(model, batch, outputs):
            return {"s2lora_reg": peft_regularization(model, **alphas)}

        return s2lora_loss
    gate = args.clsr_languages and not args.no_gate_loss
    if not (gate or args.kd_teacher or args.kd_cache):
        return None
    options = DistilOptions(
        kd_weight=args.kd_weight,
        divergence=args.kd_divergence,
        temperature=args.kd_temperature,
        gate_budget=args.gate_budget if gate else None,
    )
    teacher = cache = None
    if args.kd_teacher:
        teacher_model = load_whisper_model(args.kd_teacher)
        check_teacher_compatible(teacher_model, model)
        teacher = OnlineTeacher(teacher_model, default_device(args.device))
    elif args.kd_cache:
        cache = TeacherCache(args.kd_cache)
        if cache.vocab_size != model.config.vocab_size:
            raise ConfigError(
                f"--kd-cache {args.kd_cache}: teacher vocabulary {cache.vocab_size} differs from "
                f"the student's {model.config.vocab_size}"
            )
    return distil_extra_loss(options, teacher=teacher, cache=cache)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--config FILE`` (YAML, keys = option names) sets their defaults."""
    parser = get_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    for path in known.config:
        parser.set_defaults(**read_config_defaults(parser, path))
    return parser.parse_args(argv)


def config_action(
    parser: argparse.ArgumentParser, key: str, value: object
) -> tuple[argparse.Action | None, object]:
    """The option a ``--config`` key names (its flag or its destination) and the value to set.

    ``no_progress: true`` (the flag ``--no-progress``) sets ``progress`` to False, as does
    ``progress: false``.
    """
    flag = "--" + key.replace("_", "-")
    for action in parser._actions:
        if flag in action.option_strings:
            if isinstance(action, argparse._StoreFalseAction):
                value = not value
            return action, value
    dest = key.replace("-", "_")
    return next((a for a in parser._actions if a.dest == dest), None), value


def read_config_defaults(parser: argparse.ArgumentParser, path: str) -> dict:
    """Option defaults from a YAML file; an unknown key or a wrong type raises ConfigError."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"--config {path}: cannot read YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    defaults = {}
    for key, value in data.items():
        action, value = config_action(parser, str(key), value)
        if action is None or action.dest in ("help", "config"):
            raise ConfigError(f"--config {path}: unknown option {key!r}")
        dest = action.dest
        if isinstance(value, dict):
            value = json.dumps(value)  # JSON-valued options (--peft-options, --clsr-options)
        elif action.type is not None and value is not None and not isinstance(value, list):
            try:
                value = action.type(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"--config {path}: {key}={value!r} is not a valid value"
                ) from None
        if action.choices is not None and value not in action.choices:
            raise ConfigError(
                f"--config {path}: {key}={value!r} is not one of {list(action.choices)}"
            )
        defaults[dest] = value
    return defaults


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_method_args(args)
    exp_dir = Path(args.exp_dir)
    # torchrun / srun: one process per device, rank 0 writes every shared file
    env = init_distributed(default_device(args.device))
    log_name = "train.log" if env.rank == 0 else f"train.rank{env.rank}.log"
    setup_logging(exp_dir / "log" / log_name)
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
            language_homogeneous=args.language_homogeneous or bool(args.clsr_languages),
            max_cuts=args.max_cuts,
        )

    dataset = WhisperAsrDataset.for_model(tokenizer, model.config)
    train_sampler = sampler(train_cuts, shuffle=True)
    config = dataclass_from_options(TrainerConfig, args)
    _, total_steps = planned_steps(len(train_sampler), env.world_size, config)
    base_total = count_parameters(model).total
    peft_options = parse_peft_options(args.peft_options)
    hooks = TrainingHooks()
    if args.clsr_languages:
        clsr_options = parse_json_options(args.clsr_options, "--clsr-options")
        clsr_options.setdefault("noise_ramp_steps", total_steps)
        model = add_clsr(model, args.clsr_languages, **clsr_options)
        hooks = clsr_training_hooks(model)
        inference = base_total + language_parameter_count(model, args.clsr_languages[0])
    else:
        if args.peft == "adalora" and "total_step" not in peft_options:
            peft_options["total_step"] = total_steps
        model = apply_peft(model, args.peft, **peft_options)
        inference = base_total  # adapters are merged into the weights at export
        if args.masks:
            masks = resolve_masks(model, load_masks(args.masks))
            enforce_masks(model, masks)
            hooks.after_optimizer_step = mask_enforcing_hook(masks, then=hooks.after_optimizer_step)
            inference = base_total - sum(int((~m.bool()).sum()) for m in masks.values())
    counts = count_parameters(model)
    params = {"total": base_total, "trainable": counts.trainable, "inference": inference}
    logger.info(
        "%s: %d Whisper parameters, %d trainable (%.3f%%), %d at inference",
        "clsr" if args.clsr_languages else args.peft,
        base_total,
        counts.trainable,
        100.0 * counts.trainable / base_total,
        inference,
    )
    extra_loss = build_extra_loss(args, model)
    dev_scorer = None
    if args.select_by != "loss":
        dev_scorer = DevErrorRate(
            tokenizer,
            dev_cuts,
            args.select_by,
            max_duration=args.max_duration,
            max_cuts=args.select_max_cuts,
            tokens_per_second=args.select_tokens_per_second,
        )

    trainer = WhisperTrainer(
        model,
        config,
        dataset,
        train_sampler,
        valid_dataset=dataset if dev_cuts is not None else None,
        valid_sampler=sampler(dev_cuts, shuffle=False) if dev_cuts is not None else None,
        extra_loss=extra_loss,
        dev_scorer=dev_scorer,
        **hooks.kwargs(),
    )
    settings = {**vars(args), "peft_options": peft_options, "command": command}
    settings["world_size"] = env.world_size
    if is_main_process():
        write_report_metadata(args, exp_dir, command, params)
        atomic_write_text(exp_dir / "config.yaml", yaml.safe_dump(settings, sort_keys=True))
    if args.resume:
        trainer.resume()
    summary = trainer.fit()
    best = trainer.load_best()
    logger.info("Best checkpoint: %s", best)
    if is_main_process():
        export_trained(args, trainer.model, exp_dir, tokenizer, command)
        atomic_write_text(
            exp_dir / "train-summary.json", json.dumps(summary, indent=2, default=str) + "\n"
        )
    teardown_distributed()
    return 0


def export_trained(args: argparse.Namespace, model, exp_dir: Path, tokenizer, command: str) -> None:
    """CLSR: one module file per language; otherwise the model with adapters merged."""
    if args.clsr_languages:
        save_language_modules(
            model,
            args.export_dir or exp_dir / "language_modules",
            extra_metadata={"base_model": args.init_from or args.model_config, "command": command},
        )
    else:
        export_model(model, args.export_dir or exp_dir / "model", tokenizer, merge=True)


if __name__ == "__main__":
    run_cli(main)
