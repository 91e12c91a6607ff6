"""Lottery-ticket iterative magnitude pruning (IMP) of Whisper+LoRA: PEPSI's pruning phase.

Round i (1-based) of :func:`run_imp`:

1. train the current ticket (Whisper weights and LoRA; pruned weights held at zero through every
   optimizer step) with ``train_round``: PEPSI trains 2 epochs at LR 1e-5
   (:class:`WhisperRoundTrainer`);
2. prune by global magnitude of the trained weights to sparsity s_i = 1 − (1 − rate)^i of ALL
   parameters (:func:`speechkd.whisper.pruning.prune_schedule`, the last round clamped to the
   target): round(s_i · N) weights pruned, N the Whisper parameters of the model (adapters
   excluded: they merge into the weights). LoRA parameters and the Whisper weights they are
   attached to are never prunable, nor are biases, norms and the fixed encoder positions; they
   count as alive, so the prunable weights are pruned beyond s_i (PEPSI's 50% of whisper-large:
   0.77B of 1.54B alive);
3. rewind every parameter (Whisper and LoRA) to the rewind point and zero the pruned weights:
   ``rewind_to="init"`` is the model given to ``run_imp`` (pretrained Whisper, freshly initialised
   LoRA, whose B = 0 adds nothing), ``rewind_to=t`` the weights after t optimizer steps of round 1.

Files (every one written atomically)::

    <exp>/imp-history.json        per round: sparsity (of all parameters), alive count and share,
                                  pruned share of the prunable weights, alive fraction per layer
                                  group (PEPSI Fig. 3b), losses, wall time
    <exp>/model/                  the final ticket as a plain Whisper model (save_pretrained, LoRA
                                  merged, pruned weights stored as zeros) + tokenizer
    <exp>/masks.safetensors       its keep-masks, plain Whisper parameter names
    <exp>/pruned.safetensors      the same model in the compact form (save_pruned / load_pruned)
    <exp>/trained-model/          the last round's trained weights (LoRA merged) with the final
                                  masks applied: "masks applied to the updated weights" (Fig. 4)
    <exp>/imp/imp-config.json     settings a resumed run must share
    <exp>/imp/rewind-point.safetensors   the weights rewound to
    <exp>/imp/round-<i>/          round.json + masks.safetensors; with ``save_every_round`` also
                                  model/, trained-model/, pruned.safetensors, result.json
    <exp>/imp/train/round-<i>/    the round's trainer directory (epoch checkpoints while it runs)
    <exp>/milestones/prune-<pct>/ model/, trained-model/, masks.safetensors, pruned.safetensors,
                                  result.json for every requested milestone sparsity
    result.json (beside model/)   alive_params, total_params, alive_share, sparsity (all
                                  parameters), prunable_sparsity

Resuming: a round is finished once ``imp/round-<i>/`` exists; a rerun (``resume=True``) rebuilds
the ticket of the last finished round from the rewind point and its masks and continues with the
next round (inside a round, from the trainer's last epoch checkpoint). Given deterministic
training the final masks equal those of an uninterrupted run.

Milestones (PEPSI Fig. 4: CER at 10, 20, …, 90% pruned, each from IMP to that level): IMP to a
target p runs the schedule's rounds below p and then one last round, clamped to p, which trains
exactly as the schedule's next round does. So a milestone p with s_{i−1} < p ≤ s_i is the same
training as round i pruned to p instead of s_i (global magnitude pruning is nested: the masks at
p contain those at s_i): one IMP run to 0.9 with ``milestones=(0.1, …, 0.9)`` yields the nine
results of nine separate runs, at the cost of the exports only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_directory, atomic_path, atomic_write_text
from speechkd.whisper import peft_methods
from speechkd.whisper.params import alive_parameter_count, total_parameter_count
from speechkd.whisper.pruning import (
    LAYER_GROUPS,
    Masks,
    alive_fraction_by_group,
    apply_masks,
    check_sparsity,
    enforce_masks,
    global_magnitude_prune,
    init_masks,
    load_masks,
    mask_enforcing_hook,
    mask_sparsity,
    max_sparsity,
    prune_schedule,
    pruned_share,
    resolve_masks,
    rewind,
    save_masks,
    save_pruned,
    snapshot,
    unwrap_mask_names,
)

logger = logging.getLogger(__name__)

IMP_DIR = "imp"
CONFIG_FILE = "imp-config.json"
HISTORY_FILE = "imp-history.json"
REFERENCE_FILE = "rewind-point.safetensors"
ROUND_FILE = "round.json"
RESULT_FILE = "result.json"
MASKS_FILE = "masks.safetensors"
PRUNED_FILE = "pruned.safetensors"
TICKET_DIR = "model"
TRAINED_DIR = "trained-model"
MILESTONE_DIR = "milestones"
TRAIN_DIR = "train"
HISTORY_FORMAT = "speechkd-imp-history-v1"
# What a sparsity is a share of (recorded in the history and the resume fingerprint).
SPARSITY_OF = "all parameters"
SPARSITY_CONVENTION = (
    "sparsity: pruned share of all Whisper parameters (adapters excluded, merged); biases, "
    "norms, fixed positions and adapter-carrying weights are never pruned and count as alive"
)
REFERENCE_FORMAT = "speechkd-rewind-point-v1"
_EPS = 1e-12

AfterStep = Callable[[nn.Module, int], None]
# train_round(model, round_index, work_dir, after_step) trains ``model`` in place, calling
# ``after_step(model, global_step)`` after every optimizer step; returns a JSON-able summary.
RoundTrainer = Callable[[nn.Module, int, Path, AfterStep], "Mapping[str, Any] | None"]


def parse_rewind(value: str | int) -> str | int:
    """``"init"`` or a non-negative optimizer step of round 1 (0 means ``"init"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"rewind point must be 'init' or a step >= 0, got {value!r}")
    if isinstance(value, int):
        step = value
    elif str(value).strip() == "init":
        return "init"
    else:
        try:
            step = int(str(value).strip())
        except ValueError:
            raise ConfigError(
                f"rewind point must be 'init' or a step >= 0, got {value!r}"
            ) from None
    if step < 0:
        raise ConfigError(f"rewind step must be >= 0, got {step}")
    return "init" if step == 0 else step


