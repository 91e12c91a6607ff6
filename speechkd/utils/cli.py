"""Running a command-line entry point: speechkd's own errors end the program with one clear line."""

from __future__ import annotations

import argparse
import copy
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and ``(default: X)`` after the help of every option that
    takes a value and has a default (flags and unset defaults show none)."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        unset = action.default is None or action.default is argparse.SUPPRESS
        empty = action.default in ("", [])
        return bool(action.option_strings) and action.nargs != 0 and not (unset or empty)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not self._shows_default(action):
            return text
        return f"{text} (default: %(default)s)"

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._shows_default(action):
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)
