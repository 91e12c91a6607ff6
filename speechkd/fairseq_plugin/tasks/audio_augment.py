"""fairseq task ``speechkd_audio_augment``: wav2vec 2.0 training with waveform augmentation.

The task is fairseq's ``audio_finetuning`` (with ``task.labels``) or ``audio_pretraining``
(without) whose training split gets DistillW2V2's volume and pitch augmentation
(:mod:`speechkd.data.augment`): each utterance, with probability ``gain_prob``, a gain drawn from
``[gain_min, gain_max]`` and, with probability ``pitch_prob``, a resampling-based pitch factor
from ``[pitch_min, pitch_max]`` (this changes the tempo too). Draws are seeded by
``(task.seed, epoch, utterance index)``. ``augment_splits`` (default: ``dataset.train_subset``)
names the augmented splits; validation sets are never augmented unless listed. With
``task.normalize=true`` the waveform is normalised again after augmentation (so the gain cancels).

    fairseq-hydra-train --config-dir conf/distill_w2v2 --config-name finetune_tiny_mmi \\
        task._name=speechkd_audio_augment common.user_dir=$SPEECHKD_ROOT/speechkd/fairseq_plugin
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq.data import AddTargetDataset, BaseWrapperDataset
from fairseq.data.audio.raw_audio_dataset import RawAudioDataset
from fairseq.tasks import register_task
from fairseq.tasks.audio_finetuning import AudioFinetuningConfig, AudioFinetuningTask
from fairseq.tasks.audio_pretraining import AudioPretrainingTask
from omegaconf import II

from speechkd.data.augment import AugmentConfig, WaveformAugmenter
from speechkd.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class AudioAugmentConfig(AudioFinetuningConfig):
    augment_splits: str = field(
        default=II("dataset.train_subset"),
        metadata={"help": "comma-separated splits to augment (default: the training subset)"},
    )
    gain_min: float = field(default=0.3, metadata={"help": "smallest volume gain"})
    gain_max: float = field(default=3.0, metadata={"help": "largest volume gain"})
    gain_prob: float = field(default=0.5, metadata={"help": "probability of a volume gain"})
    pitch_min: float = field(default=0.9, metadata={"help": "smallest pitch (and tempo) factor"})
    pitch_max: float = field(default=1.1, metadata={"help": "largest pitch (and tempo) factor"})
    pitch_prob: float = field(default=0.5, metadata={"help": "probability of a pitch shift"})


def augment_config(cfg: AudioAugmentConfig) -> AugmentConfig:
    """The :class:`AugmentConfig` of a task config."""
    return AugmentConfig(
        gain_range=(float(cfg.gain_min), float(cfg.gain_max)),
        gain_prob=float(cfg.gain_prob),
        pitch_range=(float(cfg.pitch_min), float(cfg.pitch_max)),
        pitch_prob=float(cfg.pitch_prob),
    )


class AugmentedAudioDataset(BaseWrapperDataset):
    """A fairseq raw-audio dataset whose items' waveforms are augmented (seeded per epoch/item)."""

    def __init__(self, dataset: RawAudioDataset, augmenter: WaveformAugmenter) -> None:
        super().__init__(dataset)
        self.augmenter = augmenter
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        super().set_epoch(epoch)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        wav, params = self.augmenter(item["source"], self.epoch, index)
        if (params.gain is not None or params.pitch is not None) and self.dataset.normalize:
            wav = F.layer_norm(wav, wav.shape)
        item["source"] = wav
        return item


@register_task("speechkd_audio_augment", dataclass=AudioAugmentConfig)
class AudioAugmentTask(AudioFinetuningTask):
    """``audio_finetuning`` / ``audio_pretraining`` with training-set waveform augmentation."""

    cfg: AudioAugmentConfig

    def __init__(self, cfg: AudioAugmentConfig) -> None:
        super().__init__(cfg)
        self.augment = augment_config(cfg)

    def load_dataset(self, split: str, task_cfg: AudioAugmentConfig | None = None, **kwargs):
        task_cfg = task_cfg or self.cfg
        if task_cfg.labels:
            super().load_dataset(split, task_cfg, **kwargs)
        else:
            AudioPretrainingTask.load_dataset(self, split, task_cfg, **kwargs)
        splits = {s.strip() for s in str(self.cfg.augment_splits).split(",") if s.strip()}
        if split not in splits or not self.augment.active:
            return
        dataset = self.datasets[split]
        inner = dataset.dataset if isinstance(dataset, AddTargetDataset) else dataset
        if not isinstance(inner, RawAudioDataset):
            raise ConfigError(
                f"task.augment_splits: split {split} is a {type(inner).__name__}; augmentation "
                "works on one raw-audio corpus (no multi_corpus_keys, no subsample)"
            )
        if inner.is_compute_mask and self.augment.pitch_prob > 0:
            raise ConfigError(
                "task.pitch_prob > 0 changes utterance lengths, which precompute_mask_config "
                "cannot follow: set task.pitch_prob=0"
            )
        wrapped = AugmentedAudioDataset(inner, WaveformAugmenter(self.augment, seed=self.cfg.seed))
        if isinstance(dataset, AddTargetDataset):
            dataset.dataset = wrapped
        else:
            self.datasets[split] = wrapped
        logger.info("split %s: waveform augmentation %s", split, self.augment)
