"""Generate the mini corpora: plan, raw text, synthesis (parallel, resumable), manifests, stats."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from speechkd.data.synth.espeak import (
    SAMPLE_RATE,
    check_voices,
    check_wav,
    require_binary,
    synthesize,
)
from speechkd.data.synth.languages import ASR_LANGUAGES, LANGUAGES
from speechkd.data.synth.manifests import build_manifests, write_manifests
from speechkd.data.synth.plan import (
    ASR_CORPUS,
    CHILD_CORPUS,
    CORPORA,
    ST_CORPUS,
    Plans,
    UtterancePlan,
    plan_asr,
    plan_child,
    plan_st,
)
from speechkd.data.synth.rawtext import write_raw_text
from speechkd.data.synth.scales import ScaleConfig, get_scale
from speechkd.data.synth.speakers import SpeakerProfile, all_variants
from speechkd.errors import ConfigError
from speechkd.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

FINGERPRINT_FILE = ".plan-fingerprint"


@dataclass(frozen=True)
class _Job:
    utt_id: str
    spoken: str
    voice: str
    speaker: SpeakerProfile
    path: str
    espeak: str
    sox: str


def _run_job(job: _Job) -> tuple[str, int, bool]:
    """Synthesise one utterance unless its (atomically written, hence complete) wav exists."""
    path = Path(job.path)
    if path.exists():
        return job.utt_id, check_wav(path), True
    n = synthesize(job.spoken, job.voice, job.speaker, path, espeak=job.espeak, sox=job.sox)
    return job.utt_id, n, False


def _fingerprint(plans: list[UtterancePlan]) -> str:
    data = [(p.utt_id, p.spoken, p.voice, p.speaker.as_dict()) for p in plans]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


def _prepare_wav_dirs(output_dir: Path, plans: list[UtterancePlan]) -> None:
    """Reuse finished wavs only where the directory's plan is unchanged; else remove them."""
    by_dir: dict[Path, list[UtterancePlan]] = {}
    for p in plans:
        by_dir.setdefault((output_dir / p.wav_relpath).parent, []).append(p)
    for wav_dir, dir_plans in by_dir.items():
        wav_dir.mkdir(parents=True, exist_ok=True)
        for tmp in wav_dir.glob(".tmp-*"):
            tmp.unlink()
        stamp = wav_dir / FINGERPRINT_FILE
        fingerprint = _fingerprint(dir_plans)
        if stamp.exists() and stamp.read_text().strip() == fingerprint:
            continue
        stale = list(wav_dir.glob("*.wav"))
        if stale:
            log.info("%s: plan changed, removing %d wavs of an earlier run", wav_dir, len(stale))
            for wav in stale:
                wav.unlink()
        atomic_write_text(stamp, fingerprint + "\n")


def synthesize_all(
    output_dir: Path, plans: list[UtterancePlan], nj: int, espeak: str, sox: str
) -> dict[str, int]:
    """Synthesise every planned utterance with ``nj`` processes; returns samples per id."""
    _prepare_wav_dirs(output_dir, plans)
    jobs = [
        _Job(p.utt_id, p.spoken, p.voice, p.speaker, str(output_dir / p.wav_relpath), espeak, sox)
        for p in plans
    ]
    results: dict[str, int] = {}
    reused = 0
    progress = tqdm(total=len(jobs), desc="synthesising", unit="utt", mininterval=2.0)

    def collect(items: Iterable[tuple[str, int, bool]]) -> None:
        nonlocal reused
        for utt, n, was_there in items:
            results[utt] = n
            reused += was_there
            progress.update()

    if nj == 1:
        collect(map(_run_job, jobs))
    else:
        with multiprocessing.get_context("fork").Pool(nj) as pool:
            collect(pool.imap_unordered(_run_job, jobs, chunksize=16))
    progress.close()
    if reused:
        log.info("reused %d finished wavs of an earlier run", reused)
    return results


def _validate_args(nj: int, corpora: list[str], languages: list[str]) -> None:
    if not isinstance(nj, int) or nj < 1:
        raise ConfigError(f"nj must be a positive integer, got {nj!r}")
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown or not corpora:
        raise ConfigError(f"corpora must be among {', '.join(CORPORA)}, got {corpora!r}")
    bad = [lang for lang in languages if lang not in LANGUAGES]
    if bad or not languages:
        raise ConfigError(f"languages must be among {', '.join(LANGUAGES)}, got {languages!r}")


