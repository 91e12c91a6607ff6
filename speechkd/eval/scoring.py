"""Score a hypothesis file against references and write the decode-dir files (``score`` CLI)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.eval.bleu import TRANSLATION_METRICS, compute_translation_score
from speechkd.eval.decode_files import write_error_rate_files, write_translation_files
from speechkd.eval.inputs import (
    is_manifest,
    read_kaldi_text,
    read_languages,
    read_reference_manifest,
)
from speechkd.eval.normalize import normalize_text, normalizer_name
from speechkd.eval.wer import METRICS, ErrorRateReport, Utterance, score_utterances

logger = logging.getLogger(__name__)

ALL_METRICS = METRICS + TRANSLATION_METRICS
MAX_LISTED_IDS = 5


@dataclass
class ScoringInput:
    """Matched references and hypotheses (raw text), in reference order."""

    ids: list[str]
    refs: list[str]
    hyps: list[str]
    languages: list[str | None]
    missing_hyps: int = 0


def _listing(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:MAX_LISTED_IDS])
    more = f" and {len(ids) - MAX_LISTED_IDS} more" if len(ids) > MAX_LISTED_IDS else ""
    return shown + more


def load_scoring_input(
    ref: str | os.PathLike,
    hyp: str | os.PathLike,
    metric: str = "wer",
    language: str | None = None,
    ref_cuts: str | os.PathLike | None = None,
    allow_missing: bool = False,
) -> ScoringInput:
    """Read references (Kaldi text or lhotse manifest) and hypotheses (Kaldi text) and match ids.

    Languages: ``language`` for all utterances, else those of ``ref_cuts`` or of the reference
    manifest (for BLEU/chrF the ``tgt_lang`` custom field where present). Reference ids without a
    hypothesis are an error unless ``allow_missing`` (then they are empty hypotheses, logged);
    hypothesis ids without a reference are always an error.
    """
    translation = metric in TRANSLATION_METRICS
    manifest_languages: dict[str, str | None] = {}
    if is_manifest(ref):
        refs, manifest_languages = read_reference_manifest(
            ref,
            text_field="translation" if translation else "text",
            language_field="tgt_lang" if translation else "language",
        )
    else:
        refs = read_kaldi_text(ref)
    if ref_cuts is not None:
        manifest_languages = read_languages(ref_cuts)
    hyps = read_kaldi_text(hyp)

    extra = [i for i in hyps if i not in refs]
    if extra:
        raise DataError(
            f"{hyp}: {len(extra)} hypothesis ids have no reference in {ref}: {_listing(extra)}"
        )
    missing = [i for i in refs if i not in hyps]
    if missing:
        if not allow_missing:
            raise DataError(
                f"{hyp}: {len(missing)} of {len(refs)} reference ids from {ref} have no "
                f"hypothesis: {_listing(missing)} (--allow-missing scores them as empty)"
            )
        logger.warning(
            "%d of %d utterances have no hypothesis in %s; scored as empty hypotheses (deletions)",
            len(missing),
            len(refs),
            hyp,
        )

    languages: list[str | None] = []
    for utt_id in refs:
        if language is not None:
            languages.append(language)
        elif manifest_languages:
            if utt_id not in manifest_languages:
                raise DataError(f"{ref_cuts or ref}: no language for utterance {utt_id!r}")
            lang = manifest_languages[utt_id]
            if lang is None and not translation:
                raise DataError(
                    f"{ref_cuts or ref}: utterance {utt_id!r} has no language (pass --language)"
                )
            languages.append(lang)
        elif translation:
            languages.append(None)
        else:
            raise ConfigError(
                "the language is needed for normalisation: pass --language or "
                "--ref-cuts (or a reference manifest with languages)"
            )
    ids = list(refs)
    return ScoringInput(
        ids=ids,
        refs=[refs[i] for i in ids],
        hyps=[hyps.get(i, "") for i in ids],
        languages=languages,
        missing_hyps=len(missing),
    )


def error_rate_report(
    data: ScoringInput, metric: str = "wer", allow_empty_ref: bool = False
) -> ErrorRateReport:
    """WER/CER of matched raw texts after Whisper normalisation of each utterance's language.

    For "wer", scripts without spaces (th, zh, ...) are split into characters.
    """
    split_script = metric == "wer"
    utterances = [
        Utterance(
            utt_id,
            normalize_text(ref, lang, split_script),
            normalize_text(hyp, lang, split_script),
            lang,
        )
        for utt_id, ref, hyp, lang in zip(
            data.ids, data.refs, data.hyps, data.languages, strict=True
        )
    ]
    return score_utterances(utterances, metric, allow_empty_ref=allow_empty_ref)


def score_input(
    data: ScoringInput,
    set_name: str,
    out_dir: str | os.PathLike,
    metric: str = "wer",
    allow_empty_ref: bool = False,
    **extra,
) -> dict[str, Path]:
    """Score matched input with ``metric`` and write the decode-dir files; return their paths."""
    if metric not in ALL_METRICS:
        raise ConfigError(f"--metric must be one of {ALL_METRICS}, got {metric!r}")
    if metric in TRANSLATION_METRICS:
        overall_lang = data.languages[0] if len(set(data.languages)) == 1 else None
        overall = compute_translation_score(metric, data.hyps, data.refs, overall_lang)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, lang in enumerate(data.languages):
            if lang is not None:
                groups[lang].append(index)
        per_language = {
            lang: compute_translation_score(
                metric, [data.hyps[i] for i in idx], [data.refs[i] for i in idx], lang
            )
            for lang, idx in groups.items()
        }
        return write_translation_files(
            out_dir,
            set_name,
            data.ids,
            data.refs,
            data.hyps,
            overall,
            per_language,
            missing_hypotheses=data.missing_hyps,
            **extra,
        )
    report = error_rate_report(data, metric, allow_empty_ref)
    split_script = metric == "wer"
    normalizers = {lang or "unk": normalizer_name(lang, split_script) for lang in data.languages}
    return write_error_rate_files(
        out_dir, set_name, report, normalizers, missing_hyps=data.missing_hyps, **extra
    )
