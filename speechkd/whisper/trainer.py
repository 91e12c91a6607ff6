"""A plain PyTorch training loop for transformers Whisper models (full fine-tuning, PEFT, CLSR).

AdamW on the parameters that require grad, linear warm-up then linear decay to zero, gradient
accumulation and clipping, optional label smoothing, and hooks for the methods built on it:

* ``extra_loss(model, batch, outputs)`` returns a tensor or a dict of named tensors added to the
  cross-entropy (KD terms, gate budget, S2-LoRA regulariser);
* ``before_forward(model, batch)`` runs before every forward pass (e.g. CLSR's active language);
* ``after_optimizer_step(model, global_step)`` runs after every optimizer step, before the
  gradients are cleared (AdaLoRA's rank allocation; default
  :func:`speechkd.whisper.peft_methods.after_optimizer_step`);
* ``stateful``: objects with ``state_dict``/``load_state_dict`` saved in checkpoints (e.g. the CLSR
  noise schedule).

Hooks always receive the plain (unwrapped) model.

**Checkpoints.** Every epoch ends with the validation loss and a checkpoint directory
``<exp_dir>/checkpoints/epoch-<N>/`` (``model.safetensors``, ``trainer_state.pt`` with optimizer,
scheduler, sampler, RNG and hook states, ``meta.json``) written atomically (a temporary
``.tmp-*`` sibling renamed into place); ``best-checkpoint.json`` names the best epoch by
``select_by``: the lowest validation loss (``loss``, the default; the training loss without
validation data), or the lowest dev error rate (``wer``/``cer``) that the ``dev_scorer``
(:class:`speechkd.whisper.selection.DevErrorRate`: greedy decoding of the dev cuts) computes at
the end of every epoch; the epoch's record in the history holds ``valid_<metric>`` (the macro
average over languages) and ``valid_<metric>_per_language``, and so does
``best-checkpoint.json`` beside the epoch, ``select_by`` and its ``valid_loss``. The criterion
and the best score so far are part of the checkpoint state: a resumed run keeps them, and
resuming with another criterion is a ConfigError.

With ``save_every_steps = N`` every N-th optimizer step also writes
``checkpoints/step-<global step>/`` holding, in addition, the position inside the epoch (global
batches consumed) and the partial training-loss sums; the last ``keep_step_checkpoints`` of them
are kept, and those an epoch checkpoint supersedes are removed. :meth:`WhisperTrainer.resume`
removes ``.tmp-*`` leftovers of a killed process and continues from the newest complete
checkpoint (epoch or step, by global step), skipping the batches of the epoch already consumed,
exactly as if training had not stopped.

**Progress.** Every ``log_interval`` optimizer steps the log shows the step out of the total,
the share done and the time left at the pace of the run so far (ETA). At the end of every epoch
``<exp_dir>/loss-curve.png`` is replaced atomically: the training loss of the logged steps (of
every run of the experiment: the points are part of the checkpoint state) and the validation loss
of each epoch.

**Randomness.** Before each training batch the Python, numpy and torch (CUDA) generators are
seeded from ``(seed, epoch, position of the batch in the epoch order)``. Dropout, CLSR gate noise
and skipping therefore depend only on the batch, not on what ran before it: a run resumed at any
step boundary, and a data-parallel run, draw exactly the random numbers of an uninterrupted
single-process run.

**Data parallelism.** When the process is one of several (torchrun's ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``/``MASTER_ADDR``, or an ``srun`` task: :mod:`speechkd.launch.distributed`), the
trainer joins the process group (gloo on CPU, nccl on CUDA, GPU ``cuda:<local rank>``) and wraps
the model and its loss in ``DistributedDataParallel``:

* batches: the sampler's epoch order (identical in every process) is dealt in rounds, process
  ``r`` of ``W`` taking global batches ``r, r+W, r+2W, ...`` (:class:`speechkd.whisper.data.
  RankBatches`); the last incomplete round is filled with the epoch's first batches
  (``pad_last_round="repeat"``) or dropped (``"drop"``). One optimizer step covers
  ``W * accum_grad`` batches, the global batch;
* gradients: DDP averages them over processes, and each process divides its batch losses (the
  per-token mean cross-entropy of a batch plus the extra terms) by ``accum_grad``: one step's
  gradient is the mean over its ``W * accum_grad`` batch losses, exactly what one process with
  ``accum_grad * W`` computes over the same batches;
* parameters without gradient in a batch (CLSR: the experts of the other languages; CLSR's
  skipped layers) are handled by ``find_unused_parameters`` (default on). Extra losses are
  computed inside the wrapped forward, so parameters they alone touch count as used;
* only rank 0 writes checkpoints, ``best-checkpoint.json`` and TensorBoard scalars and logs
  progress; the logged losses are means over the step's batches and over processes; the epoch's
  training and validation losses are reduced over processes (validation batches are split
  among processes without padding);
* the checkpoint directory must be shared by all processes; resuming reads the same checkpoint
  in every process. A run may resume with another world size at an epoch boundary (or mid-epoch
  when the consumed batches divide evenly).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from speechkd.errors import ConfigError, DataError
from speechkd.launch import distributed
from speechkd.utils.atomic import atomic_directory, atomic_write_text
from speechkd.whisper import peft_methods
from speechkd.whisper.data import IGNORE_INDEX, RankBatches, num_rounds

if TYPE_CHECKING:
    from speechkd.whisper.selection import DevScore

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
BEST_FILE = "best-checkpoint.json"
META_FILE = "meta.json"
LOSS_CURVE_FILE = "loss-curve.png"
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
_STEP_DIR = re.compile(r"^step-(\d+)$")
TEMP_PREFIX = ".tmp-"

ExtraLoss = Callable[[nn.Module, dict, Any], "torch.Tensor | Mapping[str, torch.Tensor]"]
BeforeForward = Callable[[nn.Module, dict], None]
AfterStep = Callable[[nn.Module, int], None]
DevScorer = Callable[[nn.Module, torch.device], "DevScore"]
SELECT_BY = ("loss", "wer", "cer")


def _option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field whose metadata documents its command-line option."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping options.

    ``whisper_train`` generates its trainer options from these fields (``--exp-dir``,
    ``--epochs``, ...; ``progress``: ``--no-progress``), with these defaults and help texts
    (:mod:`speechkd.utils.options`).
    """

    exp_dir: str = field(metadata={"help": "experiment directory (checkpoints, logs, exports)"})
    epochs: int = _option(10, "training epochs")
    lr: float = _option(1e-4, "peak learning rate (linear warm-up, then linear decay to 0)")
    weight_decay: float = _option(0.0, "AdamW weight decay")
    adam_betas: tuple[float, float] = _option((0.9, 0.999), "AdamW betas", metavar="BETA")
    adam_eps: float = _option(1e-8, "AdamW epsilon")
    warmup_steps: int | None = _option(None, "warm-up optimizer steps (default: --warmup-epochs)")
    warmup_epochs: float = _option(0.0, "warm-up length in epochs when --warmup-steps is unset")
    accum_grad: int = _option(1, "batches accumulated into one optimizer step")
    clip_grad_norm: float | None = _option(1.0, "gradient norm clipping (0: no clipping)")
    label_smoothing: float = _option(0.0, "label smoothing of the training cross-entropy")
    seed: int = _option(42, "random seed (initialisation, batch order, dropout)")
    device: str | None = _option(None, "default: cuda when available, else cpu")
    amp: bool = _option(False, "bf16 autocast on CUDA")
    log_interval: int = _option(10, "log the training losses every N optimizer steps")
    keep_last: int | None = _option(None, "epoch checkpoints to keep (the best one always)")
    num_workers: int = _option(0, "DataLoader worker processes")
    progress: bool = _option(True, "tqdm progress bar of the training batches")
    save_every_steps: int | None = _option(
        None, "also checkpoint every N optimizer steps (resume mid-epoch after a kill)"
    )
    keep_step_checkpoints: int = _option(2, "mid-epoch (step) checkpoints to keep")
    find_unused_parameters: bool = _option(
        True, "DDP looks for parameters without a gradient in a step (CLSR: other experts)"
    )
    pad_last_round: str = _option(
        "repeat",
        "data parallel: fill the last incomplete round of batches with the epoch's first "
        "batches (repeat) or drop it",
        choices=("repeat", "drop"),
    )
    select_by: str = _option(
        "loss",
        "criterion of the best epoch on the dev cuts: cross-entropy (loss), or the WER/CER "
        "of greedy decoding at the end of every epoch (macro average over languages)",
        choices=SELECT_BY,
    )

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.accum_grad < 1:
            raise ConfigError(f"accum_grad must be >= 1, got {self.accum_grad}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.keep_last is not None and self.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1, got {self.keep_last}")
        if self.save_every_steps is not None and self.save_every_steps < 1:
            raise ConfigError(f"save_every_steps must be >= 1, got {self.save_every_steps}")
        if self.keep_step_checkpoints < 1:
            raise ConfigError(
                f"keep_step_checkpoints must be >= 1, got {self.keep_step_checkpoints}"
            )
        if self.pad_last_round not in ("repeat", "drop"):
            raise ConfigError(
                f"pad_last_round must be 'repeat' or 'drop', got {self.pad_last_round!r}"
            )
        if self.select_by not in SELECT_BY:
            raise ConfigError(f"select_by must be one of {list(SELECT_BY)}, got {self.select_by!r}")


