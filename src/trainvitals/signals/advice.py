"""Suggestion wording shared by detectors: name the current value and the proposed one.

Each helper returns one line such as "Reduce learning rate: 3.0e-04 → 1.5e-04", or a
generic line when the current value is unknown (``None``), so a suggestion is never
made up from a value nobody passed in.

Each returns a `Suggestion`: the sentence (a `str`, so it prints and compares as one)
and `.change`, the setting it proposes in host-neutral names (`{"lr": 1.0e-03}`),
rounded as the sentence shows it, so the two cannot disagree; empty where the
current value is unknown and the line is generic. `trainvitals.signals.setting_names` maps the
names to each host's own.

Learning-rate advice is about the setting the user chose, the peak of the schedule,
not the value a warmup or decay happens to be at: given a `LearningRate` it says
"Reduce learning rate: 2.0e-03 → 1.0e-03 (now 9.2e-04, in warmup)".
"""
from __future__ import annotations

import math
from typing import NamedTuple

from trainvitals.events import Suggestion

# A warmup proposed where there is none: our trainer's default, a few % of a short run;
# a run that needs a longer one gets "Lengthen warmup" next.
_NEW_WARMUP = 100

__all__ = [
    "Suggestion",
    "LearningRate",
    "learning_rate",
    "lr_value",
    "fmt_lr",
    "fmt_clip",
    "reduce_lr",
    "increase_lr",
    "tighten_clip",
    "lengthen_warmup",
    "shorten_warmup",
    "warmup_advice",
    "set_dropout",
    "set_weight_decay",
    "set_label_smoothing",
    "lower_init",
]


class LearningRate(NamedTuple):
    """The learning rate as advice names it: `peak`, the one the user set (the top of
    the schedule, after any cut the monitor decided), and `now`, the one in use at the
    step; `in_warmup` when the warmup is still raising `now` towards `peak`;
    `warmup_steps`, the run's warmup (None: unknown). Immutable; a tuple because one is
    built at every step a detector sees (millions in a replay), at a third of a frozen
    dataclass's cost."""
    now: float | None = None
    peak: float | None = None
    in_warmup: bool = False
    warmup_steps: int | None = None


def learning_rate(now: float | None, peak: float | None = None, step: int | None = None,
                  warmup_steps: int | None = None) -> LearningRate:
    """The `LearningRate` of optimizer step `step` (1-based) of a run with `warmup_steps`."""
    # built at every step a detector sees: the tuple made directly, the checks inlined (`_known`)
    warming = step is not None and bool(warmup_steps) and step <= warmup_steps
    shown_now = now if now is not None and 0 <= now < math.inf else None  # NaN compares False
    if peak is not None and (isinstance(peak, bool) or not 0 < peak < math.inf):
        peak = None
    return _new_tuple(LearningRate, (shown_now, peak, warming, None if warmup_steps is None else int(warmup_steps)))


_new_tuple = tuple.__new__


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


def reduce_lr(lr: float | LearningRate | None, factor: float = 0.5) -> Suggestion:
    """"Reduce learning rate: 3.0e-04 → 1.5e-04" (generic "by 0.5x" when lr is unknown).
    A float is the LR in use; a `LearningRate` names its peak, and the LR in use beside it
    where the two differ."""
    return _change("Reduce", lr, factor)


def increase_lr(lr: float | LearningRate | None, factor: float = 2.0) -> Suggestion:
    """"Increase learning rate: 1.0e-04 → 2.0e-04" (generic "by 2x" when lr is unknown)."""
    return _change("Increase", lr, factor)


def _change(verb: str, lr: float | LearningRate | None, factor: float) -> Suggestion:
    rate = lr if isinstance(lr, LearningRate) else LearningRate(lr if _known(lr) else None)
    base = rate.peak if rate.peak is not None else (rate.now if _known(rate.now) else None)
    if base is None:
        return Suggestion(f"{verb} learning rate by {factor:.2g}x")
    target = fmt_lr(base * factor)
    line = f"{verb} learning rate: {fmt_lr(base)} → {target}"
    if rate.now is not None and base != rate.now and fmt_lr(rate.now) != fmt_lr(base):
        line += f" (now {fmt_lr(rate.now)}, {'in warmup' if rate.in_warmup else 'on the schedule'})"
    return Suggestion(line, {"lr": float(target)})


