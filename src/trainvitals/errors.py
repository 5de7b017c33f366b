"""Errors a user can act on, and the checks that raise them.

Every message names the field, the bad value and what is allowed, in one line.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Iterable

__all__ = ["ConfigError", "SnapshotError", "RunDirError", "check_range", "check_choice", "check_type",
           "check_field_types"]


class ConfigError(ValueError):
    """A setting has a value that is not allowed. The message names the field."""


class SnapshotError(RuntimeError):
    """A snapshot file is missing, truncated, foreign or unsafe to load."""


class RunDirError(ConfigError):
    """The run directory holds another run, is in use, or cannot be written."""


def check_range(
    field: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_inf: bool = False,
) -> None:
    """Raise ConfigError unless lo <= value <= hi (bounds optional; open with lo_open/hi_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{field}={value!r}: expected a number")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ConfigError(f"{field}={value!r}: expected a finite number")
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
        right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
        raise ConfigError(f"{field}={value!r}: allowed is {left}{field}{right}")


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{field}={value!r}: allowed values are {allowed}")


def check_type(field: str, value: Any, kind: type | tuple[type, ...]) -> None:
    names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{field}={value!r}: expected {names}")
    if not isinstance(value, kind):
        raise ConfigError(f"{field}={value!r}: expected {names}")


_KIND_NAMES = {bool: "bool (true or false)", int: "int", float: "float", str: "str", list: "list"}


def check_field_types(cls: type, values: dict[str, Any]) -> None:
    """Check each value against its dataclass field's annotation, naming the field.

    bool must be bool; int must be int (not bool); float takes int or float; str must be
    str; a list field takes a list or a comma-separated string; `Any` takes anything.
    Unions (`X | None`) take any of their members.
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            kinds = _accepted(hints.get(f.name, Any))
            if kinds is not None and not any(_is(values[f.name], k) for k in kinds):
                names = " or ".join(_KIND_NAMES.get(k, getattr(k, "__name__", str(k))) for k in kinds)
                raise ConfigError(f"{f.name}={values[f.name]!r}: expected {names}")


def _accepted(hint: Any) -> tuple[type, ...] | None:
    """The plain types a value of `hint` may have; None = anything."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):
        out: list[type] = []
        for arg in typing.get_args(hint):
            sub = _accepted(arg)
            if sub is None:
                return None
            out += sub
        return tuple(out)
    if origin in (list, tuple):
        return (list, str)  # "2,3" from a flag or a TOML string; the config parses it
    if hint is type(None):
        return (type(None),)
    return (hint,) if isinstance(hint, type) else None


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind)