def summarise(
    plans: dict[str, Plans], num_samples: dict[str, int]
) -> dict[str, dict[str, dict[str, dict]]]:
    """corpus -> split -> language -> utterances, hours, speakers, words."""
    stats: dict = {}
    for corpus, splits in plans.items():
        for split, items in splits.items():
            for p in items:
                entry = (
                    stats.setdefault(corpus, {})
                    .setdefault(split, {})
                    .setdefault(
                        p.lang, {"utterances": 0, "hours": 0.0, "speakers": set(), "words": 0}
                    )
                )
                entry["utterances"] += 1
                entry["hours"] += num_samples[p.utt_id] / SAMPLE_RATE / 3600
                entry["speakers"].add(p.speaker.speaker_id)
                entry["words"] += p.num_words
    for splits in stats.values():
        for langs in splits.values():
            for entry in langs.values():
                entry["speakers"] = len(entry["speakers"])
                entry["hours"] = round(entry["hours"], 4)
    return stats


def format_stats(stats: dict) -> str:
    """A plain-text table of hours per corpus, split and language."""
    lines = [f"{'corpus':<11} {'split':<10} {'lang':<5} {'utts':>6} {'spk':>4} {'hours':>7}"]
    total = 0.0
    for corpus, splits in stats.items():
        for split, langs in splits.items():
            for lang, e in langs.items():
                lines.append(
                    f"{corpus:<11} {split:<10} {lang:<5} {e['utterances']:>6} "
                    f"{e['speakers']:>4} {e['hours']:>7.3f}"
                )
                total += e["hours"]
    lines.append(f"total {total:.3f} h")
    return "\n".join(lines)


def generate_mini_corpus(
    output_dir: str | Path = "data",
    scale: str | ScaleConfig = "small",
    seed: int = 0,
    nj: int = 2,
    corpora: list[str] | None = None,
    languages: list[str] | None = None,
    espeak: str = "espeak-ng",
    sox: str = "sox",
) -> dict:
    """Generate the mini corpora under ``output_dir`` and return the statistics.

    ``languages`` selects the languages of ``mini_asr`` (default: all); ``mini_child`` and
    ``mini_st`` are English. With both ``mini_asr`` and ``mini_child``, the child test set is
    also written as split ``test_child`` of ``mini_asr``. Writes wavs under
    ``<output>/mini/wav``, manifests under ``<output>/manifests``, raw text under
    ``<output>/text`` and ``<output>/mini/stats.json``.
    """
    start = time.time()
    output_dir = Path(output_dir)
    config = get_scale(scale) if isinstance(scale, str) else scale
    corpora = list(CORPORA if corpora is None else corpora)
    languages = list(ASR_LANGUAGES if languages is None else languages)
    _validate_args(nj, corpora, languages)
    espeak_path, sox_path = require_binary(espeak), require_binary(sox)
    used_langs = set(languages) if ASR_CORPUS in corpora else set()
    if CHILD_CORPUS in corpora or ST_CORPUS in corpora:
        used_langs.add("en")
    check_voices(espeak_path, {LANGUAGES[lang].voice for lang in used_langs}, all_variants())

    plans: dict[str, Plans] = {}
    if ASR_CORPUS in corpora:
        plans[ASR_CORPUS] = plan_asr(seed, config, languages)
    if CHILD_CORPUS in corpora:
        plans[CHILD_CORPUS] = plan_child(seed, config)
    if ST_CORPUS in corpora:
        plans[ST_CORPUS] = plan_st(seed, config)
    flat = [p for splits in plans.values() for items in splits.values() for p in items]
    log.info("planned %d utterances (%s scale, seed %d)", len(flat), config.name, seed)

    raw_stats = write_raw_text(output_dir, seed, flat)
    num_samples = synthesize_all(output_dir, flat, nj, espeak_path, sox_path)

    for corpus, splits in plans.items():
        for split, items in splits.items():
            write_manifests(
                output_dir, corpus, split, build_manifests(items, num_samples, output_dir)
            )
    if ASR_CORPUS in plans and CHILD_CORPUS in plans:
        child_test = build_manifests(plans[CHILD_CORPUS]["test"], num_samples, output_dir)
        write_manifests(output_dir, ASR_CORPUS, "test_child", child_test)

    stats = {
        "scale": config.name,
        "seed": seed,
        "corpora": summarise(plans, num_samples),
        "raw_text": raw_stats,
        "generation_seconds": round(time.time() - start, 1),
        "nj": nj,
    }
    atomic_write_text(output_dir / "mini" / "stats.json", json.dumps(stats, indent=2) + "\n")
    log.info("hours per corpus, split and language:\n%s", format_stats(stats["corpora"]))
    log.info("generated in %.1f s", stats["generation_seconds"])
    return stats
