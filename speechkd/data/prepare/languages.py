"""Corpus language codes (``ca_es``, ``zh-CN``, ``cmn_hans_cn``) to ISO 639-1 (``ca``, ``zh``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from speechkd.errors import ConfigError, DataError

# ISO 639-2/3 codes used by corpora (FLEURS, CommonVoice) that have an ISO 639-1 equivalent,
# or that Whisper names with a 639-1 code (Filipino is decoded as Tagalog, "tl").
THREE_TO_TWO = {
    "cmn": "zh",
    "fil": "tl",
    "nob": "nb",
    "nno": "nn",
    "ful": "ff",
    "orm": "om",
    "swh": "sw",
    "zlm": "ms",
}

_CODE = re.compile(r"^[A-Za-z]{2,3}$")


def to_iso639_1(code: str) -> str:
    """The ISO 639-1 code of a corpus language code.

    The language is the first ``-``/``_``-separated field (``ca_es`` -> ``ca``, ``zh-CN`` ->
    ``zh``, ``cmn_hans_cn`` -> ``zh``). Languages without a 639-1 code keep their ISO 639-3
    code (``ast``, ``kab``, ``yue``: Whisper also uses ``yue``).
    """
    head = re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()
    if not _CODE.match(head):
        raise DataError(f"language code {code!r}: not of the form xx, xxx, xx-YY or xx_yy")
    return THREE_TO_TWO.get(head, head)


def parse_language_list(values: str | Sequence[str]) -> list[str] | str:
    """``"ca th"``, ``"ca,th"``, ``["ca", "th"]`` -> ``["ca", "th"]``; "auto"/"all" are kept."""
    if isinstance(values, str):
        values = [values]
    codes = [code for value in values for code in re.split(r"[\s,]+", value) if code]
    if len(codes) == 1 and codes[0] in ("auto", "all"):
        return codes[0]
    if not codes or "auto" in codes or "all" in codes:
        raise ConfigError(f"language list {list(values)!r}: give codes, or just 'auto'")
    return codes