def check_milestones(milestones: Sequence[float], target_sparsity: float) -> list[float]:
    """Sorted unique milestone sparsities, each in (0, target]."""
    out = sorted({float(p) for p in milestones})
    bad = [p for p in out if not 0.0 < p <= target_sparsity + _EPS]
    if bad:
        raise ConfigError(
            f"milestone sparsities must lie in (0, target sparsity {target_sparsity}], got {bad}"
        )
    return out


def milestone_name(sparsity: float) -> str:
    """Directory name of a milestone: ``prune-30`` for 0.3, ``prune-27.1`` for 0.271."""
    return f"prune-{round(100.0 * sparsity, 6):g}"


@dataclass
class ImpResult:
    """What :func:`run_imp` produced: the final masks (model names) and where things are."""

    masks: Masks
    history: dict[str, Any]
    exp_dir: Path
    milestones: dict[float, Path] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        """The final ticket, a plain ``save_pretrained`` Whisper directory."""
        return self.exp_dir / TICKET_DIR

    @property
    def masks_path(self) -> Path:
        return self.exp_dir / MASKS_FILE

    @property
    def pruned_path(self) -> Path:
        return self.exp_dir / PRUNED_FILE

    @property
    def trained_dir(self) -> Path:
        return self.exp_dir / TRAINED_DIR


