"""Command-line options generated from a dataclass: its fields are the one source of truth.

Each field becomes ``--field-name`` with the field's type and default; ``metadata`` of the field
gives ``help``, ``choices`` and ``metavar``. A field without a default is a required option;
``bool`` fields are flags (``--name`` when the default is False; ``--no-name``, storing False
into ``name``, its help prefixed with "turn off:", when it is True); ``X | None`` takes an
``X``; ``tuple[X, ...]`` of length n takes n values. :func:`dataclass_from_options` builds the
dataclass back from the parsed options.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _value_type(hint: Any) -> tuple[Any, int | None]:
    """The argparse ``type`` of a type hint and its ``nargs`` (None: one value)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported option type {hint!r}")
        return _value_type(args[0])
    if origin is tuple:
        args = typing.get_args(hint)
        if not args or Ellipsis in args or len(set(args)) != 1:
            raise TypeError(f"unsupported option type {hint!r}")
        return args[0], len(args)
    if hint in (int, float, str):
        return hint, None
    raise TypeError(f"unsupported option type {hint!r}")


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def option_fields(cls: type, exclude: typing.Iterable[str] = ()) -> list[dataclasses.Field]:
    """The init fields of dataclass ``cls`` that become options (minus ``exclude``)."""
    skip = set(exclude)
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in skip]


def add_dataclass_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    exclude: typing.Iterable[str] = (),
) -> list[str]:
    """Add one option per field of dataclass ``cls`` to ``parser``; returns the field names."""
    hints = typing.get_type_hints(cls)
    names = []
    for field in option_fields(cls, exclude):
        add_field_option(parser, field, hints[field.name])
        names.append(field.name)
    return names


def add_field_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    field: dataclasses.Field,
    hint: Any,
) -> argparse.Action:
    """The option of one dataclass field (see the module documentation)."""
    flag = "--" + field.name.replace("_", "-")
    default = _field_default(field)
    meta = field.metadata
    kwargs: dict[str, Any] = {"dest": field.name, "help": meta.get("help")}
    if hint is bool:
        if default is True:
            kwargs["help"] = f"turn off: {kwargs['help']}" if kwargs["help"] else None
            return parser.add_argument(
                "--no-" + flag[2:], action="store_false", default=True, **kwargs
            )
        return parser.add_argument(flag, action="store_true", default=False, **kwargs)
    value_type, nargs = _value_type(hint)
    kwargs["type"] = value_type
    if nargs is not None:
        kwargs["nargs"] = nargs
    for key in ("choices", "metavar"):
        if key in meta:
            kwargs[key] = meta[key]
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    return parser.add_argument(flag, **kwargs)


def dataclass_from_options(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """An instance of ``cls`` from the options :func:`add_dataclass_options` added.

    ``values`` replace parsed options; fields absent from ``args`` keep their defaults.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in option_fields(cls):
        if field.name in values or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        if isinstance(value, list) and _value_type(hints[field.name])[1] is not None:
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**{**kwargs, **values})
