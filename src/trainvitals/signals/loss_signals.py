"""Every detector that reads the step loss, composed once for the trainer and `analyze`.

`LossSignals.update(loss, step)` folds the loss into the EMA and runs the non-finite,
early-failure (loss above its initial value, a jump over its minimum in the first
steps), spike/divergence and (when the unigram entropy is known) collapse checks.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from trainvitals.events import Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import LearningRate
from trainvitals.signals.divergence import LossDivergenceDetector
from trainvitals.signals.unigram import UnigramCollapseDetector
from trainvitals.signals.early_loss import EarlyLossDetector
from trainvitals.signals.ema import LossEMA
from trainvitals.signals.nonfinite import NonFiniteLossCheck

__all__ = ["LossSignals"]


class LossSignals:
    """`config`'s thresholds (defaults: `DetectorConfig()`); `baseline_loss`, the unigram
    entropy of the data when known, turns on the collapse check; `uniform_loss` (ln of the
    vocabulary size), when known, is the loss at initialisation the early check compares with."""

    def __init__(self, config: DetectorConfig | None = None, baseline_loss: float | None = None,
                 enable_ema: bool = True, uniform_loss: float | None = None) -> None:
        c = config if config is not None else DetectorConfig()
        self.ema = LossEMA(c.ema_alpha, c.ema_init) if enable_ema else None
        self.nonfinite = NonFiniteLossCheck()
        self.divergence = LossDivergenceDetector(c.spike_factor, climb=c.divergence_climb,
                                                 patience=c.divergence_patience, min_rise=c.spike_min_rise,
                                                 creep=c.loss_creep_rise, creep_patience=c.loss_creep_patience,
                                                 ema_alpha=c.ema_alpha)
        self.collapse = (UnigramCollapseDetector(baseline_loss, stall_steps=c.unigram_stall_steps,
                                                 plateau_fall=c.unigram_plateau_fall)
                         if baseline_loss else None)
        self.early = EarlyLossDetector(c.early_loss_rise, c.early_loss_jump, c.early_loss_horizon, uniform_loss)
        # the divergence and collapse checks need a smoothed loss even with the EMA tag off
        self._smooth = self.ema or LossEMA(c.ema_alpha, c.ema_init)

    def update(self, loss: float, step: int, epoch: int | None = None, lr: float | LearningRate | None = None,
               gradient_clip: float | None = None) -> tuple[float | None, list[Event]]:
        """Returns (the EMA to log, or None when off or not yet defined; the events).
        `lr` (the LR in use, or a `LearningRate` naming the peak too) and `gradient_clip`
        only shape the advice."""
        # a replay calls this millions of times: a finite loss outside a non-finite run has
        # nothing for the non-finite check to do, and a detector's list is added only when it holds events
        finite = -math.inf < loss < math.inf
        events = (self.nonfinite.update(loss, step, epoch, lr=lr, gradient_clip=gradient_clip)
                  if not finite or self.nonfinite.active else [])
        if not finite:
            return None, events
        found = self.early.update(loss, step, lr=lr, gradient_clip=gradient_clip)
        if found:
            events += found
        smooth = self._smooth.update(loss)
        found = self.divergence.update(loss, step, ema=smooth, lr=lr, gradient_clip=gradient_clip)
        if found:
            events += found
        if self.collapse is not None and smooth is not None:
            found = self.collapse.update(smooth, step, lr=lr, gradient_clip=gradient_clip)
            if found:
                events += found
        return (smooth if self.ema is not None else None), events

    def skip(self, steps: np.ndarray, losses: np.ndarray,
             lr_at: Callable[[int], float | LearningRate | None]) -> np.ndarray | None:
        """`update` over a block of losses when every detector proves it raises nothing there
        (signals/quiet.py): the state moved as those calls would have, and the smoothed loss
        after each returned; else None, nothing changed (feed them to `update`). `lr_at(i)`:
        the `lr` the i-th `update` would be given (asked only where a detector keeps it)."""
        if self.nonfinite.active or not np.isfinite(losses).all():
            return None
        before = self._smooth.state_dict()
        smooth = np.array(self._smooth.update_many(losses.tolist()))
        plans = [self.early.quiet_plan(losses, steps), self.divergence.quiet_plan(losses, steps, smooth, lr_at)]
        if None in plans or (self.collapse is not None and not _quiet_by_trial(self.collapse, steps, smooth)):
            self._smooth.load_state_dict(before)
            return None
        for commit in plans:
            commit()
        return smooth

    @property
    def value(self) -> float | None:
        return self.ema.value if self.ema is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self._smooth.state_dict(), "nonfinite": self.nonfinite.state_dict(),
                "divergence": self.divergence.state_dict(),
                "collapse": self.collapse.state_dict() if self.collapse else None,
                "early": self.early.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._smooth.load_state_dict(state["ema"])
        self.nonfinite.load_state_dict(state["nonfinite"])
        self.divergence.load_state_dict(state["divergence"])
        if self.collapse is not None and state.get("collapse"):
            self.collapse.load_state_dict(state["collapse"])
        if state.get("early"):  # absent from snapshots written before the early check
            self.early.load_state_dict(state["early"])


def _quiet_by_trial(detector: Any, steps: np.ndarray, values: np.ndarray) -> bool:
    """For a detector without a `quiet_plan`: feed it the block; if it raised anything, put
    its state back (`load_state_dict`) and say False. The advice's LR is left out: it shapes
    only an event's wording, and an event makes the block go step by step anyway."""
    before = detector.state_dict()
    update = detector.update
    for step, value in zip(steps.tolist(), values.tolist()):
        if update(value, step):
            detector.load_state_dict(before)
            return False
    return True
