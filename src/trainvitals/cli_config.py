"""Dataclass configs as command-line flags and TOML files.

Every field of each config becomes `--field-name` (kebab-case) with its default and the
comment beside the field as help. Values come from, lowest first: the defaults,
`--config FILE.toml` (flat `field = value` keys), then flags given on the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import sys
from pathlib import Path
from typing import Any

from trainvitals.config import config_from_dict
from trainvitals.errors import ConfigError, check_field_types

__all__ = ["add_config_flags", "build_configs", "load_toml"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _comments(cls: type) -> dict[str, str]:
    """The comment beside each field, in `cls` and the classes it inherits fields from."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        out.update({m.group(1): m.group(2).strip()
                    for m in re.finditer(r"^\s+(\w+):[^#\n]*#\s*(.+)$", src, re.M)})
    return out


def _parse(field: str, kind: str):
    def parse(text: str) -> Any:
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind == "threshold":  # a float or "auto"
                return text if text == "auto" else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{field}={text!r}: expected {kind}") from None
        return text
    return parse


def _kind(f: dataclasses.Field) -> str:
    t = str(f.type).replace(" | None", "")  # an optional field's flag parses its type
    if f.name == "mean_gain_absolute_threshold":
        return "threshold"
    for k in ("bool", "int", "float"):
        if t == k:
            return k
    return "str"


def add_config_flags(parser: argparse.ArgumentParser, *classes: type, overrides: dict | None = None) -> None:
    """One flag per field; defaults are SUPPRESSed so we can tell what the user gave.

    `overrides` are a command's own defaults (e.g. train-lm's epochs), shown in --help."""
    overrides = overrides or {}
    for cls in classes:
        group = parser.add_argument_group(cls.__name__)
        notes = _comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            default = overrides.get(f.name, default)
            flag = "--" + f.name.replace("_", "-")
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            help_ = f"{notes.get(f.name, '')} (default: {shown!s})".strip()
            help_ = help_.replace("%", "%%")  # argparse %-formats help strings
            kind = _kind(f)
            if kind == "bool":
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_)
            else:
                group.add_argument(flag, dest=f.name, type=_parse(f.name, kind), default=argparse.SUPPRESS,
                                   metavar=f.name.upper(), help=help_)


def load_toml(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config={path!r}: no such file; give a TOML file of `field = value` lines")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config={path!r}: not valid TOML ({e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config={path!r}: not UTF-8 text ({e.reason} at byte {e.start}); "
                          f"save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config={path!r}: cannot read ({e.strerror or e})") from None
    flat: dict[str, Any] = {}
    for k, v in data.items():  # allow [trainer] / [model] / [data] sections too
        if isinstance(v, dict):
            flat.update(v)
        else:
            flat[k.replace("-", "_")] = v
    return flat


def build_configs(given: dict[str, Any], *classes: type, source: str = "flags") -> list[Any]:
    """Split `given` field values among `classes`; unknown names are refused, listing valid ones."""
    names = {f.name: cls for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in given if k not in names)
    if unknown:
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}; valid fields are: {', '.join(sorted(names))}")
    out = []
    for cls in classes:
        mine = {k: v for k, v in given.items() if names[k] is cls}
        for k, v in mine.items():
            if isinstance(v, float) and math.isnan(v):
                raise ConfigError(f"{k}=nan: expected a number")
        check_field_types(cls, mine)  # before the config's own checks, which assume the types
        out.append(config_from_dict(cls, mine, source))
    return out
