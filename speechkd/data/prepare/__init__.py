"""Corpus preparers: one module per corpus, found by module name.

A preparer module ``speechkd/data/prepare/<name>.py`` defines

- ``CORPUS = "<name>"`` (the name used on the command line and in manifest file names),
- ``prepare(corpus_dir, output_dir, **options)`` writing
  ``<output_dir>/<corpus>_{recordings,supervisions,cuts}_<split>.jsonl.gz``,
- optionally ``add_arguments(parser)`` adding its ``--options`` (their ``dest`` names are the
  keyword arguments of ``prepare``).

Adding a module is all it takes to make ``python -m speechkd.bin.prepare_corpus <name>`` work.
Modules without ``CORPUS`` (shared helpers) are ignored.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from speechkd.errors import ConfigError


def _module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_preparer(corpus: str) -> ModuleType:
    """The preparer module of ``corpus`` (a module with ``CORPUS == corpus`` and ``prepare``)."""
    if corpus in _module_names():
        module = importlib.import_module(f"{__name__}.{corpus}")
        if getattr(module, "CORPUS", None) == corpus and callable(getattr(module, "prepare", None)):
            return module
    raise ConfigError(f"corpus {corpus!r}: no preparer; known corpora: {', '.join(available())}")


def available() -> list[str]:
    """Names of all corpora with a preparer (imports every module of this package)."""
    return sorted(preparers())


def preparers() -> dict[str, ModuleType]:
    """``{corpus: module}`` for every preparer module of this package."""
    found = {}
    for name in _module_names():
        module = importlib.import_module(f"{__name__}.{name}")
        if getattr(module, "CORPUS", None) == name and callable(getattr(module, "prepare", None)):
            found[name] = module
    return found
