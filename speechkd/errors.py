"""Exceptions that name the offending file or field."""

from __future__ import annotations


class SpeechKDError(Exception):
    """Base class of speechkd's own errors."""


class DataError(SpeechKDError, ValueError):
    """Bad input data: the message names the file, manifest entry or field."""


class ConfigError(SpeechKDError, ValueError):
    """A configuration value of the wrong type or out of range: the message names the key."""
