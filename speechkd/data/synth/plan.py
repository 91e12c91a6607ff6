"""Deterministic utterance plans (text, speaker, voice, custom fields) for the mini corpora.

All randomness lives here, in the main process: utterance ``i`` of (corpus, split, language)
draws from a generator seeded by (seed, corpus, split, language, i), so the plans do not depend
on the number of synthesis jobs. Sentences are unique within a corpus and language, so no
dev/test transcript occurs in training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from speechkd.data.synth.languages import LANGUAGES
from speechkd.data.synth.scales import ASR_SPLITS, CHILD_SPLITS, ST_SPLITS, ScaleConfig
from speechkd.data.synth.seeding import derive_seed, derived_rng
from speechkd.data.synth.sentences import (
    CHILD_CONVERSATIONAL_LENGTHS,
    CHILD_READ_LENGTHS,
    IN_DOMAIN_LENGTHS,
    OOD_LENGTHS,
    Sentence,
    SentenceSampler,
)
from speechkd.data.synth.speakers import CHILD, IN_DOMAIN, OOD, SpeakerProfile, sample_speakers
from speechkd.errors import ConfigError

log = logging.getLogger(__name__)

ASR_CORPUS, CHILD_CORPUS, ST_CORPUS = "mini_asr", "mini_child", "mini_st"
CORPORA = (ASR_CORPUS, CHILD_CORPUS, ST_CORPUS)
MAX_DRAWS = 200


@dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to synthesise one utterance and write its manifests."""

    utt_id: str
    corpus: str
    split: str
    lang: str
    text: str
    spoken: str
    num_words: int
    voice: str
    speaker: SpeakerProfile
    custom: dict = field(default_factory=dict)

    @property
    def wav_relpath(self) -> str:
        """Path of the wav below the output directory."""
        return f"mini/wav/{self.corpus}/{self.split}/{self.lang}/{self.utt_id}.wav"


Plans = dict[str, list[UtterancePlan]]  # split -> utterances


def utt_id(corpus: str, split: str, lang: str, index: int) -> str:
    return f"{corpus}-{split}-{lang}-{index:06d}"


def _unique(draw: Callable[..., Sentence], args: tuple, seen: set[str], where: str) -> Sentence:
    """``draw(*args)`` until the sentence is new to ``seen`` (then added to it)."""
    for _ in range(MAX_DRAWS):
        sentence = draw(*args)
        if sentence.text not in seen:
            seen.add(sentence.text)
            return sentence
    raise ConfigError(f"{where}: no new unique sentence after {MAX_DRAWS} draws (too many)")


def _custom(speaker: SpeakerProfile, **extra: str) -> dict:
    return {"condition": speaker.condition, **extra, "voice": speaker.as_dict()}


def plan_asr(seed: int, scale: ScaleConfig, languages: list[str]) -> Plans:
    """The multilingual ASR corpus: train/dev/test in-domain, test_ood out-of-domain."""
    plans: Plans = {split: [] for split in ASR_SPLITS}
    for lang in languages:
        sampler = SentenceSampler(lang)
        voice = LANGUAGES[lang].voice
        counts = {
            split: (scale.asr_size(lang, split).speakers, OOD if split == "test_ood" else IN_DOMAIN)
            for split in ASR_SPLITS
        }
        rng = derived_rng(seed, ASR_CORPUS, lang, "speakers")
        speakers = sample_speakers(rng, counts, prefix=f"{ASR_CORPUS}-{lang}")
        seen: set[str] = set()
        for split in ASR_SPLITS:
            lengths = OOD_LENGTHS if split == "test_ood" else IN_DOMAIN_LENGTHS
            for i in range(scale.asr_size(lang, split).utterances):
                rng = derived_rng(seed, ASR_CORPUS, split, lang, i)
                uid = utt_id(ASR_CORPUS, split, lang, i)
                sentence = _unique(sampler.sample, (rng, lengths), seen, uid)
                spk = speakers[split][i % len(speakers[split])]
                plans[split].append(
                    UtterancePlan(
                        uid,
                        ASR_CORPUS,
                        split,
                        lang,
                        sentence.text,
                        sentence.spoken,
                        sentence.num_words,
                        voice,
                        spk,
                        _custom(spk),
                    )  # fmt: skip
                )
    return plans