class WhisperRoundTrainer:
    """A :data:`RoundTrainer` on :class:`speechkd.whisper.trainer.WhisperTrainer`.

    Every round trains ``config.epochs`` epochs (PEPSI: 2 at LR 1e-5) with a fresh AdamW and
    schedule, in ``work_dir`` (the trainer's ``exp_dir``); an interrupted round resumes from its
    last epoch checkpoint. ``keep_checkpoints=False`` removes them once the round is finished.
    """

    def __init__(
        self,
        config,
        train_dataset,
        train_sampler,
        valid_dataset=None,
        valid_sampler=None,
        extra_loss=None,
        keep_checkpoints: bool = False,
    ) -> None:
        self.config = config
        self.train_dataset = train_dataset
        self.train_sampler = train_sampler
        self.valid_dataset = valid_dataset
        self.valid_sampler = valid_sampler
        self.extra_loss = extra_loss
        self.keep_checkpoints = keep_checkpoints

    def __call__(
        self, model: nn.Module, round_index: int, work_dir: Path, after_step: AfterStep
    ) -> dict[str, Any]:
        from speechkd.whisper.trainer import WhisperTrainer

        def hook(model: nn.Module, global_step: int) -> None:
            after_step(model, global_step)
            peft_methods.after_optimizer_step(model, global_step)

        trainer = WhisperTrainer(
            model,
            dataclasses.replace(self.config, exp_dir=str(work_dir)),
            self.train_dataset,
            self.train_sampler,
            valid_dataset=self.valid_dataset,
            valid_sampler=self.valid_sampler,
            extra_loss=self.extra_loss,
            after_optimizer_step=hook,
        )
        trainer.resume()
        summary = trainer.fit()
        return {
            "epochs": summary["epochs"],
            "global_step": summary["global_step"],
            "history": summary["history"],
        }

    def cleanup(self, work_dir: Path) -> None:
        """Remove the finished round's epoch checkpoints (unless ``keep_checkpoints``)."""
        from speechkd.whisper.trainer import CHECKPOINT_DIR

        if not self.keep_checkpoints:
            shutil.rmtree(Path(work_dir) / CHECKPOINT_DIR, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read JSON ({err})") from None


def save_reference(reference: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write a rewind point (parameter name → tensor) as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().cpu().contiguous() for name, t in reference.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": REFERENCE_FORMAT})


def load_reference(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Read a rewind point and check that it fits ``model`` (names and shapes)."""
    from safetensors import safe_open

    params = dict(model.named_parameters())
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("format") != REFERENCE_FORMAT:
            raise DataError(f"{path}: not a speechkd rewind point")
        reference = {name: f.get_tensor(name) for name in f.keys()}
    unknown = sorted(set(reference) - set(params))
    if unknown:
        raise DataError(f"{path}: rewind point names parameters the model lacks: {unknown[:3]}")
    for name, value in reference.items():
        if value.shape != params[name].shape:
            raise DataError(
                f"{path}: {name} has shape {tuple(value.shape)}, the model's "
                f"{tuple(params[name].shape)}"
            )
    return reference


def _plain_copy(model: nn.Module) -> nn.Module:
    """A plain Whisper copy of ``model`` with its adapters merged."""
    return peft_methods.merge_peft(copy.deepcopy(model))


def _export_trained(model: nn.Module, out_dir: Path, tokenizer) -> None:
    from speechkd.whisper.trainer import export_model

    export_model(_plain_copy(model), out_dir, tokenizer, merge=False)


def _export_ticket(
    model: nn.Module, masks: Masks, out_dir: Path, tokenizer, record: Mapping[str, Any]
) -> None:
    """``model/``, ``masks.safetensors``, ``pruned.safetensors`` and ``result.json``."""
    from speechkd.whisper.trainer import export_model

    plain = _plain_copy(model)
    plain_masks = resolve_masks(plain, unwrap_mask_names(masks))
    export_model(plain, out_dir / TICKET_DIR, tokenizer, merge=False)
    save_masks(plain_masks, out_dir / MASKS_FILE)
    save_pruned(plain, plain_masks, out_dir / PRUNED_FILE)
    alive = alive_parameter_count(plain, plain_masks)
    total = total_parameter_count(plain)
    result = {**record, "alive_params": alive, "total_params": total, "alive_share": alive / total}
    _write_json(out_dir / RESULT_FILE, result)


# ---------------------------------------------------------------------------------------------
# State of a (resumed) run
# ---------------------------------------------------------------------------------------------


def _fingerprint(
    model: nn.Module,
    masks: Masks,
    rate: float,
    rewind_to: str | int,
    exclude: Sequence[str],
    settings: Mapping[str, Any] | None,
) -> dict[str, Any]:
    data = {
        "rate": rate,
        "sparsity_of": SPARSITY_OF,
        "rewind_to": rewind_to,
        "exclude": list(exclude),
        "prunable": {name: list(m.shape) for name, m in unwrap_mask_names(masks).items()},
        "whisper_params": total_parameter_count(model),
        "settings": dict(settings or {}),
    }
    return json.loads(json.dumps(data, default=str))


def _finished_rounds(imp_dir: Path) -> list[dict[str, Any]]:
    records = []
    i = 1
    while (imp_dir / f"round-{i}" / ROUND_FILE).is_file():
        records.append(_read_json(imp_dir / f"round-{i}" / ROUND_FILE))
        i += 1
    return records


def _check_resume(
    imp_dir: Path,
    fingerprint: Mapping[str, Any],
    schedule: Sequence[float],
    milestones: Sequence[float],
    exp_dir: Path,
) -> list[dict[str, Any]]:
    """Finished rounds a resumed run can continue from (ConfigError if settings differ)."""
    stored = _read_json(imp_dir / CONFIG_FILE)["fingerprint"]
    changed = sorted(
        k for k in set(stored) | set(fingerprint) if stored.get(k) != fingerprint.get(k)
    )
    if changed:
        detail = "; ".join(
            f"{k}: {json.dumps(stored.get(k))[:120]} -> {json.dumps(fingerprint.get(k))[:120]}"
            for k in changed
        )
        raise ConfigError(
            f"{imp_dir}: the IMP state was made with other settings ({detail}); "
            "use a new experiment directory"
        )
    records = _finished_rounds(imp_dir)
    for record in records:
        i = record["round"]
        if i > len(schedule) or abs(record["target"] - schedule[i - 1]) > _EPS:
            wanted = schedule[i - 1] if i <= len(schedule) else "no such round"
            raise ConfigError(
                f"{imp_dir / f'round-{i}'}: pruned to {record['target']}, the schedule now asks "
                f"for {wanted}; remove round-{i} and later rounds to continue with the new target"
            )
    prev = 0.0
    for record in records:
        for p in milestones:
            if prev + _EPS < p <= record["target"] + _EPS:
                done = exp_dir / MILESTONE_DIR / milestone_name(p) / RESULT_FILE
                if not done.is_file():
                    raise ConfigError(
                        f"milestone {p} lies in the finished round {record['round']} but "
                        f"{done} is missing: the round's trained weights are gone; rerun IMP "
                        "in a new experiment directory"
                    )
        prev = record["target"]
    return records


def _history(
    header: Mapping[str, Any], records: Sequence[Mapping[str, Any]], n_rounds: int
) -> dict[str, Any]:
    return {
        **header,
        "finished": len(records) == n_rounds + 1,
        "rounds": list(records),
    }


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


class _RewindCapture:
    """After-step hook saving the weights after ``step`` optimizer steps (rewind point θ_t)."""

    def __init__(self, step: int, path: Path) -> None:
        self.step = step
        self.path = path
        self.reference: dict[str, torch.Tensor] | None = None

    def __call__(self, model: nn.Module, global_step: int) -> None:
        if global_step == self.step:
            self.reference = snapshot(model)
            save_reference(self.reference, self.path)
            logger.info("Saved the rewind point (step %d) to %s", self.step, self.path)


def run_imp(
    model: nn.Module,
    train_round: RoundTrainer,
    exp_dir: str | Path,
    target_sparsity: float = 0.5,
    rate: float = 0.1,
    rewind_to: str | int = "init",
    exclude: Sequence[str] = (),
    milestones: Sequence[float] = (),
    save_every_round: bool = False,
    tokenizer=None,
    settings: Mapping[str, Any] | None = None,
    resume: bool = False,
) -> ImpResult:
    """Lottery-ticket IMP of ``model`` (e.g. ``apply_peft(whisper, "pepsi", train_base=True)``).

    ``target_sparsity`` and ``milestones``: pruned shares of all Whisper parameters
    (``ConfigError`` before any training if the prunable weights cannot reach them).
    ``exclude``: regexes of parameter names never to prune (on top of biases, layer norms,
    adapters and adapter-carrying weights). ``settings``: what else a resumed run must share
    (data, training options), stored in ``imp/imp-config.json``. ``resume``: continue after the
    last finished round (without it an existing IMP state raises ``ConfigError``). On return
    ``model`` holds the final ticket (rewound survivors, pruned weights zero).
    """
    exp_dir = Path(exp_dir)
    imp_dir = exp_dir / IMP_DIR
    schedule = prune_schedule(target_sparsity, rate)
    rewind_to = parse_rewind(rewind_to)
    milestones = check_milestones(milestones, target_sparsity)
    exclude = list(exclude)
    masks = init_masks(model, exclude)
    if not masks:
        raise ConfigError("the model has no prunable weights (all excluded)")
    n_prunable = sum(m.numel() for m in masks.values())
    whisper_params = total_parameter_count(model)
    check_sparsity(max([target_sparsity, *milestones]), n_prunable, whisper_params)
    fingerprint = _fingerprint(model, masks, rate, rewind_to, exclude, settings)

    if (imp_dir / CONFIG_FILE).is_file():
        if not resume:
            raise ConfigError(
                f"{imp_dir} holds an IMP run already: resume it or use a new experiment directory"
            )
        records = _check_resume(imp_dir, fingerprint, schedule, milestones, exp_dir)
    else:
        records = []
    _write_json(
        imp_dir / CONFIG_FILE,
        {"fingerprint": fingerprint, "target_sparsity": target_sparsity, "milestones": milestones},
    )

    reference_path = imp_dir / REFERENCE_FILE
    reference: dict[str, torch.Tensor] | None = None
    if records:
        last = imp_dir / f"round-{records[-1]['round']}" / MASKS_FILE
        masks = resolve_masks(model, load_masks(last))
        if not reference_path.is_file():
            raise DataError(f"{reference_path}: rewind point missing, cannot resume")
        logger.info(
            "Resuming IMP after round %d (sparsity %.4f)", len(records), records[-1]["sparsity"]
        )
    if rewind_to == "init":
        if reference_path.is_file():
            reference = load_reference(reference_path, model)
        else:
            reference = snapshot(model)
            save_reference(reference, reference_path)
        rewind(model, reference, masks)
    elif records:
        reference = load_reference(reference_path, model)
        rewind(model, reference, masks)
    # else: round 1 has not finished; its capture hook saves θ_t (a resumed round past step t
    # keeps the file saved before).

    groups = list(LAYER_GROUPS)
    header = {
        "format": HISTORY_FORMAT,
        "target_sparsity": target_sparsity,
        "sparsity_of": SPARSITY_OF,
        "convention": SPARSITY_CONVENTION,
        "rate": rate,
        "rewind_to": rewind_to,
        "schedule": schedule,
        "milestones": milestones,
        "exclude": exclude,
        "prunable_params": n_prunable,
        "whisper_params": whisper_params,
        "max_sparsity": max_sparsity(n_prunable, whisper_params),
        "groups": groups,
    }
    round0 = {
        "round": 0,
        "target": 0.0,
        "sparsity": 0.0,
        "prunable_sparsity": 0.0,
        "pruned": 0,
        "alive_params": whisper_params,
        "alive_share": 1.0,
        "alive_fraction_by_group": alive_fraction_by_group(model, init_masks(model, exclude)),
    }
    records = [round0, *records]
    milestone_dirs = {
        p: exp_dir / MILESTONE_DIR / milestone_name(p)
        for p in milestones
        if p <= records[-1]["target"] + _EPS
    }
    _write_json(exp_dir / HISTORY_FILE, _history(header, records, len(schedule)))

    for i in range(len(records), len(schedule) + 1):
        target = schedule[i - 1]
        previous = records[-1]["target"]
        start = time.time()
        work_dir = imp_dir / TRAIN_DIR / f"round-{i}"
        capture = None
        if i == 1 and rewind_to != "init":
            capture = _RewindCapture(int(rewind_to), reference_path)
        enforcement = enforce_masks(model, masks)
        try:
            summary = train_round(model, i, work_dir, mask_enforcing_hook(masks, then=capture))
        finally:
            enforcement.remove()
        train_seconds = time.time() - start
        if capture is not None:
            reference = capture.reference
            if reference is None and reference_path.is_file():
                reference = load_reference(reference_path, model)
            if reference is None:
                steps = (summary or {}).get("global_step", "?")
                raise ConfigError(
                    f"rewind step {rewind_to} was never reached: round 1 made {steps} "
                    "optimizer steps"
                )

        # Prune (nested masks: the round's and those of the milestones it covers).
        t0 = time.time()
        new_masks = global_magnitude_prune(model, masks, target, whisper_params)
        covered = [p for p in milestones if previous + _EPS < p <= target + _EPS]
        level_masks: dict[float, Masks] = {
            p: new_masks
            if abs(p - target) <= _EPS
            else global_magnitude_prune(model, masks, p, whisper_params)
            for p in covered
        }
        prune_seconds = time.time() - t0
        pruned = n_prunable - sum(int(m.sum()) for m in new_masks.values())
        record: dict[str, Any] = {
            "round": i,
            "target": target,
            "sparsity": pruned / whisper_params,
            "prunable_sparsity": mask_sparsity(new_masks),
            "pruned": pruned,
            "prunable": n_prunable,
            "alive_params": whisper_params - pruned,
            "alive_share": (whisper_params - pruned) / whisper_params,
            "alive_fraction_by_group": alive_fraction_by_group(model, new_masks),
            "milestones": covered,
            "training": dict(summary or {}),
            "train_seconds": train_seconds,
            "prune_seconds": prune_seconds,
        }

        t0 = time.time()
        last = i == len(schedule)
        with atomic_directory(imp_dir / f"round-{i}") as tmp:
            # (sparsity, masks, destination, record) of every export, fewest pruned first: the
            # trained weights are masked in that order (each mask inside the one before).
            exports: list[tuple[float, Masks, Path, dict]] = []
            for p, m in level_masks.items():
                dest = exp_dir / MILESTONE_DIR / milestone_name(p)
                exports.append((p, m, dest, {"round": i, "target": p, "milestone": True}))
                milestone_dirs[p] = dest
            if save_every_round:
                exports.append((target, new_masks, tmp, {"round": i, "target": target}))
            if last:
                exports.append((target, new_masks, exp_dir, {"round": i, "target": target}))
            exports.sort(key=lambda e: e[0])
            for _, m, dest, _ in exports:
                apply_masks(model, m)
                _export_trained(model, dest / TRAINED_DIR, tokenizer)
            for _, m, dest, info in exports:
                rewind(model, reference, m)
                info = {
                    **info,
                    "sparsity": pruned_share(m, whisper_params),
                    "prunable_sparsity": mask_sparsity(m),
                    "rewind_to": rewind_to,
                }
                _export_ticket(model, m, dest, tokenizer, info)
            rewind(model, reference, new_masks)
            save_masks(unwrap_mask_names(new_masks), tmp / MASKS_FILE)
            record["export_seconds"] = time.time() - t0
            record["seconds"] = time.time() - start
            _write_json(tmp / ROUND_FILE, record)
        masks = new_masks
        records.append(record)
        _write_json(exp_dir / HISTORY_FILE, _history(header, records, len(schedule)))
        cleanup = getattr(train_round, "cleanup", None)
        if cleanup is not None:
            cleanup(work_dir)
        logger.info(
            "IMP round %d/%d: sparsity %.4f of all %d parameters (%d alive; %d of %d prunable "
            "weights pruned), %.1f s",
            i,
            len(schedule),
            record["sparsity"],
            whisper_params,
            record["alive_params"],
            pruned,
            n_prunable,
            record["seconds"],
        )

    history = _history(header, records, len(schedule))
    return ImpResult(masks, history, exp_dir, dict(sorted(milestone_dirs.items())))


def load_history(path: str | Path) -> dict[str, Any]:
    """Read ``imp-history.json`` (a file, or the experiment directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / HISTORY_FILE
    if not path.is_file():
        raise DataError(f"{path}: IMP history not found")
    history = _read_json(path)
    if not isinstance(history, dict) or history.get("format") != HISTORY_FORMAT:
        raise DataError(f"{path}: not an IMP history (format {HISTORY_FORMAT!r} expected)")
    rounds = history.get("rounds")
    if not isinstance(rounds, list) or not rounds:
        raise DataError(f"{path}: field 'rounds' missing or empty")
    for record in rounds:
        fractions = record.get("alive_fraction_by_group") if isinstance(record, dict) else None
        if not isinstance(fractions, dict) or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in fractions.values()
        ):
            raise DataError(f"{path}: a round lacks its 'alive_fraction_by_group'")
    return history


__all__ = [
    "ImpResult",
    "RoundTrainer",
    "WhisperRoundTrainer",
    "check_milestones",
    "load_history",
    "load_reference",
    "milestone_name",
    "parse_rewind",
    "run_imp",
    "save_reference",
]
