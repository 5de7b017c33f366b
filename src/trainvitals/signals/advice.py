"""Suggestion wording shared by detectors: name the current value and the proposed one.

Each helper returns one line such as "Reduce learning rate: 3.0e-04 → 1.5e-04", or a
generic line when the current value is unknown (``None``), so a suggestion is never
made up from a value nobody passed in.
"""
from __future__ import annotations

import math

__all__ = [
    "fmt_lr",
    "fmt_clip",
    "reduce_lr",
    "increase_lr",
    "tighten_clip",
    "lengthen_warmup",
]


def _known(x: float | None) -> bool:
    return x is not None and not isinstance(x, bool) and math.isfinite(x) and x > 0


def fmt_lr(lr: float) -> str:
    """A learning rate as it appears in advice: ``3.0e-04``."""
    return f"{lr:.1e}"


def fmt_clip(clip: float) -> str:
    """A clipping norm with up to 3 significant digits and at least one decimal: ``0.7``, ``1.0``."""
    s = f"{clip:.3g}"
    return s if ("." in s or "e" in s or "inf" in s or "nan" in s) else s + ".0"


def reduce_lr(lr: float | None, factor: float = 0.5) -> str:
    """"Reduce learning rate: 3.0e-04 → 1.5e-04" (generic "by 0.5x" when lr is unknown)."""
    if not _known(lr):
        return f"Reduce learning rate by {factor:g}x"
    return f"Reduce learning rate: {fmt_lr(lr)} → {fmt_lr(lr * factor)}"


def increase_lr(lr: float | None, factor: float = 2.0) -> str:
    """"Increase learning rate: 1.0e-04 → 2.0e-04" (generic "by 2x" when lr is unknown)."""
    if not _known(lr):
        return f"Increase learning rate by {factor:g}x"
    return f"Increase learning rate: {fmt_lr(lr)} → {fmt_lr(lr * factor)}"


def tighten_clip(clip: float | None, factor: float = 0.7, default: float = 1.0) -> str:
    """"Tighten gradient clipping: 1.0 → 0.7"; when clipping is off (None, 0 or inf),
    "Enable gradient clipping: none → 1.0".

    The seed says "Increase gradient_clip: 1.0 → 0.7", which lowers it (DESIGN.md, 6).
    """
    if not _known(clip):
        return f"Enable gradient clipping: none → {fmt_clip(default)}"
    return f"Tighten gradient clipping: {fmt_clip(clip)} → {fmt_clip(clip * factor)}"


def lengthen_warmup(current: int | None, proposed: int | None = None, factor: float = 2.5) -> str:
    """"Lengthen warmup: 2000 → 5000 steps" (proposed defaults to factor × current).

    Generic wording when the current warmup is unknown; "Add warmup" when it is 0.
    """
    if current is None:
        return "Lengthen the learning-rate warmup if it is still running"
    if proposed is None:
        if current <= 0:
            return "Add a learning-rate warmup"
        proposed = int(round(current * factor))
    if current <= 0:
        return f"Add warmup: none → {proposed} steps"
    return f"Lengthen warmup: {current} → {proposed} steps"
