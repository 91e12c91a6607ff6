"""Per-language subsets of a CutSet: the most up-voted utterances, or a seeded random draw.

DistilWhisper trains on the same number of Common Voice utterances per language (10k train, 1k
dev; 3k and 28k in the ablation), chosen by the up-votes a clip received. :func:`select_by_votes`
keeps, per language, the ``per_language`` cuts with the most votes; ties go to fewer down-votes,
then to the smaller recording id (the clip name), then cut id (or, with a ``seed``, to a seeded
hash of these ids). This is the order of :mod:`speechkd.data.prepare.commonvoice`, so selecting N
from its down-sampled pool of M >= N gives the N it would have prepared itself.

Votes are read from ``cut.custom[field]``, else from the first supervision's ``custom[field]``
(where the Common Voice preparer stores ``up_votes`` and ``down_votes``). The language of a cut
is ``supervision.language``. The selected cuts keep their input order.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lhotse import CutSet
from lhotse.cut import Cut

from speechkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MISSING_VOTES = ("error", "zero")
_MISSING = object()


def cut_language(cut: Cut) -> str:
    """The ``supervision.language`` shared by a cut's supervisions (DataError if none or mixed)."""
    languages = {s.language for s in cut.supervisions}
    if not cut.supervisions or None in languages or "" in languages:
        raise DataError(f"cut {cut.id}: no supervision.language")
    if len(languages) > 1:
        raise DataError(f"cut {cut.id}: supervisions of several languages {sorted(languages)}")
    return languages.pop()


def custom_value(cut: Cut, field: str, default: Any = _MISSING) -> Any:
    """``cut.custom[field]``, else the first supervision's ``custom[field]``, else ``default``.

    Without a default, a missing field is a DataError naming the cut and the field.
    """
    if cut.custom and field in cut.custom:
        return cut.custom[field]
    for sup in cut.supervisions[:1]:
        if sup.custom and field in sup.custom:
            return sup.custom[field]
    if default is _MISSING:
        raise DataError(f"cut {cut.id}: no {field!r} in cut.custom or supervision.custom")
    return default


def _votes(cut: Cut, field: str, default: Any = _MISSING) -> int:
    value = custom_value(cut, field, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"cut {cut.id}: {field} {value!r} is not an integer") from None


def _tie_key(cut: Cut, seed: int | None) -> tuple[str, str]:
    ids = (cut.recording_id if cut.has_recording else cut.id, cut.id)
    if seed is None:
        return ids
    return tuple(hashlib.sha1(f"{seed}:{i}".encode()).hexdigest() for i in ids)


def group_by_language(
    cuts: Iterable[Cut], languages: Sequence[str] | None = None
) -> dict[str, list[Cut]]:
    """``{language: cuts in input order}``; with ``languages``, only those (each must occur)."""
    groups: dict[str, list[Cut]] = defaultdict(list)
    seen: set[str] = set()
    for cut in cuts:
        if cut.id in seen:
            raise DataError(f"cut {cut.id} occurs more than once")
        seen.add(cut.id)
        language = cut_language(cut)
        if languages is None or language in languages:
            groups[language].append(cut)
    if languages is not None:
        absent = [lang for lang in languages if lang not in groups]
        if absent:
            raise DataError(f"no cuts of language(s) {', '.join(absent)}")
    return dict(groups)


def language_counts(cuts: Iterable[Cut]) -> dict[str, int]:
    """Number of cuts per language, sorted by language."""
    return dict(sorted(Counter(cut_language(c) for c in cuts).items()))


def _check_count(per_language: int | None) -> None:
    if per_language is not None and (isinstance(per_language, bool) or per_language < 0):
        raise ConfigError(f"per_language must be a count >= 0 or None, got {per_language!r}")


def _warn_short(language: str, available: int, per_language: int | None) -> None:
    if per_language is not None and available < per_language:
        logger.warning(
            "%s: asked for %d cuts, only %d available: keeping all",
            language,
            per_language,
            available,
        )