def plan_child(seed: int, scale: ScaleConfig) -> Plans:
    """English child speech: read sentences and conversational ones with disfluencies."""
    lang = "en"
    sampler = SentenceSampler(lang)
    counts = {split: (scale.child[split].speakers, CHILD) for split in CHILD_SPLITS}
    speakers = sample_speakers(
        derived_rng(seed, CHILD_CORPUS, lang, "speakers"), counts, prefix=f"{CHILD_CORPUS}-{lang}"
    )
    plans: Plans = {split: [] for split in CHILD_SPLITS}
    seen: set[str] = set()
    for split in CHILD_SPLITS:
        for i in range(scale.child[split].utterances):
            rng = derived_rng(seed, CHILD_CORPUS, split, lang, i)
            uid = utt_id(CHILD_CORPUS, split, lang, i)
            style = "conversational" if rng.random() < 0.5 else "read"
            if style == "read":
                sentence = _unique(sampler.sample, (rng, CHILD_READ_LENGTHS), seen, uid)
            else:
                draw = sampler.sample_conversational
                sentence = _unique(draw, (rng, CHILD_CONVERSATIONAL_LENGTHS), seen, uid)
            spk = speakers[split][i % len(speakers[split])]
            plans[split].append(
                UtterancePlan(
                    uid,
                    CHILD_CORPUS,
                    split,
                    lang,
                    sentence.text,
                    sentence.spoken,
                    sentence.num_words,
                    LANGUAGES[lang].voice,
                    spk,
                    _custom(spk, style=style),
                )  # fmt: skip
            )
    return plans


def translation_pairs(seed: int, n: int) -> list:
    """``n`` English-German pairs with distinct English sides, deterministic from ``seed``."""
    from speechkd.data.synth.en_de_grammar import generate_translation_pairs

    extra = max(10, n // 20)
    pairs = generate_translation_pairs(n + extra, seed=derive_seed(seed, "pairs") % 2**32)
    seen: set[str] = set()
    unique = [p for p in pairs if not (p.en in seen or seen.add(p.en))]
    if len(unique) < n:
        raise ConfigError(f"only {len(unique)} pairs with distinct English sides, need {n}")
    duplicates = len(pairs) - len(unique)
    if duplicates:
        log.info("translation pairs: %d repeating an English side are not used", duplicates)
    return unique[:n]


def plan_st(seed: int, scale: ScaleConfig) -> Plans:
    """English speech with English transcripts and German translations."""
    lang = "en"
    sizes = [scale.st[split].utterances for split in ST_SPLITS]
    pairs = translation_pairs(derive_seed(seed, ST_CORPUS), sum(sizes))
    counts = {split: (scale.st[split].speakers, IN_DOMAIN) for split in ST_SPLITS}
    speakers = sample_speakers(
        derived_rng(seed, ST_CORPUS, lang, "speakers"), counts, prefix=f"{ST_CORPUS}-{lang}"
    )
    plans: Plans = {split: [] for split in ST_SPLITS}
    start = 0
    for split, size in zip(ST_SPLITS, sizes, strict=True):
        for i, pair in enumerate(pairs[start : start + size]):
            spk = speakers[split][i % len(speakers[split])]
            custom = _custom(spk, translation=pair.de, tgt_lang="de")
            plans[split].append(
                UtterancePlan(
                    utt_id(ST_CORPUS, split, lang, i),
                    ST_CORPUS,
                    split,
                    lang,
                    pair.en,
                    pair.en,
                    len(pair.en.split()),
                    LANGUAGES[lang].voice,
                    spk,
                    custom,
                )  # fmt: skip
            )
        start += size
    return plans
