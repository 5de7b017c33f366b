"""The next run's config: the run's own settings with the recommended change applied,
as a TOML file `trainvitals train-lm --config FILE --logdir NEW` reads.

Our `train-*` commands write every config field but `logdir` into the run's settings
record (`training.run.config_facts`); the file holds them all, so the next run trains
the same data, sizes and epochs, seed included, with one setting changed.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from trainvitals.errors import ConfigError

__all__ = ["task_configs", "settable", "next_config", "write_toml"]


def task_configs(task: str) -> tuple[type, ...]:
    if task == "lm":
        from trainvitals.tasks.lm.run import CONFIGS
    elif task == "translation":
        from trainvitals.tasks.translation.run import CONFIGS
    else:
        raise ConfigError(f"task={task!r}: --out writes a config for a train-lm or train-translation run")
    return CONFIGS


def settable(task: str) -> set[str]:
    """The config fields of `task`'s run (each neutral name is our field of that name)."""
    return {f.name for cls in task_configs(task) for f in dataclasses.fields(cls)}


def next_config(settings: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The run's config fields from `settings`, `change` applied, checked by the configs
    themselves (a ConfigError names a bad value)."""
    from trainvitals.cli_config import build_configs
    task = settings.get("task")
    fields = settable(task) - {"logdir"}
    values = {k: v for k, v in settings.items() if k in fields}
    missing = sorted({"lr", "epochs", "batch_size"} - set(values))
    if missing:
        raise ConfigError(f"settings of this run lack {', '.join(missing)} (written by an older trainvitals?); "
                          f"--out needs the run's whole config")
    values.update(change)
    build_configs(values, *task_configs(task), source="next config")
    return dict(sorted(values.items()))


def write_toml(path: str | Path, values: dict[str, Any], header: str) -> None:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
    try:
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"out={str(path)!r}: cannot write ({e.strerror or e})") from None


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))  # a TOML basic string is a JSON string