def _keep_in_order(cuts: CutSet, kept_ids: set[str]) -> CutSet:
    return CutSet.from_cuts(c for c in cuts if c.id in kept_ids)


def select_by_votes(
    cuts: CutSet,
    per_language: int | None,
    field: str = "up_votes",
    seed: int | None = None,
    *,
    tie_field: str | None = "down_votes",
    missing_votes: str = "error",
    languages: Sequence[str] | None = None,
) -> CutSet:
    """At most ``per_language`` cuts of each language, those with the most ``field`` votes.

    Ranking: ``field`` descending, then ``tie_field`` ascending (absent: 0), then recording id
    and cut id (``seed`` given: seeded hashes of them). ``per_language=None`` keeps every cut.
    A language with fewer cuts keeps all of them (a warning gives the counts). A cut without
    ``field`` is a DataError, unless ``missing_votes="zero"``. ``languages`` restricts the output
    to those.
    """
    _check_count(per_language)
    if missing_votes not in MISSING_VOTES:
        raise ConfigError(f"missing_votes must be one of {MISSING_VOTES}, got {missing_votes!r}")
    cuts = cuts.to_eager()
    default = 0 if missing_votes == "zero" else _MISSING
    groups = group_by_language(cuts, languages)
    kept: set[str] = set()
    for language, group in sorted(groups.items()):
        ranked = sorted(
            group,
            key=lambda c: (
                -_votes(c, field, default),
                _votes(c, tie_field, 0) if tie_field else 0,
                _tie_key(c, seed),
            ),
        )
        _warn_short(language, len(group), per_language)
        chosen = ranked if per_language is None else ranked[:per_language]
        if chosen and len(chosen) < len(group):
            logger.info(
                "%s: kept the %d of %d cuts with the most %s (%s >= %d)",
                language,
                len(chosen),
                len(group),
                field,
                field,
                _votes(chosen[-1], field, default),
            )
        kept.update(c.id for c in chosen)
    return _keep_in_order(cuts, kept)


def select_random(
    cuts: CutSet,
    per_language: int | None,
    seed: int = 0,
    *,
    languages: Sequence[str] | None = None,
) -> CutSet:
    """A seeded random draw of at most ``per_language`` cuts of each language.

    The draw depends only on ``seed``, the language and the set of cut ids (not their order).
    """
    _check_count(per_language)
    cuts = cuts.to_eager()
    groups = group_by_language(cuts, languages)
    kept: set[str] = set()
    for language, group in sorted(groups.items()):
        _warn_short(language, len(group), per_language)
        ids = sorted(c.id for c in group)
        if per_language is not None and per_language < len(ids):
            ids = random.Random(f"{seed}:{language}").sample(ids, per_language)
        kept.update(ids)
    return _keep_in_order(cuts, kept)


def check_disjoint(cuts: CutSet, others: Mapping[str, CutSet], what: str = "selection") -> None:
    """Raise DataError if a recording of ``cuts`` also occurs in one of ``others`` (name: cuts)."""
    ours = {c.recording_id if c.has_recording else c.id for c in cuts}
    for name, other in others.items():
        shared = sorted(ours & {c.recording_id if c.has_recording else c.id for c in other})
        if shared:
            more = f" (+{len(shared) - 5} more)" if len(shared) > 5 else ""
            raise DataError(
                f"{what} shares {len(shared)} recording(s) with {name}: "
                f"{', '.join(shared[:5])}{more}"
            )


def parse_count(text: str | int | None) -> int | None:
    """``"10000"``, ``"10k"`` -> 10000; ``"all"``/None -> None (no limit)."""
    if text is None or (isinstance(text, str) and text.lower() in ("all", "none")):
        return None
    if isinstance(text, int):
        value = text
    else:
        body, scale = (text[:-1], 1000) if text.lower().endswith("k") else (text, 1)
        try:
            value = int(body) * scale
        except ValueError:
            raise ConfigError(f"expected a count such as 3, 10k or all, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"expected a count >= 0, got {text!r}")
    return value