def tighten_clip(clip: float | None, factor: float = 0.7, default: float = 1.0) -> Suggestion:
    """"Tighten gradient clipping: 1.0 → 0.7"; when clipping is off (None, 0 or inf),
    "Enable gradient clipping: none → 1.0".

    The seed says "Increase gradient_clip: 1.0 → 0.7", which lowers it (DESIGN.md, 6).
    """
    if not _known(clip):
        return Suggestion(f"Enable gradient clipping: none → {fmt_clip(default)}",
                          {"gradient_clip": float(fmt_clip(default))})
    target = fmt_clip(clip * factor)
    return Suggestion(f"Tighten gradient clipping: {fmt_clip(clip)} → {target}", {"gradient_clip": float(target)})


def lengthen_warmup(current: int | None, proposed: int | None = None, factor: float = 2.5) -> Suggestion:
    """"Lengthen warmup: 2000 → 5000 steps" (proposed defaults to factor × current).

    Generic wording when the current warmup is unknown; "Add warmup" when it is 0.
    """
    if current is None:
        return Suggestion("Lengthen the learning-rate warmup if it is still running")
    if proposed is None:
        proposed = _NEW_WARMUP if current <= 0 else int(round(current * factor))
    if current <= 0:
        return Suggestion(f"Add warmup: none → {proposed} steps", {"warmup_steps": int(proposed)})
    return Suggestion(f"Lengthen warmup: {current} → {proposed} steps", {"warmup_steps": int(proposed)})


def shorten_warmup(current: int, factor: float = 0.5) -> Suggestion:
    """"Shorten warmup: 100 → 50 steps" (a warmup that keeps the LR near zero too long)."""
    proposed = int(current * factor)
    return Suggestion(f"Shorten warmup: {current} → {proposed} steps", {"warmup_steps": proposed})


def warmup_advice(lr: float | LearningRate | None) -> Suggestion:
    """`lengthen_warmup` of the run's warmup where `lr` knows it, else "Add or lengthen
    learning-rate warmup"."""
    current = lr.warmup_steps if isinstance(lr, LearningRate) else None
    return Suggestion("Add or lengthen learning-rate warmup") if current is None else lengthen_warmup(current)


def _setting(name: str, label: str, current: float | None, proposed: float, where: str = "") -> Suggestion:
    """"Add dropout: 0.0 → 0.1", "Increase weight decay: 0.01 → 0.1"; "Add dropout: 0.1"
    when the current value is unknown."""
    proposed = float(round(proposed, 6))
    if current is None:
        return Suggestion(f"Add {label}: {proposed:g}{where}", {name: proposed})
    verb = "Add" if current == 0 else ("Increase" if proposed > current else "Reduce")
    return Suggestion(f"{verb} {label}: {float(current):g} → {proposed:g}{where}", {name: proposed})


def set_dropout(current: float | None, proposed: float = 0.1) -> Suggestion:
    """"Add dropout: 0.0 → 0.1 in attention and FFN layers"."""
    return _setting("dropout", "dropout", current, proposed, " in attention and FFN layers")


def set_weight_decay(current: float | None, proposed: float = 0.1) -> Suggestion:
    """"Increase weight decay: 0.01 → 0.1"."""
    return _setting("weight_decay", "weight decay", current, proposed)


def set_label_smoothing(current: float | None, proposed: float = 0.1) -> Suggestion:
    """"Add label smoothing: 0.0 → 0.1"."""
    return _setting("label_smoothing", "label smoothing", current, proposed)


def lower_init(current: float | None = None, proposed: float = 0.02) -> Suggestion:
    """"Lower the initialisation scale: init_std 1.0 → 0.02" (GPT-2's 0.02)."""
    was = "" if current is None else f"{float(current):g} → "
    return Suggestion(f"Lower the initialisation scale: init_std {was}{proposed:g} (or scaled residual "
                      f"projections)", {"init_std": float(proposed)})
