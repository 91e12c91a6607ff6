"""Synthetic speakers: an espeak-ng voice variant with pitch, pitch range, rate and amplitude,
plus sox tempo, gain and pitch shift. Three conditions draw from different parameter ranges:
``in_domain`` (train/dev/test), ``ood`` (held-out variants, pitch/range/rate outside the
in-domain ranges) and ``child`` (high pitch, fast, shifted up by sox)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from speechkd.errors import ConfigError

Interval = tuple[float, float]


@dataclass(frozen=True)
class SpeakerProfile:
    """Parameters of one synthetic speaker."""

    speaker_id: str
    condition: str
    variant: str
    pitch: int  # espeak-ng -p (0..99)
    pitch_range: int  # SSML prosody range, percent of the voice's default
    rate: int  # espeak-ng -s, words per minute
    amplitude: int  # espeak-ng -a (0..200)
    tempo: float  # sox tempo factor
    gain_db: float  # sox gain
    pitch_shift_cents: int  # sox pitch (0 = none)

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> tuple:
        """The parameters that make a voice distinct (everything except the id)."""
        d = self.as_dict()
        del d["speaker_id"], d["condition"]
        return tuple(d.values())


@dataclass(frozen=True)
class SpeakerDistribution:
    """Ranges a condition draws its speakers from; each parameter is a union of intervals."""

    condition: str
    variants: tuple[str, ...]
    pitch: tuple[Interval, ...]
    pitch_range: tuple[Interval, ...]
    rate: tuple[Interval, ...]
    amplitude: tuple[Interval, ...]
    tempo: tuple[Interval, ...]
    gain_db: tuple[Interval, ...]
    pitch_shift_cents: tuple[Interval, ...] = ((0, 0),)

    def sample(self, rng: np.random.Generator, speaker_id: str) -> SpeakerProfile:
        def pick(intervals: tuple[Interval, ...]) -> float:
            lo, hi = intervals[int(rng.integers(0, len(intervals)))]
            return float(rng.uniform(lo, hi))

        return SpeakerProfile(
            speaker_id=speaker_id,
            condition=self.condition,
            variant=self.variants[int(rng.integers(0, len(self.variants)))],
            pitch=round(pick(self.pitch)),
            pitch_range=round(pick(self.pitch_range)),
            rate=round(pick(self.rate)),
            amplitude=round(pick(self.amplitude)),
            tempo=round(pick(self.tempo), 3),
            gain_db=round(pick(self.gain_db), 1),
            pitch_shift_cents=round(pick(self.pitch_shift_cents)),
        )


IN_DOMAIN = SpeakerDistribution(
    condition="in_domain",
    variants=("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f5"),
    pitch=((35, 65),),
    pitch_range=((80, 120),),
    rate=((150, 185),),
    amplitude=((80, 120),),
    tempo=((0.96, 1.04),),
    gain_db=((-4, 0),),
)
#: Out-of-domain: variants never used in training, pitch, pitch range and rate (also rate x
#: tempo) strictly outside the in-domain ranges.
OOD = SpeakerDistribution(
    condition="ood",
    variants=("m7", "f4", "klatt", "klatt2", "klatt4", "m8"),
    pitch=((15, 30), (70, 85)),
    pitch_range=((40, 70), (130, 160)),
    rate=((115, 140), (195, 220)),
    amplitude=((70, 130),),
    tempo=((0.9, 0.94), (1.06, 1.1)),
    gain_db=((-6, 0),),
)
CHILD = SpeakerDistribution(
    condition="child",
    variants=("f1", "f2", "f3", "f5", "m1", "m3"),
    pitch=((75, 99),),
    pitch_range=((110, 150),),
    rate=((185, 230),),
    amplitude=((80, 120),),
    tempo=((1.0, 1.1),),
    gain_db=((-4, 0),),
    pitch_shift_cents=((300, 600),),
)
DISTRIBUTIONS = {d.condition: d for d in (IN_DOMAIN, OOD, CHILD)}


def all_variants() -> set[str]:
    """Every espeak-ng variant any condition may use."""
    return {v for d in DISTRIBUTIONS.values() for v in d.variants}


def sample_speakers(
    rng: np.random.Generator,
    counts: dict[str, tuple[int, SpeakerDistribution]],
    prefix: str,
) -> dict[str, list[SpeakerProfile]]:
    """Distinct speakers per split: ``counts[split] = (number, distribution)``.

    Speaker ids are ``<prefix>-<split>-spkNN``; no two speakers (in any split) share all
    parameters, so train, dev and test speakers are disjoint.
    """
    seen: set[tuple] = set()
    speakers: dict[str, list[SpeakerProfile]] = {}
    for split, (number, dist) in counts.items():
        if number < 1:
            raise ConfigError(f"split {split!r} needs at least one speaker, got {number}")
        speakers[split] = []
        for k in range(number):
            for _ in range(1000):
                spk = dist.sample(rng, f"{prefix}-{split}-spk{k:02d}")
                if spk.key() not in seen:
                    break
            else:
                raise ConfigError(f"cannot draw {number} distinct speakers for {prefix} {split}")
            seen.add(spk.key())
            speakers[split].append(spk)
    return speakers