def default_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU.

    In a multi-process job a bare ``cuda`` (or the CUDA default) is this process's GPU,
    ``cuda:<local rank>``.
    """
    env = distributed.detect_distributed_env(resolve_host=False)
    return distributed.local_device(env, device or None)


def planned_steps(num_batches: int, world_size: int, config: TrainerConfig) -> tuple[int, int]:
    """Optimizer steps per epoch and in all of training for ``num_batches`` batches an epoch.

    The numbers :class:`WhisperTrainer` trains with: each of ``world_size`` processes gets its
    rounds of batches (``config.pad_last_round``) and makes a step every ``accum_grad`` of them.
    """
    rounds = num_rounds(num_batches, world_size, config.pad_last_round)
    if rounds == 0:
        raise DataError(
            f"{num_batches} training batches cannot feed {world_size} processes "
            f"with pad_last_round={config.pad_last_round!r}"
        )
    per_epoch = math.ceil(rounds / config.accum_grad)
    return per_epoch, per_epoch * config.epochs


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def linear_warmup_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor: 0 → 1 linearly over ``warmup_steps``, then 1 → 0 linearly at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return factor


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of the random generators for the batch at ``index`` of ``epoch``'s order."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def move_batch(batch: dict, device: torch.device) -> dict:
    """The batch with its tensors on ``device`` (lists and strings unchanged)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def model_inputs(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Keyword arguments of the Whisper forward call for a batch."""
    return {
        "input_features": batch["input_features"],
        "decoder_input_ids": batch["decoder_input_ids"],
        "decoder_attention_mask": batch["decoder_attention_mask"],
        "labels": batch["labels"],
    }


def token_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
    )


def _sum_extra(extra: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(extra, torch.Tensor):
        return {"extra": extra}
    return dict(extra)


def load_trainer_state(path: Path) -> dict:
    """A ``trainer_state.pt`` loaded with ``weights_only=True``: a file holding anything but
    tensors and plain containers (an untrusted pickle) is refused with a DataError."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a loadable trainer state ({first})") from None


