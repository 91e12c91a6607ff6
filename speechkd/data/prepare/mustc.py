"""MuST-C (v1.0, v2.0) English→X speech translation: English transcript AND translation.

Layout (as released, one archive per target language)::

    <corpus_dir>/en-<tgt>/data/<split>/wav/ted_<talk>.wav
    <corpus_dir>/en-<tgt>/data/<split>/txt/<split>.yaml   one entry per segment:
        - {duration: 3.5, offset: 16.08, rW: 9, uW: 0, speaker_id: spk.767, wav: ted_767.wav}
    <corpus_dir>/en-<tgt>/data/<split>/txt/<split>.en     English transcript, line i = entry i
    <corpus_dir>/en-<tgt>/data/<split>/txt/<split>.<tgt>  translation, line i = entry i

with splits ``train``, ``dev``, ``tst-COMMON``, ``tst-HE``. ``corpus_dir`` may also be the
``en-<tgt>`` directory itself.

Why our own parser and not ``lhotse.recipes.must_c``: lhotse's recipe reads only the target
side (``supervision.text`` = translation, ``language`` = target), asserts on line-count
mismatches, groups segments by *consecutive* wav names (a talk listed twice would become two
recordings with the same id) and writes its manifests in place. Here one pass reads the yaml and
both text files, checks their alignment (a DataError names the three files and their counts) and
produces, per segment::

    supervision.id       = "<talk>_<i>"   (i: index within the talk, the ids fairseq's
                                            prep_mustc_data.py gives, so fairseq exports match)
    supervision.text     = English transcript      supervision.language = "en"
    supervision.speaker  = speaker_id of the yaml
    custom["translation"] = target text            custom["tgt_lang"] = "<tgt>"

Output splits are ``en-<tgt>_<split>`` (``mustc_cuts_en-de_tst-COMMON.jsonl.gz``), one cut per
segment.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections import defaultdict
from pathlib import Path

import yaml
from lhotse import SupervisionSegment

from speechkd.data.prepare.languages import to_iso639_1
from speechkd.data.prepare.st_common import (
    check_aligned,
    fit_to_recordings,
    parse_list_option,
    probe_recordings,
    read_text_lines,
    require_dir,
    save_segments,
)
from speechkd.errors import DataError

logger = logging.getLogger(__name__)

CORPUS = "mustc"
SRC_LANG = "en"
SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
YAML_FIELDS = ("duration", "offset", "wav")


def find_pair_dir(corpus_dir: str | os.PathLike, tgt_lang: str) -> Path:
    """The ``en-<tgt>`` directory: ``corpus_dir/en-<tgt>`` or ``corpus_dir`` itself."""
    corpus_dir = Path(corpus_dir)
    pair = f"{SRC_LANG}-{tgt_lang}"
    for candidate in (corpus_dir / pair, corpus_dir):
        if candidate.name == pair and (candidate / "data").is_dir():
            return candidate
    raise DataError(f"{corpus_dir}: no MuST-C {pair}/data directory found")


def read_segment_yaml(path: Path) -> list[dict]:
    """The segment list of ``<split>.yaml``; every entry needs duration, offset and wav."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        raw = path.read_bytes().decode("utf-8")
        entries = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 ({err.reason})") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path}: invalid YAML ({err})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of segments, got {type(entries).__name__}")
    for number, entry in enumerate(entries, start=1):
        missing = [f for f in YAML_FIELDS if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise DataError(f"{path}: segment {number} lacks {', '.join(missing)}")
    return entries


def prepare_split(
    pair_dir: Path,
    split: str,
    tgt_lang: str,
    num_jobs: int = 1,
    skip_empty: bool = False,
) -> tuple[list, list[SupervisionSegment]]:
    """Recordings and supervisions of one MuST-C split."""
    split_dir = require_dir(pair_dir / "data" / split, f"MuST-C split {split}")
    txt_dir = split_dir / "txt"
    yaml_path = txt_dir / f"{split}.yaml"
    src_path = txt_dir / f"{split}.{SRC_LANG}"
    tgt_path = txt_dir / f"{split}.{tgt_lang}"
    entries = read_segment_yaml(yaml_path)
    transcripts = read_text_lines(src_path, skip_empty=skip_empty)
    translations = read_text_lines(tgt_path, skip_empty=skip_empty)
    check_aligned(
        {yaml_path: len(entries), src_path: len(transcripts), tgt_path: len(translations)}
    )

    wav_dir = split_dir / "wav"
    talks: dict[str, Path] = {}
    per_talk: dict[str, int] = defaultdict(int)
    supervisions = []
    skipped = 0
    rows = zip(entries, transcripts, translations, strict=True)
    for number, (entry, src, tgt) in enumerate(rows, start=1):
        wav = Path(str(entry["wav"]))
        talk = wav.stem
        index = per_talk[talk]  # counted before skipping, so ids do not depend on skip_empty
        per_talk[talk] += 1
        if not src or not tgt:
            skipped += 1  # only reachable with skip_empty
            continue
        talks.setdefault(talk, wav_dir / wav.name)
        try:
            start, duration = float(entry["offset"]), float(entry["duration"])
        except (TypeError, ValueError):
            raise DataError(f"{yaml_path}: segment {number}: offset/duration not numbers") from None
        supervisions.append(
            SupervisionSegment(
                id=f"{talk}_{index}",
                recording_id=talk,
                start=round(start, 6),
                duration=round(duration, 6),
                channel=0,
                text=src,
                language=SRC_LANG,
                speaker=str(entry["speaker_id"]) if entry.get("speaker_id") is not None else None,
                custom={"translation": tgt, "tgt_lang": to_iso639_1(tgt_lang)},
            )
        )
    if skipped:
        logger.warning(
            "%s: skipped %d segment(s) with an empty transcript or translation (skip_empty)",
            yaml_path,
            skipped,
        )
    recordings = probe_recordings(list(talks.items()), num_jobs=num_jobs, desc=f"MuST-C {split}")
    supervisions = fit_to_recordings(supervisions, {r.id: r for r in recordings}, str(yaml_path))
    return recordings, supervisions


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    tgt_lang: str = "de",
    splits: str | list[str] | None = None,
    num_jobs: int = 1,
    skip_empty: bool = False,
) -> dict[str, dict[str, Path]]:
    """Prepare MuST-C en-<tgt_lang> manifests.

    ``splits``: subset of train, dev, tst-COMMON, tst-HE (default: those present, at least one).
    ``skip_empty``: drop segments whose transcript or translation line is empty (logged with a
    count) instead of failing. Returns ``{"en-<tgt>_<split>": {kind: path}}``.
    """
    pair_dir = find_pair_dir(corpus_dir, tgt_lang)
    wanted = parse_list_option(splits, "splits")
    if wanted is None:
        wanted = [s for s in SPLITS if (pair_dir / "data" / s).is_dir()]
        if not wanted:
            raise DataError(f"{pair_dir / 'data'}: none of the splits {', '.join(SPLITS)} found")
    written = {}
    for split in wanted:
        recordings, supervisions = prepare_split(pair_dir, split, tgt_lang, num_jobs, skip_empty)
        name = f"{SRC_LANG}-{tgt_lang}_{split}"
        written[name] = save_segments(CORPUS, name, recordings, supervisions, output_dir)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument("--tgt-lang", default="de", help="target language of the en-X pair")
    parser.add_argument(
        "--splits", default=None, help="comma-separated splits (default: all present)"
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
    parser.add_argument(
        "--skip-empty",
        action="store_true",
        help="drop segments with an empty transcript/translation instead of failing",
    )
