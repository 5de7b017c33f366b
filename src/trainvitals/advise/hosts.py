"""How a change is shown to each host: the flags, config lines or sentences that apply it.

The table of names is `trainvitals.signals.setting_names` (one table, read by the
detectors' suggestions too); it is re-exported here.
"""
from __future__ import annotations

from typing import Any, Mapping

from trainvitals.signals.setting_names import CODE, HOSTS, MODEL, NEUTRAL, applicable, host_names

__all__ = ["HOSTS", "NEUTRAL", "host_names", "render_change", "applicable"]


def render_change(change: Mapping[str, Any], host: str) -> list[str]:
    """The change as `host` takes it: `--learning_rate 0.001` (HF example scripts),
    `lr = 0.001` (our TOML), `gradient_clip_val=0.7` (Lightning), `learning_rate=0.001`
    (nanoGPT's configurator), or a sentence for what only code sets."""
    lines, model = [], []
    for name, value in change.items():
        kind, names = host_names(name, host) or (CODE, (name,))
        if kind == MODEL:
            model += [f"{n}={_v(value)}" for n in names]
        elif kind == CODE:
            lines.append(f"set {names[0]} to {_v(value)}")
        elif host == "hf":
            lines += [f"--{n} {_v(value)}" for n in names]
        elif host == "nanogpt":
            lines += [f"--{n}={_v(value)}" for n in names]
        elif host == "lightning":
            lines += [f"Trainer({n}={_v(value)})" for n in names]
        else:
            lines += [f"{n} = {_v(value)}" for n in names]
    if model:
        lines.append(f'--config_overrides "{",".join(model)}"')
    return lines


def _v(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