def save_model_weights(model: nn.Module, path: str | Path) -> None:
    """All of the model's state (adapters and buffers included) as one safetensors file."""
    from safetensors.torch import save_model

    save_model(model, str(path))


def load_model_weights(model: nn.Module, path: str | Path) -> None:
    """Load :func:`save_model_weights` output into a model of the same structure (strict)."""
    from safetensors.torch import load_model

    missing, unexpected = load_model(model, str(path), strict=False)
    if unexpected or missing:
        raise DataError(
            f"{path}: checkpoint does not match the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )


def _complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file() and (path / MODEL_FILE).is_file()


def checkpoint_dirs(exp_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, directory)`` of the finished epoch checkpoints of an experiment, by epoch."""
    return _numbered_dirs(exp_dir, _EPOCH_DIR)


def step_checkpoint_dirs(exp_dir: str | Path) -> list[tuple[int, Path]]:
    """``(global step, directory)`` of the complete mid-epoch checkpoints, by step."""
    return _numbered_dirs(exp_dir, _STEP_DIR)


def _numbered_dirs(exp_dir: str | Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    root = Path(exp_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = pattern.match(path.name)
        if match and _complete(path):
            found.append((int(match.group(1)), path))
    return sorted(found)


def checkpoint_global_step(path: str | Path) -> int:
    """The global step a checkpoint directory was written at (``meta.json``, else its state)."""
    path = Path(path)
    meta = path / META_FILE
    if meta.is_file():
        return int(json.loads(meta.read_text(encoding="utf-8"))["global_step"])
    state = load_trainer_state(path / STATE_FILE)
    return int(state["global_step"])


def latest_checkpoint(exp_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (epoch or step) by global step; an epoch wins a tie.

    Directories that are not named ``epoch-N``/``step-N`` (``.tmp-*`` leftovers of a killed
    process) or lack a file are never considered.
    """
    candidates = [(checkpoint_global_step(p), 1, p) for _, p in checkpoint_dirs(exp_dir)]
    candidates += [(step, 0, p) for step, p in step_checkpoint_dirs(exp_dir)]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def remove_stale_temporaries(exp_dir: str | Path) -> list[Path]:
    """Delete the ``.tmp-*`` entries under ``checkpoints/`` (left by a killed writer)."""
    root = Path(exp_dir) / CHECKPOINT_DIR
    removed = []
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.name.startswith(TEMP_PREFIX):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    for path in removed:
        logger.warning("Removed %s (an unfinished checkpoint of an interrupted run)", path)
    return removed


def best_checkpoint(exp_dir: str | Path) -> Path:
    """The checkpoint named by ``best-checkpoint.json`` (else the last one)."""
    exp_dir = Path(exp_dir)
    best = exp_dir / BEST_FILE
    if best.is_file():
        info = json.loads(best.read_text(encoding="utf-8"))
        path = exp_dir / CHECKPOINT_DIR / f"epoch-{info['epoch']}"
        if (path / MODEL_FILE).is_file():
            return path
        raise DataError(f"{best}: names epoch {info['epoch']} but {path} is missing")
    found = checkpoint_dirs(exp_dir)
    if not found:
        raise DataError(f"{exp_dir}: no checkpoint found under {CHECKPOINT_DIR}/")
    return found[-1][1]


def export_model(model: nn.Module, out_dir: str | Path, tokenizer=None, merge: bool = True) -> Path:
    """Save a plain Whisper model with ``save_pretrained`` (safetensors) for ``from_pretrained``.

    With ``merge`` the adapters of a copy of ``model`` are merged first (:func:`merge_peft`);
    the tokenizer (if given) is saved beside, so the directory is all decoding needs.
    """
    plain = peft_methods.merge_peft(copy.deepcopy(model)) if merge else model
    with atomic_directory(out_dir) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    logger.info("Exported the model to %s", out_dir)
    return Path(out_dir)


@dataclass
class TrainingHooks:
    """Hook arguments of :class:`WhisperTrainer` for a method (pass as ``**asdict``-like kwargs)."""

    before_forward: BeforeForward | None = None
    after_optimizer_step: AfterStep | None = peft_methods.after_optimizer_step
    stateful: dict[str, Any] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "before_forward": self.before_forward,
            "after_optimizer_step": self.after_optimizer_step,
            "stateful": self.stateful,
        }


