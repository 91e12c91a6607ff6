"""Common Voice (13.0) with DistilWhisper's down-sampling: the most up-voted train/dev clips.

Layout (one directory per locale, as released)::

    cv-corpus-13.0-2023-03-09/<locale>/{train,dev,test,validated,...}.tsv
    cv-corpus-13.0-2023-03-09/<locale>/clips/common_voice_<locale>_<n>.mp3

Per locale, ``train_utts`` train and ``dev_utts`` dev utterances are kept, chosen by up-votes
(most up-voted first; ties: fewer down-votes, then clip name); the test split is kept whole.
Rows become lhotse manifests through ``lhotse.recipes.commonvoice`` (speaker = client_id,
gender, custom age/accents/variant); ``up_votes``, ``down_votes`` and the CV ``locale`` are
added to ``supervision.custom`` and ``supervision.language`` is the ISO 639-1 code.
Output splits are named ``<locale>_<part>`` (``commonvoice_cuts_ca_train.jsonl.gz``).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lhotse import RecordingSet, SupervisionSet
from lhotse.recipes.commonvoice import _parse_utterance
from tqdm.auto import tqdm

from speechkd.data.prepare.languages import parse_language_list, to_iso639_1
from speechkd.data.prepare.lhotse_recipe import require_file, require_text, save_split
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CORPUS = "commonvoice"
RELEASE = "cv-corpus-13.0-2023-03-09"
PARTS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes")
# Columns lhotse's row parser reads; older releases lack some of them.
LHOTSE_COLUMNS = ("age", "gender", "accents", "variant")


@dataclass(frozen=True)
class ClipRow:
    """One row of a Common Voice tsv file."""

    fields: dict[str, str]
    where: str  # "<tsv path>:<line number>"
    up_votes: int
    down_votes: int

    @property
    def path(self) -> str:
        return self.fields["path"]


def read_clip_table(tsv: str | os.PathLike) -> list[ClipRow]:
    """Read a CV tsv strictly: UTF-8, the header's columns, a clip path, votes, a sentence."""
    tsv = Path(tsv)
    lines = read_utf8_lines(tsv)
    if not lines:
        raise DataError(f"{tsv}: empty file (no header)")
    # QUOTE_NONE as in lhotse: CV sentences contain unbalanced quotes.
    table = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(table)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{tsv}:1: missing column(s) {', '.join(missing)}")
    rows: list[ClipRow] = []
    seen: dict[str, str] = {}
    for number, values in enumerate(table, start=2):
        where = f"{tsv}:{number}"
        if not values:
            continue  # blank line (e.g. a trailing one)
        if len(values) != len(header):
            raise DataError(f"{where}: {len(values)} fields, the header has {len(header)}")
        fields = dict(zip(header, values, strict=True))
        if not fields["path"]:
            raise DataError(f"{where}: empty path")
        if fields["path"] in seen:
            raise DataError(
                f"{where}: clip {fields['path']} already listed at {seen[fields['path']]}"
            )
        seen[fields["path"]] = where
        require_text(fields["sentence"], f"{where} ({fields['path']})")
        votes = []
        for column in ("up_votes", "down_votes"):
            try:
                votes.append(int(fields[column]))
            except ValueError:
                raise DataError(f"{where}: {column} {fields[column]!r} is not an integer") from None
        for column in LHOTSE_COLUMNS:
            fields.setdefault(column, "")
        rows.append(ClipRow(fields, where, up_votes=votes[0], down_votes=votes[1]))
    return rows


def vote_rank_key(row: ClipRow) -> tuple[int, int, str]:
    """Sort key: most up-votes first, then fewest down-votes, then clip name."""
    return (-row.up_votes, row.down_votes, row.path)


def select_most_upvoted(rows: Sequence[ClipRow], limit: int | None) -> list[ClipRow]:
    """The ``limit`` most up-voted rows (all if ``limit`` is None), in their original order."""
    if limit is None or limit >= len(rows):
        return list(rows)
    if limit < 0:
        raise ConfigError(f"utterance limit must be >= 0 or None, got {limit}")
    keep = {id(r) for r in sorted(rows, key=vote_rank_key)[:limit]}
    return [r for r in rows if id(r) in keep]


