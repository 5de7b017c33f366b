"""Suggestion wording shared by detectors: name the current value and the proposed one.

Each helper returns one line such as "Reduce learning rate: 3.0e-04 → 1.5e-04", or a
generic line when the current value is unknown (``None``), so a suggestion is never
made up from a value nobody passed in.

Learning-rate advice is about the setting the user chose, the peak of the schedule,
not the value a warmup or decay happens to be at: given a `LearningRate` it says
"Reduce learning rate: 2.0e-03 → 1.0e-03 (now 9.2e-04, in warmup)".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "LearningRate",
    "learning_rate",
    "lr_value",
    "fmt_lr",
    "fmt_clip",
    "reduce_lr",
    "increase_lr",
    "tighten_clip",
    "lengthen_warmup",
    "warmup_advice",
]


@dataclass(frozen=True)
class LearningRate:
    """The learning rate as advice names it: `peak`, the one the user set (the top of
    the schedule, after any cut the monitor decided), and `now`, the one in use at the
    step; `in_warmup` when the warmup is still raising `now` towards `peak`;
    `warmup_steps`, the run's warmup (None: unknown)."""
    now: float | None = None
    peak: float | None = None
    in_warmup: bool = False
    warmup_steps: int | None = None


def learning_rate(now: float | None, peak: float | None = None, step: int | None = None,
                  warmup_steps: int | None = None) -> LearningRate:
    """The `LearningRate` of optimizer step `step` (1-based) of a run with `warmup_steps`."""
    warming = step is not None and bool(warmup_steps) and step <= warmup_steps
    shown_now = now if now is not None and math.isfinite(now) and now >= 0 else None
    return LearningRate(shown_now, peak if _known(peak) else None, warming,
                        None if warmup_steps is None else int(warmup_steps))


def lr_value(lr: float | LearningRate | None) -> float | None:
    """The learning rate in use (for an event's `values`)."""
    return lr.now if isinstance(lr, LearningRate) else lr


def _known(x: float | None) -> bool:
    return x is not None and not isinstance(x, bool) and math.isfinite(x) and x > 0


def fmt_lr(lr: float) -> str:
    """A learning rate as it appears in advice: ``3.0e-04``."""
    return f"{lr:.1e}"


def fmt_clip(clip: float) -> str:
    """A clipping norm with up to 3 significant digits and at least one decimal: ``0.7``, ``1.0``."""
    s = f"{clip:.3g}"
    return s if ("." in s or "e" in s or "inf" in s or "nan" in s) else s + ".0"


def reduce_lr(lr: float | LearningRate | None, factor: float = 0.5) -> str:
    """"Reduce learning rate: 3.0e-04 → 1.5e-04" (generic "by 0.5x" when lr is unknown).
    A float is the LR in use; a `LearningRate` names its peak, and the LR in use beside it
    where the two differ."""
    return _change("Reduce", lr, factor)


def increase_lr(lr: float | LearningRate | None, factor: float = 2.0) -> str:
    """"Increase learning rate: 1.0e-04 → 2.0e-04" (generic "by 2x" when lr is unknown)."""
    return _change("Increase", lr, factor)


def _change(verb: str, lr: float | LearningRate | None, factor: float) -> str:
    rate = lr if isinstance(lr, LearningRate) else LearningRate(lr if _known(lr) else None)
    base = rate.peak if rate.peak is not None else (rate.now if _known(rate.now) else None)
    if base is None:
        return f"{verb} learning rate by {factor:.2g}x"
    line = f"{verb} learning rate: {fmt_lr(base)} → {fmt_lr(base * factor)}"
    if rate.now is not None and base != rate.now and fmt_lr(rate.now) != fmt_lr(base):
        line += f" (now {fmt_lr(rate.now)}, {'in warmup' if rate.in_warmup else 'on the schedule'})"
    return line


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


def warmup_advice(lr: float | LearningRate | None) -> str:
    """`lengthen_warmup` of the run's warmup where `lr` knows it, else "Add or lengthen
    learning-rate warmup"."""
    current = lr.warmup_steps if isinstance(lr, LearningRate) else None
    return "Add or lengthen learning-rate warmup" if current is None else lengthen_warmup(current)
