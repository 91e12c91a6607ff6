"""Stable seeds derived from a base seed and names, independent of process and hash seed."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` (e.g. seed, corpus, split, language, index)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def derived_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded with :func:`derive_seed` of ``parts``."""
    return np.random.default_rng(derive_seed(*parts))
