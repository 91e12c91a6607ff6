"""Running a command-line entry point: speechkd's own errors end the program with one clear line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from speechkd.errors import SpeechKDError


def run_cli(main: Callable[[], int | None]) -> None:
    """Call ``main``; a :class:`SpeechKDError` is printed as ``<prog>: error: ...`` with exit 1."""
    try:
        code = main()
    except SpeechKDError as err:
        logging.getLogger(__name__).debug("error", exc_info=True)
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
