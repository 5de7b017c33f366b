"""Errors a user can act on, and the checks that raise them.

Every message names the field, the bad value and what is allowed, in one line.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

__all__ = ["ConfigError", "SnapshotError", "check_range", "check_choice", "check_type"]


class ConfigError(ValueError):
    """A setting has a value that is not allowed. The message names the field."""


class SnapshotError(RuntimeError):
    """A snapshot file is missing, truncated, foreign or unsafe to load."""


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
