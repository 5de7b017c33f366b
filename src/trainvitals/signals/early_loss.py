"""Failures in the first steps, before the spike and divergence checks have history.

Two rules that need one or two points:

- ``loss_above_init``: the loss is more than ``rise`` (relative) above the loss at
  initialisation: the loss of a uniform prediction when it is known (ln of the
  vocabulary size for an LM, which a sanely initialised model starts at), else the
  first finite loss. Updates that leave a model worse than untrained have failed,
  whatever the step; a first loss already that far above the uniform loss means the
  initial weights are too large. The uniform loss is the steadier reference (a
  pretrained model's first batch is a noisy one) and the only one a log of N-step
  means offers, whose first point already averages the first N steps.
- ``early_loss_jump``: within the first ``horizon`` finite losses, the loss is more
  than ``jump`` times the lowest loss so far (a spike or a climb while the spike check,
  which needs a median of many steps, still waits). One point over the line by less than
  ``jump`` squared waits for the next: if that one is over the line too, the alert is
  raised then. One odd batch is not a failing run: the Lightning demo at batch 1 and 2x
  its LR (a held-out healthy run, docs/detection.md) had one loss 1.58x the single lowest
  batch loss before it, its smoothed loss not moving; the failing runs we have seen leap
  2.25x and more at once, or stay over the line.

Both are one-sided, raise one alert when they start, and clear once the loss has been
back under half the margin (hysteresis) for ``_CALM`` consecutive points: a loss that
leaps over the line every other step (the Lightning demo at lr 20) is one episode, one
alert, with its repeats counted. They count points, not step numbers.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainvitals.errors import check_range, check_type
from trainvitals.events import ALERT, Event
from trainvitals.signals.advice import LearningRate, lower_init, lr_value, reduce_lr, tighten_clip, warmup_advice
from trainvitals.signals.lifecycle import Condition
from trainvitals.signals.quiet import lowest

__all__ = ["EarlyLossDetector"]

_SOURCE = "early_loss"
_CALM = 10  # points back under the line that clear a condition (the spike check's calm, divergence.py)


class EarlyLossDetector:
    """Raise ``loss_above_init`` and ``early_loss_jump`` (alerts) from the step loss.

    ``rise``: margin over the loss at initialisation (0.5: 1.5x it). ``jump``: factor
    over the running minimum (> 1). ``horizon``: how many finite losses the jump rule
    watches. ``uniform_loss``: the loss of a uniform prediction (ln vocab), None when
    unknown. Losses are assumed positive.
    """

    def __init__(self, rise: float, jump: float, horizon: int, uniform_loss: float | None = None) -> None:
        check_range("early_loss_rise", rise, 0, lo_open=True)
        check_range("early_loss_jump", jump, 1, lo_open=True)
        check_type("early_loss_horizon", horizon, int)
        check_range("early_loss_horizon", horizon, 2)
        if uniform_loss is not None:
            check_range("uniform_loss", uniform_loss, 0, lo_open=True)
        self.rise, self.jump, self.horizon = float(rise), float(jump), horizon
        self.uniform_loss = None if uniform_loss is None else float(uniform_loss)
        self._first: float | None = None
        self._first_step: int | None = None
        self._seen = 0
        self._min: float | None = None
        self._min_step: int | None = None
        self._pending = False  # one point over the jump line, by less than jump**2: the next decides
        self._above = Condition("loss_above_init", _SOURCE, clear_after=_CALM)
        self._jump = Condition("early_loss_jump", _SOURCE, clear_after=_CALM)

    @property
    def reference(self) -> float | None:
        """The loss at initialisation this detector compares against (None before any)."""
        return self.uniform_loss if self.uniform_loss is not None else self._first

    def update(self, loss: float, step: int, *, lr: float | LearningRate | None = None,
               gradient_clip: float | None = None) -> list[Event]:
        """Feed one step's loss; return the events it causes. Non-finite losses are
        skipped (`NonFiniteLossCheck` reports them)."""
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
            return []
        x = float(loss)
        if self._first is None:
            self._first, self._first_step = x, step
        events = self._check_above(x, step, lr, gradient_clip)
        if self._min is not None and (self._seen < self.horizon or self._jump.active or self._pending):
            events += self._check_jump(x, step, lr, gradient_clip)
        self._seen += 1
        if self._min is None or x < self._min:
            self._min, self._min_step = x, step
        return events

    def quiet_plan(self, losses: np.ndarray, steps: np.ndarray):
        """`update` over finite `losses` raises nothing (signals/quiet.py): past the horizon,
        nothing raised or pending, every loss within `rise` of the reference."""
        if self._above.active or self._jump.active or self._pending or self._first is None \
                or self._seen < self.horizon:
            return None
        ref = self.reference
        if ref > 0 and np.any(losses / ref > 1 + self.rise):
            return None

        def commit() -> None:
            self._seen += len(losses)
            self._min, self._min_step = lowest(self._min, self._min_step, losses, steps)
        return commit

    def _check_above(self, x: float, step: int, lr, clip) -> list[Event]:
        ref = self.reference
        ratio = x / ref if ref > 0 else 1.0
        firing = ratio > 1 + self.rise or (self._above.active and ratio >= 1 + self.rise / 2)
        if not (firing or self._above.active):
            return []  # the common case: nothing starts or clears
        if self._above.settled(firing):
            return self._above.observe(firing)
        # the very first loss already far above a uniform prediction: the initial weights (a first
        # point logged later, a log of N-step means, already averages N updates)
        if self.uniform_loss is not None and step == self._first_step and step <= 1:
            msg = (f"Loss at initialisation {x:.4g} (step {step}) is {ratio:.1f}x the loss of a "
                   f"uniform prediction {self.uniform_loss:.4g}: the initial weights are too large")
            sugg = (lower_init(), "Check that the output layer starts near zero")
        else:
            what = ("the loss of a uniform prediction" if self.uniform_loss is not None
                    else f"the loss at initialisation (step {self._first_step})")
            msg = (f"Loss above its initial level at step {step}: {x:.4g} is {ratio:.2f}x {what} "
                   f"{ref:.4g}: the updates made the model worse than untrained")
            sugg = (reduce_lr(lr, 0.3), warmup_advice(lr), tighten_clip(clip))
        return self._above.observe(
            firing, severity=ALERT, step=step, message=msg, suggestions=sugg,
            values={"loss": x, "reference_loss": ref, "ratio": ratio, "first_loss": self._first,
                    "uniform_loss": self.uniform_loss, "lr": lr_value(lr)},
            clear_message=f"loss_above_init cleared: loss {x:.4g} has been under {ref:.4g} x "
                          f"{1 + self.rise / 2:.2f} for {_CALM} steps")

    def _check_jump(self, x: float, step: int, lr, clip) -> list[Event]:
        base = self._min
        ratio = x / base if base > 0 else 1.0
        live = self._seen < self.horizon or self._pending
        firing = (live and ratio > self.jump) or (self._jump.active and ratio >= 1 + (self.jump - 1) / 2)
        if firing and not (self._jump.active or self._pending) and ratio <= self.jump ** 2:
            self._pending = True  # a fresh, moderate jump: raised only if the next point holds it
            return []
        self._pending = False
        if self._jump.settled(firing):
            return self._jump.observe(firing)
        return self._jump.observe(
            firing, severity=ALERT, step=step,
            message=(f"Early loss jump at step {step}: {x:.4g} is {ratio:.2f}x the lowest loss so "
                     f"far {base:.4g} (step {self._min_step}), {self._seen} steps into the run"),
            suggestions=(reduce_lr(lr), warmup_advice(lr), tighten_clip(clip),
                         f"Look at the batch of step {step} if the learning rate is known to be safe"),
            values={"loss": x, "running_min": base, "min_step": self._min_step, "ratio": ratio,
                    "points_seen": self._seen, "lr": lr_value(lr)},
            clear_message=f"early_loss_jump cleared: loss {x:.4g} has been near the lowest {base:.4g} "
                          f"for {_CALM} steps")

    def state_dict(self) -> dict[str, Any]:
        return {"first": self._first, "first_step": self._first_step, "seen": self._seen,
                "min": self._min, "min_step": self._min_step, "pending": self._pending,
                "above": self._above.state_dict(), "jump": self._jump.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._first, self._first_step = state["first"], state["first_step"]
        self._seen = int(state["seen"])
        self._min, self._min_step = state["min"], state["min_step"]
        self._pending = bool(state.get("pending", False))  # absent from older snapshots
        self._above.load_state_dict(state["above"])
        self._jump.load_state_dict(state["jump"])