def find_release_dir(corpus_dir: str | os.PathLike) -> Path:
    """``corpus_dir`` itself, or its ``cv-corpus-13.0-2023-03-09`` subdirectory if present."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise DataError(f"{corpus_dir}: Common Voice directory not found")
    nested = corpus_dir / RELEASE
    return nested if nested.is_dir() else corpus_dir


def discover_locales(release_dir: Path) -> list[str]:
    """Locale directories (those holding a train.tsv), sorted."""
    return sorted(p.parent.name for p in release_dir.glob("*/train.tsv"))


def _make_pair(locale_dir: Path, language: str, row: ClipRow):
    require_file(locale_dir / "clips" / row.path, f"{row.where}")
    recording, segment = _parse_utterance(locale_dir, language, row.fields)
    segment.custom = {
        **(segment.custom or {}),
        "up_votes": row.up_votes,
        "down_votes": row.down_votes,
        "locale": locale_dir.name,
    }
    return recording, segment


def prepare_part(
    locale_dir: Path, rows: Sequence[ClipRow], language: str, num_jobs: int = 1
) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings and supervisions of the given rows (lhotse's row parser, threads)."""
    with ThreadPoolExecutor(max(1, num_jobs)) as pool:
        pairs = list(
            tqdm(
                pool.map(lambda r: _make_pair(locale_dir, language, r), rows),
                total=len(rows),
                desc=f"commonvoice {locale_dir.name}",
                leave=False,
            )
        )
    return (
        RecordingSet.from_recordings(p[0] for p in pairs),
        SupervisionSet.from_segments(p[1] for p in pairs),
    )


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    languages: Sequence[str] | str = "auto",
    train_utts: int | None = 10_000,
    dev_utts: int | None = 1_000,
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare down-sampled train/dev and full test manifests for each CV locale.

    ``languages``: CV locale names (``ca``, ``zh-CN``) or "auto" (every locale found).
    ``train_utts``/``dev_utts``: how many utterances to keep (None keeps all).
    Returns ``{"<locale>_<part>": {"recordings"|"supervisions"|"cuts": path}}``.
    """
    release_dir = find_release_dir(corpus_dir)
    languages = parse_language_list(languages)
    if languages in ("auto", "all"):
        locales = discover_locales(release_dir)
        if not locales:
            raise DataError(f"{release_dir}: no <locale>/train.tsv found")
    else:
        locales = list(languages)
    limits = {"train": train_utts, "dev": dev_utts, "test": None}
    written: dict[str, dict[str, Path]] = {}
    for locale in locales:
        locale_dir = release_dir / locale
        if not locale_dir.is_dir():
            raise DataError(f"{locale_dir}: no such Common Voice locale directory")
        language = to_iso639_1(locale)
        for part in PARTS:
            rows = read_clip_table(locale_dir / f"{part}.tsv")
            kept = select_most_upvoted(rows, limits[part])
            if limits[part] is not None and limits[part] > len(rows):
                logger.warning(
                    "%s %s: asked for %d utterances, the corpus has only %d: keeping all",
                    locale,
                    part,
                    limits[part],
                    len(rows),
                )
            if len(kept) < len(rows):
                logger.info(
                    "%s %s: kept the %d most up-voted of %d utterances (up_votes >= %d)",
                    locale,
                    part,
                    len(kept),
                    len(rows),
                    min(r.up_votes for r in kept),
                )
            recordings, supervisions = prepare_part(locale_dir, kept, language, num_jobs)
            split = f"{locale}_{part}"
            written[split] = save_split(
                CORPUS,
                split,
                recordings,
                supervisions,
                output_dir,
                language=language,
                expected_ids=[Path(r.path).stem for r in kept],
            )
    return written


def utterance_limit(value: str) -> int | None:
    """argparse type: a non-negative integer, or "all" for no limit."""
    if value.lower() in ("all", "none"):
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative count, got {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument(
        "--languages", nargs="+", default="auto", help='CV locales (e.g. "ca th") or auto'
    )
    parser.add_argument(
        "--train-utts",
        type=utterance_limit,
        default=10_000,
        help="train utterances kept per locale, most up-voted first ('all')",
    )
    parser.add_argument(
        "--dev-utts",
        type=utterance_limit,
        default=1_000,
        help="dev utterances kept per locale, most up-voted first ('all')",
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
