"""Reading what is scored: Kaldi-style text files and lhotse manifests with references."""

from __future__ import annotations

import os
from pathlib import Path

from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError

MANIFEST_SUFFIXES = (".jsonl.gz", ".jsonl", ".json", ".json.gz")


def is_manifest(path: str | os.PathLike) -> bool:
    """True for lhotse manifest file names (``.jsonl.gz`` …)."""
    return str(path).endswith(MANIFEST_SUFFIXES)


def read_kaldi_text(path: str | os.PathLike) -> dict[str, str]:
    """``utt-id text…`` lines → {utt-id: text} in file order; an id alone means empty text.

    Blank lines are ignored; a repeated id is an error naming the file and line.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        utt_id = parts[0]
        if utt_id in out:
            raise DataError(f"{path}:{number}: utterance id {utt_id!r} appears twice")
        out[utt_id] = parts[1] if len(parts) > 1 else ""
    return out


def _supervision_text(sup, text_field: str, where: str) -> str:
    if text_field == "text":
        value = sup.text
    else:
        value = (sup.custom or {}).get(text_field)
    if value is None:
        raise DataError(f"{where}: supervision {sup.id!r} has no {text_field!r}")
    return value


def _supervision_language(sup, language_field: str) -> str | None:
    if language_field == "language":
        return sup.language
    return (sup.custom or {}).get(language_field, sup.language)


def read_reference_manifest(
    path: str | os.PathLike, text_field: str = "text", language_field: str = "language"
) -> tuple[dict[str, str], dict[str, str | None]]:
    """References and languages from a lhotse CutSet or SupervisionSet.

    A CutSet is keyed by cut id (texts of its supervisions joined by a space), a SupervisionSet by
    supervision id. ``text_field`` is "text" or a key of ``supervision.custom`` ("translation");
    ``language_field`` is "language" or a key of ``supervision.custom`` ("tgt_lang", falling back
    to ``supervision.language`` where absent).
    """
    from lhotse import CutSet, SupervisionSet

    from speechkd.data.manifest_io import read_manifest

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    manifest = read_manifest(path)
    texts: dict[str, str] = {}
    languages: dict[str, str | None] = {}
    if isinstance(manifest, SupervisionSet):
        items = [(sup.id, [sup]) for sup in manifest]
    elif isinstance(manifest, CutSet):
        items = [(cut.id, list(cut.supervisions)) for cut in manifest]
    else:
        raise DataError(
            f"{path}: expected a CutSet or SupervisionSet, got {type(manifest).__name__}"
        )
    for key, sups in items:
        if key in texts:
            raise DataError(f"{path}: id {key!r} appears twice")
        if not sups:
            raise DataError(f"{path}: cut {key!r} has no supervision (no reference text)")
        texts[key] = " ".join(_supervision_text(s, text_field, str(path)) for s in sups)
        langs = {_supervision_language(s, language_field) for s in sups}
        if len(langs) > 1:
            raise DataError(f"{path}: cut {key!r} mixes languages {sorted(map(str, langs))}")
        languages[key] = langs.pop()
    return texts, languages


def read_languages(path: str | os.PathLike) -> dict[str, str | None]:
    """{id: language} from a lhotse CutSet/SupervisionSet, by cut id and by supervision id."""
    from lhotse import CutSet

    from speechkd.data.manifest_io import read_manifest

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    manifest = read_manifest(path)
    out: dict[str, str | None] = {}
    if isinstance(manifest, CutSet):
        for cut in manifest:
            langs = {s.language for s in cut.supervisions}
            if len(langs) > 1:
                raise DataError(f"{path}: cut {cut.id!r} mixes languages {sorted(map(str, langs))}")
            lang = langs.pop() if langs else None
            out[cut.id] = lang
            for s in cut.supervisions:
                out.setdefault(s.id, s.language)
    else:
        for s in manifest:
            out[s.id] = getattr(s, "language", None)
    return out