def clsr_training_hooks(model: nn.Module) -> TrainingHooks:
    """Hooks for CLSR (DistilWhisper) training on language-homogeneous batches.

    Before each forward the batch language's experts become active (a mixed batch is a
    DataError); after each optimizer step the gate-noise schedule moves to the global step; the
    schedule is saved in checkpoints.
    """
    from speechkd.whisper import clsr

    schedule = clsr.clsr_noise_schedule(model)

    def before_forward(model: nn.Module, batch: dict) -> None:
        if batch.get("language") is None:
            raise DataError(
                f"CLSR needs one language per batch, got {sorted(set(batch['languages']))} "
                f"(cuts {batch['cut_ids'][:3]}...): use a language-homogeneous sampler"
            )
        clsr.set_active_language(model, batch["language"])

    def after_step(model: nn.Module, global_step: int) -> None:
        peft_methods.after_optimizer_step(model, global_step)
        schedule.set_step(global_step)

    return TrainingHooks(before_forward, after_step, {"clsr_noise": schedule})


class _TrainingStep(nn.Module):
    """The model with its loss: DDP wraps this, so all that the loss touches counts as used."""

    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: dict, train: bool):
        return self.loss_fn(self.model, batch, train)


class WhisperTrainer:
    """Train a Whisper model on batches of :class:`speechkd.whisper.data.WhisperAsrDataset`.

    In a multi-process job (see the module documentation) the trainer joins the process group
    itself; ``model`` stays the plain model (hooks, :meth:`load_best`, exports use it).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        train_dataset,
        train_sampler,
        valid_dataset=None,
        valid_sampler=None,
        extra_loss: ExtraLoss | None = None,
        before_forward: BeforeForward | None = None,
        after_optimizer_step: AfterStep | None = peft_methods.after_optimizer_step,
        stateful: Mapping[str, Any] | None = None,
        dev_scorer: DevScorer | None = None,
    ) -> None:
        if config.select_by != "loss" and dev_scorer is None:
            raise ConfigError(
                f"select_by={config.select_by!r} needs a dev scorer (decoding of the dev cuts)"
            )
        self.config = config
        self.exp_dir = Path(config.exp_dir)
        self.device = default_device(config.device)
        distributed.init_distributed(self.device)
        self.rank = distributed.get_rank()
        self.world_size = distributed.get_world_size()
        self.model = model.to(self.device)
        self.train_dataset = train_dataset
        self.train_sampler = train_sampler
        self.valid_dataset = valid_dataset
        self.valid_sampler = valid_sampler
        self.extra_loss = extra_loss
        self.before_forward = before_forward
        self.after_optimizer_step = after_optimizer_step
        self.stateful = dict(stateful or {})
        self.dev_scorer = dev_scorer
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(
            params,
            lr=config.lr,
            betas=tuple(config.adam_betas),
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        self.rounds_per_epoch = num_rounds(
            len(train_sampler), self.world_size, config.pad_last_round
        )
        self.steps_per_epoch, self.total_steps = planned_steps(
            len(train_sampler), self.world_size, config
        )
        if config.warmup_steps is not None:
            self.warmup_steps = config.warmup_steps
        else:
            self.warmup_steps = int(round(config.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_warmup_decay(self.warmup_steps, self.total_steps)
        )
        self.epoch = 0  # last finished epoch
        self.global_step = 0
        self.best_score = math.inf  # of the best epoch, by config.select_by
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.log_records: list[dict[str, float]] = []  # the logged (averaged) step values
        self.train_curve: list[list[float]] = []  # [step, loss] of every logged step, all runs
        self._run_start: tuple[float, int] = (time.time(), 0)  # (time, global step) of fit()
        self._position: dict[str, Any] | None = None  # where to resume inside an epoch
        self._tb = None
        self._step_module = _TrainingStep(self.model, self._loss)
        self._ddp: nn.Module | None = None
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self._ddp = DistributedDataParallel(
                self._step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters,
            )

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and logs (rank 0)."""
        return self.rank == 0

    @property
    def resume_position(self) -> dict[str, Any] | None:
        """Where :meth:`fit` continues inside an epoch after :meth:`resume` (None: at its start).

        ``{"epoch", "batches" (global batches done), "world_size", "loss_sum", "loss_count"}``.
        """
        return dict(self._position) if self._position is not None else None

    def _info(self, message: str, *args: Any) -> None:
        (logger.info if self.is_main else logger.debug)(message, *args)

    def close(self) -> None:
        """Release the DDP wrapper and flush TensorBoard (the process group stays)."""
        self._ddp = None
        if self._tb:
            self._tb.close()
        self._tb = None

    # -- logging ---------------------------------------------------------------------------
    def _tensorboard(self):
        if not self.is_main:
            return None
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = False
            else:
                self._tb = SummaryWriter(str(self.exp_dir / "tensorboard"))
        return self._tb or None

    def _log_scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        writer = self._tensorboard()
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(f"{prefix}/{name}", value, step)

    # -- one batch -------------------------------------------------------------------------
    def _autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _loss(self, model: nn.Module, batch: dict, train: bool) -> tuple[torch.Tensor, dict]:
        if self.before_forward is not None:
            self.before_forward(model, batch)
        with self._autocast():
            outputs = model(**model_inputs(batch))
        smoothing = self.config.label_smoothing if train else 0.0
        plain = token_cross_entropy(outputs.logits, batch["labels"])
        # outputs.loss is the plain cross-entropy plus what a peft model adds (AdaLoRA's
        # orthogonal regulariser); keep that addition, replace the cross-entropy if smoothed.
        loss = outputs.loss.float() if outputs.loss is not None else plain
        if smoothing > 0:
            smoothed = token_cross_entropy(outputs.logits, batch["labels"], smoothing)
            loss = loss - plain + smoothed
        parts = {"ce": plain.detach()}
        if train and self.extra_loss is not None:
            for name, value in _sum_extra(self.extra_loss(model, batch, outputs)).items():
                loss = loss + value
                parts[name] = value.detach()
        parts["loss"] = loss.detach()
        return loss, parts

    def compute_loss(self, batch: dict, train: bool = True) -> tuple[torch.Tensor, dict]:
        """Loss of a batch (on the device) and its named parts (floats).

        Training batches of a multi-process job go through the DDP wrapper (their backward
        averages the gradients over processes); evaluation uses the plain model.
        """
        module = self._ddp if (train and self._ddp is not None) else self._step_module
        loss, parts = module(batch, train)
        return loss, {name: float(value) for name, value in parts.items()}

    def _loader(self, dataset, sampler):
        return torch.utils.data.DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,
            num_workers=self.config.num_workers,
            persistent_workers=False,
        )

    def _optimizer_step(self) -> float:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = 0.0
        if self.config.clip_grad_norm:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm))
        self.optimizer.step()
        self.global_step += 1
        if self.after_optimizer_step is not None:
            self.after_optimizer_step(self.model, self.global_step)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    # -- epochs ----------------------------------------------------------------------------
    def _start_position(self, epoch: int) -> tuple[int, float, float]:
        """Rounds already done in ``epoch`` and the partial loss sums of this process."""
        position, self._position = self._position, None
        if position is None or int(position["epoch"]) != epoch:
            return 0, 0.0, 0.0
        consumed = int(position["batches"])
        if consumed % self.world_size:
            raise ConfigError(
                f"the checkpoint stopped after {consumed} batches of epoch {epoch} (written by "
                f"{position['world_size']} processes): {self.world_size} processes cannot "
                f"continue there; resume with a world size dividing {consumed}"
            )
        sums = (float(position["loss_sum"]), float(position["loss_count"]))
        return consumed // self.world_size, *(sums if self.is_main else (0.0, 0.0))

    def train_epoch(self, epoch: int) -> float:
        """Train one epoch (1-based); returns the mean training loss of its batches.

        After :meth:`resume` from a mid-epoch checkpoint of ``epoch`` the batches it had
        consumed are skipped (and counted in the mean as they were).
        """
        self.model.train()
        self.train_sampler.set_epoch(epoch)
        start, loss_sum, loss_count = self._start_position(epoch)
        batches = RankBatches(
            self.train_sampler, self.rank, self.world_size, self.config.pad_last_round, start
        )
        accum = self.config.accum_grad
        rounds = batches.rounds
        window: dict[str, float] = {}
        window_size = 0
        bar = tqdm(
            self._loader(self.train_dataset, batches),
            total=len(batches),
            desc=f"epoch {epoch}",
            disable=not (self.config.progress and self.is_main),
        )
        for local, batch in enumerate(bar, start=batches.start):
            seed_everything(batch_seed(self.config.seed, epoch, batches.global_index(local)))
            batch = move_batch(batch, self.device)
            ends_step = (local + 1) % accum == 0 or local + 1 == rounds
            sync = self._ddp.no_sync() if self._ddp is not None and not ends_step else None
            with sync or contextlib.nullcontext():
                loss, parts = self.compute_loss(batch, train=True)
                if not torch.isfinite(loss):
                    raise DataError(
                        f"non-finite training loss {float(loss)} at epoch {epoch}, batch "
                        f"{batches.global_index(local)} (cuts {batch['cut_ids'][:3]}...)"
                    )
                (loss / accum).backward()
            loss_sum += parts["loss"]
            loss_count += 1
            for name, value in parts.items():
                window[name] = window.get(name, 0.0) + value
            window_size += 1
            if ends_step:
                grad_norm = self._optimizer_step()
                means = {name: value / window_size for name, value in window.items()}
                self._after_step(epoch, means, grad_norm)
                window, window_size = {}, 0
                if self.config.save_every_steps and (
                    self.global_step % self.config.save_every_steps == 0
                ):
                    consumed = (local + 1) * self.world_size
                    self.save_step_checkpoint(epoch, consumed, loss_sum, loss_count)
            bar.set_postfix(loss=f"{parts['loss']:.3f}")
        loss_sum, loss_count = distributed.all_reduce_sum([loss_sum, loss_count])
        return loss_sum / max(1.0, loss_count)

    def _after_step(self, epoch: int, means: dict[str, float], grad_norm: float) -> None:
        """Log the step's losses (means over its batches and processes) every log_interval."""
        if self.global_step % self.config.log_interval:
            return
        values = distributed.all_reduce_mean(means)
        values["grad_norm"] = grad_norm
        values["lr"] = self.scheduler.get_last_lr()[0]
        self.log_records.append({"epoch": epoch, "step": self.global_step, **values})
        self.train_curve.append([self.global_step, values["loss"]])
        self._log_scalars("train", values, self.global_step)
        self._info(
            "epoch %d step %d/%d (%.0f%%), ETA %s: %s",
            epoch,
            self.global_step,
            self.total_steps,
            100.0 * self.global_step / max(1, self.total_steps),
            format_duration(self.eta_seconds()),
            ", ".join(f"{k}={v:.4g}" for k, v in values.items()),
        )

    def eta_seconds(self) -> float:
        """Time left to ``total_steps`` at this run's pace so far (validation included)."""
        started, first_step = self._run_start
        done = self.global_step - first_step
        if done <= 0:
            return math.nan
        return (time.time() - started) / done * max(0, self.total_steps - self.global_step)

    def loss_curve_points(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(train, dev) points of the loss curve: logged steps and the ends of epochs."""
        train = [(int(step), float(loss)) for step, loss in self.train_curve]
        dev = [
            (int(h["epoch"]) * self.steps_per_epoch, float(h["valid_loss"]))
            for h in self.history
            if h.get("valid_loss") is not None
        ]
        return train, dev

    def write_loss_curve(self) -> Path | None:
        """``<exp_dir>/loss-curve.png`` (rank 0), replaced atomically; None without matplotlib."""
        if not self.is_main:
            return None
        try:
            from speechkd.eval.loss_curve import plot_loss_curve
        except ImportError:  # pragma: no cover - matplotlib is a requirement
            logger.warning("matplotlib is not importable: no %s", LOSS_CURVE_FILE)
            return None
        train, dev = self.loss_curve_points()
        title = "/".join(self.exp_dir.resolve().parts[-2:])
        return plot_loss_curve(train, dev, self.exp_dir / LOSS_CURVE_FILE, title=title)

    @torch.no_grad()
    def validate(self) -> float | None:
        """Token-weighted cross-entropy (no smoothing) on the validation set, or None.

        In a multi-process job each process scores its share of the batches (no padding) and
        the sums are reduced.
        """
        if self.valid_dataset is None or self.valid_sampler is None:
            return None
        self.model.eval()
        batches = RankBatches(self.valid_sampler, self.rank, self.world_size, pad="none")
        total, tokens = 0.0, 0
        for batch in self._loader(self.valid_dataset, batches):
            batch = move_batch(batch, self.device)
            _, parts = self.compute_loss(batch, train=False)
            n = int((batch["labels"] != IGNORE_INDEX).sum())
            total += parts["ce"] * n
            tokens += n
        self.model.train()
        total, tokens = distributed.all_reduce_sum([total, tokens])
        return total / max(1.0, tokens)

    def fit(self) -> dict[str, Any]:
        """Train from the current position to ``config.epochs``; returns a summary."""
        if self.is_main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
        if self.epoch == 0 and self.global_step == 0:
            seed_everything(self.config.seed)
        self._run_start = (time.time(), self.global_step)
        self._info(
            "Training on %s%s: %d batches/epoch, %d optimizer steps/epoch, %d total, %d warm-up",
            self.device,
            f" ({self.world_size} processes)" if self.world_size > 1 else "",
            len(self.train_sampler),
            self.steps_per_epoch,
            self.total_steps,
            self.warmup_steps,
        )
        for epoch in range(self.epoch + 1, self.config.epochs + 1):
            start = time.time()
            train_loss = self.train_epoch(epoch)
            valid_loss = self.validate()
            self.epoch = epoch
            record = {"epoch": epoch, "train_loss": train_loss, "seconds": time.time() - start}
            if valid_loss is not None:
                record["valid_loss"] = valid_loss
                self._log_scalars("valid", {"loss": valid_loss}, self.global_step)
            if self.dev_scorer is not None:
                record.update(self.score_dev())
            self.history.append(record)
            self._info("epoch %d done: %s", epoch, record)
            score = self._selection_score(record)
            if self.best_epoch is None or score < self.best_score:
                self.best_score, self.best_epoch = score, epoch
            self._info(
                "best epoch by %s: %d (%.4g)",
                self.config.select_by,
                self.best_epoch,
                self.best_score,
            )
            self.save_checkpoint()
            self.write_loss_curve()
        if self._tb:
            self._tb.flush()
        distributed.barrier()
        best = self.best_record()
        return {
            "epochs": self.epoch,
            "global_step": self.global_step,
            "best_epoch": self.best_epoch,
            "select_by": self.config.select_by,
            "best_score": self.best_score,
            "best_valid_loss": best.get("valid_loss"),
            "history": self.history,
            "train_curve": [list(point) for point in self.train_curve],  # [step, loss] logged
        }

    def score_dev(self) -> dict[str, Any]:
        """The dev scorer's error rate of the current model, as history fields (logged)."""
        start = time.time()
        dev = self.dev_scorer(self.model, self.device)
        seconds = time.time() - start
        scalars = {dev.metric: dev.value}
        scalars.update({f"{dev.metric}_{lang}": v for lang, v in dev.per_language.items()})
        self._log_scalars("valid", scalars, self.global_step)
        self._info(
            "dev %s %.2f (%s) on %d cuts, decoded in %.1f s",
            dev.metric.upper(),
            dev.value,
            ", ".join(f"{lang} {v:.2f}" for lang, v in dev.per_language.items()),
            dev.num_cuts,
            seconds,
        )
        return {
            f"valid_{dev.metric}": dev.value,
            f"valid_{dev.metric}_per_language": dict(dev.per_language),
            "select_seconds": seconds,
        }

    def _selection_score(self, record: Mapping[str, Any]) -> float:
        """The value of an epoch's record that ``select_by`` minimises."""
        if self.config.select_by == "loss":
            return float(record.get("valid_loss", record["train_loss"]))
        key = f"valid_{self.config.select_by}"
        if key not in record:
            raise ConfigError(
                f"select_by={self.config.select_by!r} but the dev scorer computed "
                f"{sorted(k for k in record if k.startswith('valid_'))}"
            )
        return float(record[key])

    def best_record(self) -> dict[str, Any]:
        """What ``best-checkpoint.json`` holds: the best epoch, the criterion, its dev scores."""
        if self.best_epoch is None:
            return {}
        found = [h for h in self.history if int(h["epoch"]) == self.best_epoch]
        info: dict[str, Any] = {"epoch": self.best_epoch, "select_by": self.config.select_by}
        if self.config.select_by == "loss":
            info["valid_loss"] = self.best_score  # the training loss without validation data
        if found:
            info.update({k: v for k, v in found[-1].items() if k.startswith("valid_")})
        return info

    # -- checkpoints -----------------------------------------------------------------------
    def state(self, position: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything but the weights; ``position``: where in an unfinished epoch it stops."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "select_by": self.config.select_by,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "history": [dict(h) for h in self.history],
            "train_curve": [list(point) for point in self.train_curve],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.train_sampler.state_dict()
            if hasattr(self.train_sampler, "state_dict")
            else None,
            "rng": rng_state(),
            "stateful": {k: v.state_dict() for k, v in self.stateful.items()},
            "config": {k: v for k, v in asdict(self.config).items() if k != "device"},
            "world_size": self.world_size,
            "position": dict(position) if position is not None else None,
        }

    def _write_checkpoint(self, path: Path, meta: dict, position: dict | None = None) -> None:
        with atomic_directory(path) as tmp:
            save_model_weights(self.model, tmp / MODEL_FILE)
            torch.save(self.state(position), tmp / STATE_FILE)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/epoch-<N>/`` atomically and update ``best-checkpoint.json``.

        Only rank 0 writes; every process waits until it is done.
        """
        path = self.exp_dir / CHECKPOINT_DIR / f"epoch-{self.epoch}"
        if self.is_main:
            meta = {"kind": "epoch", "epoch": self.epoch, "global_step": self.global_step}
            self._write_checkpoint(path, meta)
            if self.best_epoch is not None:
                atomic_write_text(
                    self.exp_dir / BEST_FILE, json.dumps(self.best_record(), indent=2) + "\n"
                )
            self._prune_checkpoints()
            for step, old in step_checkpoint_dirs(self.exp_dir):
                if step <= self.global_step:  # superseded by this epoch checkpoint
                    shutil.rmtree(old)
            logger.info("Saved %s", path)
        distributed.barrier()
        return path

    def save_step_checkpoint(
        self, epoch: int, consumed: int, loss_sum: float, loss_count: float
    ) -> Path:
        """Write ``checkpoints/step-<global step>/`` (rank 0) inside ``epoch``.

        ``consumed``: global batches of the epoch done; ``loss_sum``/``loss_count``: this
        process's training-loss sums so far (reduced over processes here).
        """
        loss_sum, loss_count = distributed.all_reduce_sum([loss_sum, loss_count])
        path = self.exp_dir / CHECKPOINT_DIR / f"step-{self.global_step}"
        if self.is_main:
            position = {
                "epoch": epoch,
                "batches": consumed,
                "world_size": self.world_size,
                "loss_sum": loss_sum,
                "loss_count": loss_count,
            }
            meta = {
                "kind": "step",
                "epoch": epoch,
                "global_step": self.global_step,
                "batches": consumed,
            }
            self._write_checkpoint(path, meta, position)
            for _, old in step_checkpoint_dirs(self.exp_dir)[: -self.config.keep_step_checkpoints]:
                shutil.rmtree(old)
            logger.debug("Saved %s", path)
        return path

    def _prune_checkpoints(self) -> None:
        if self.config.keep_last is None:
            return
        found = checkpoint_dirs(self.exp_dir)
        for epoch, path in found[: -self.config.keep_last]:
            if epoch != self.best_epoch:
                shutil.rmtree(path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, sampler, RNG, hook states and the position."""
        path = Path(path)
        state = load_trainer_state(path / STATE_FILE)
        select_by = state.get("select_by", "loss")  # checkpoints older than the option: loss
        if select_by != self.config.select_by:
            raise ConfigError(
                f"{path}: this run selects its best epoch by {select_by}, select_by="
                f"{self.config.select_by!r} cannot continue it (train into a new directory)"
            )
        load_model_weights(self.model, path / MODEL_FILE)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("sampler") is not None and hasattr(self.train_sampler, "load_state_dict"):
            self.train_sampler.load_state_dict(state["sampler"])
        for name, obj in self.stateful.items():
            if name not in state["stateful"]:
                raise DataError(f"{path}: checkpoint has no state for {name!r}")
            obj.load_state_dict(state["stateful"][name])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_score = float(state.get("best_score", state.get("best_valid_loss", math.inf)))
        self.best_epoch = state["best_epoch"]
        self.history = list(state["history"])
        self.train_curve = [list(point) for point in state.get("train_curve", [])]
        self._position = state.get("position")
        set_rng_state(state["rng"])
        where = f"epoch {self.epoch}"
        if self._position is not None:
            where = f"epoch {self._position['epoch']} after {self._position['batches']} batches"
        self._info("Resumed from %s (%s, step %d)", path, where, self.global_step)

    def resume(self) -> bool:
        """Load the newest complete checkpoint of ``exp_dir``; returns whether there was one.

        Rank 0 first removes ``.tmp-*`` leftovers of a killed run; every process then loads the
        same checkpoint.
        """
        if self.is_main:
            remove_stale_temporaries(self.exp_dir)
        distributed.barrier()
        path = latest_checkpoint(self.exp_dir)
        if path is None:
            self._info("No checkpoint in %s: training from the start", self.exp_dir)
            return False
        self.load_checkpoint(path)
        return True

    def load_best(self) -> Path:
        """Load the weights of the best checkpoint into the model; returns its directory."""
        path = best_checkpoint(self.exp_dir)
        load_model_weights(self.model, path / MODEL_FILE)
        return path
