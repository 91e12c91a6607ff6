"""Raw text corpora for language models: ``<output>/text/mini_raw_<lang>.txt``.

Each holds ``ratio`` times as many words as the transcribed training text of that language,
drawn from the same sentence sampler (English also from the en-de grammar), one sentence per
line, and never a dev or test transcript.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from speechkd.data.synth.plan import UtterancePlan
from speechkd.data.synth.seeding import derive_seed, derived_rng
from speechkd.data.synth.sentences import IN_DOMAIN_LENGTHS, SentenceSampler
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

RAW_TEXT_RATIO = 20
#: Share of the English raw text taken from the en-de grammar.
GRAMMAR_SHARE = 0.25


def raw_text_path(output_dir: str | Path, lang: str) -> Path:
    return Path(output_dir) / "text" / f"mini_raw_{lang}.txt"


def _grammar_sentences(seed: int, target_words: int, heldout: set[str]) -> tuple[list[str], int]:
    from speechkd.data.synth.en_de_grammar import generate_translation_pairs

    if target_words <= 0:
        return [], 0
    pairs = generate_translation_pairs(math.ceil(target_words / 4), seed=seed % 2**32)
    lines, words = [], 0
    for pair in pairs:
        if words >= target_words:
            break
        if pair.en not in heldout:
            lines.append(pair.en)
            words += len(pair.en.split())
    return lines, words


def write_raw_text(
    output_dir: str | Path,
    seed: int,
    plans: list[UtterancePlan],
    ratio: int = RAW_TEXT_RATIO,
) -> dict[str, dict[str, int]]:
    """Write the raw text of every language that has training utterances in ``plans``.

    Returns per language the number of lines, words and training words.
    """
    train_words: dict[str, int] = {}
    heldout: dict[str, set[str]] = {}
    for p in plans:
        if p.split == "train":
            train_words[p.lang] = train_words.get(p.lang, 0) + p.num_words
        else:
            heldout.setdefault(p.lang, set()).add(p.text)
    stats = {}
    for lang in sorted(train_words):
        target = ratio * train_words[lang]
        excluded = heldout.get(lang, set())
        lines: list[str] = []
        words = 0
        if lang == "en":
            seed_g = derive_seed(seed, "raw-grammar")
            lines, words = _grammar_sentences(seed_g, int(GRAMMAR_SHARE * target), excluded)
        sampler = SentenceSampler(lang)
        rng = derived_rng(seed, "raw", lang)
        skipped = 0
        while words < target:
            sentence = sampler.sample(rng, IN_DOMAIN_LENGTHS)
            if sentence.text in excluded:
                skipped += 1
                continue
            lines.append(sentence.text)
            words += sentence.num_words
        leaked = excluded.intersection(lines)
        if leaked:
            raise DataError(f"raw text {lang} contains held-out sentence {sorted(leaked)[0]!r}")
        order = derived_rng(seed, "raw-order", lang).permutation(len(lines))
        path = raw_text_path(output_dir, lang)
        atomic_write_text(path, "".join(lines[i] + "\n" for i in order))
        log.info(
            "%s: %d lines, %d words (%.1fx the %d training words; %d held-out sentences redrawn)",
            path, len(lines), words, words / train_words[lang], train_words[lang], skipped,
        )  # fmt: skip
        stats[lang] = {"lines": len(lines), "words": words, "train_words": train_words[lang]}
    return stats
