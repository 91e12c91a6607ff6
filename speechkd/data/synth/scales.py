"""Corpus sizes: the ``tiny`` (tests), ``small`` (mini recipe default) and ``full`` scales.

ASR training amounts differ per language (:data:`LANGUAGE_WEIGHTS`): a language gets
``round(weight * asr.train)`` training utterances (at least ``asr_min_train``), so en and de are
high-resource, ca, cs and pl medium and the others low-resource. Evaluation sets (dev, test,
test_ood) have the same size in every language.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from speechkd.errors import ConfigError

#: Share of the reference training amount per language (en = 1).
LANGUAGE_WEIGHTS: dict[str, float] = {
    "en": 1.0, "de": 0.8,
    "ca": 0.4, "cs": 0.4, "pl": 0.4,
    "hu": 0.15, "uk": 0.15, "ta": 0.15, "th": 0.15, "ko": 0.15,
    "ml": 0.1, "sw": 0.1, "ja": 0.1, "zh": 0.1,
}  # fmt: skip

ASR_SPLITS = ("train", "dev", "test", "test_ood")
CHILD_SPLITS = ("train", "dev", "test")
ST_SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SplitSize:
    """Number of utterances and of distinct speakers of one split."""

    utterances: int
    speakers: int


@dataclass(frozen=True)
class ScaleConfig:
    """Sizes of every corpus and split at one scale."""

    name: str
    asr: dict[str, SplitSize]
    child: dict[str, SplitSize]
    st: dict[str, SplitSize]
    asr_min_train: int

    def __post_init__(self) -> None:
        for corpus, splits, names in (
            ("asr", self.asr, ASR_SPLITS),
            ("child", self.child, CHILD_SPLITS),
            ("st", self.st, ST_SPLITS),
        ):
            if set(splits) != set(names):
                raise ConfigError(f"scale {self.name}: {corpus} splits must be {names}")
            for split, size in splits.items():
                for field in ("utterances", "speakers"):
                    value = getattr(size, field)
                    if not isinstance(value, int) or value < 1:
                        raise ConfigError(
                            f"scale {self.name}: {corpus}.{split}.{field} must be a positive "
                            f"integer, got {value!r}"
                        )
        if not isinstance(self.asr_min_train, int) or self.asr_min_train < 1:
            raise ConfigError(f"scale {self.name}: asr_min_train must be >= 1")

    def asr_size(self, lang: str, split: str) -> SplitSize:
        """Size of ``split`` of language ``lang`` in the ASR corpus."""
        size = self.asr[split]
        if split != "train":
            return size
        if lang not in LANGUAGE_WEIGHTS:
            raise ConfigError(f"language {lang!r} has no weight in LANGUAGE_WEIGHTS")
        n = max(self.asr_min_train, round(size.utterances * LANGUAGE_WEIGHTS[lang]))
        return SplitSize(n, size.speakers)

    def with_train_sizes(
        self, asr: int | None = None, child: int | None = None, st: int | None = None
    ) -> ScaleConfig:
        """A copy with other training utterance counts (``asr`` for a weight-1 language)."""

        def replace(splits: dict[str, SplitSize], n: int | None) -> dict[str, SplitSize]:
            if n is None:
                return splits
            return {**splits, "train": dataclasses.replace(splits["train"], utterances=n)}

        return dataclasses.replace(
            self,
            asr=replace(self.asr, asr),
            child=replace(self.child, child),
            st=replace(self.st, st),
        )


def _sizes(**kwargs: tuple[int, int]) -> dict[str, SplitSize]:
    return {split: SplitSize(*value) for split, value in kwargs.items()}


SCALES: dict[str, ScaleConfig] = {
    "tiny": ScaleConfig(
        "tiny",
        asr=_sizes(train=(8, 2), dev=(2, 1), test=(2, 1), test_ood=(2, 1)),
        child=_sizes(train=(4, 2), dev=(2, 1), test=(2, 1)),
        st=_sizes(train=(6, 2), dev=(2, 1), test=(2, 1)),
        asr_min_train=3,
    ),
    "small": ScaleConfig(
        "small",
        asr=_sizes(train=(1000, 16), dev=(40, 4), test=(80, 4), test_ood=(80, 4)),
        child=_sizes(train=(500, 12), dev=(50, 3), test=(100, 3)),
        st=_sizes(train=(2400, 16), dev=(150, 4), test=(200, 4)),
        asr_min_train=60,
    ),
    "full": ScaleConfig(
        "full",
        asr=_sizes(train=(6000, 40), dev=(150, 8), test=(300, 8), test_ood=(300, 8)),
        child=_sizes(train=(3000, 30), dev=(200, 6), test=(400, 6)),
        st=_sizes(train=(12000, 40), dev=(500, 8), test=(1000, 8)),
        asr_min_train=300,
    ),
}


def get_scale(name: str) -> ScaleConfig:
    """The :data:`SCALES` entry ``name``; ConfigError for an unknown name."""
    if name not in SCALES:
        raise ConfigError(f"scale must be one of {', '.join(SCALES)}, got {name!r}")
    return SCALES[name]
