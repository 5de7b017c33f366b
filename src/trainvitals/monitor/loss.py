"""`LossMonitorCallback`: the step loss, its EMA, and what a non-finite loss does.

Fed host floats (one batch of steps per logging step) by the `Monitor`, and by
`analyze` replaying a log. Writes `train/step_loss`, `train/lr` (live only: a replay
already has them) and `train/step_loss_ema`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.outbox import Outbox, StopReason
from trainvitals.signals.loss_signals import LossSignals

__all__ = ["LossMonitorCallback"]


class LossMonitorCallback:
    """`gradient_clip`, `peak_lr` (the LR the user set) and `warmup_steps` are the run's,
    named in advice (None: unknown)."""

    def __init__(self, config: MonitorConfig | None = None, baseline_loss: float | None = None,
                 gradient_clip: float | None = None, uniform_loss: float | None = None, *,
                 peak_lr: float | None = None, warmup_steps: int | None = None) -> None:
        self.config = config if config is not None else MonitorConfig()
        self.signals = LossSignals(self.config, baseline_loss, self.config.enable_ema_loss, uniform_loss)
        self.gradient_clip = gradient_clip
        self.peak_lr, self.warmup_steps = peak_lr, warmup_steps
        self.last: float | None = None  # the latest step loss reported

    def report(self, out: Outbox, steps: Sequence[int], losses: Sequence[float],
               lrs: Sequence[float | None], epoch: int | None = None, log_inputs: bool = True) -> None:
        # a replay feeds millions of steps through here: what each step reads is bound once
        update, rate_at, log = self.signals.update, out.learning_rate, out.log
        peak, warmup, clip = self.peak_lr, self.warmup_steps, self.gradient_clip
        for step, loss, lr in zip(steps, losses, lrs):
            if log_inputs:
                log("train/step_loss", loss, step)
                if lr is not None:
                    log("train/lr", lr, step)
            ema, events = update(loss, step, epoch, rate_at(lr, peak, step, warmup), clip)
            if events:
                out.emit(events)
            if ema is not None:
                log("train/step_loss_ema", ema, step)
            # under auto_adjust a rollback answers it (monitor/rollback.py), or stops the run itself
            if (not -math.inf < loss < math.inf and self.config.on_nonfinite_loss == "stop"
                    and not self.config.auto_adjust):
                out.request_stop(StopReason.NONFINITE_LOSS,
                                 f"non-finite loss {loss} at step {step} (on_nonfinite_loss='stop'); "
                                 f"the last finite snapshot is kept")
        if losses:
            self.last = losses[-1]
        if self.signals.value is not None:
            out.figures["EMA"] = (self.signals.value, ".4g")

    def skip(self, out: Outbox, steps: np.ndarray, losses: np.ndarray,
             lr_at: Callable[[int], float | None]) -> bool:
        """`report(out, steps, losses, lrs, log_inputs=False)` when the detectors prove those
        steps raise nothing (`LossSignals.skip`), its EMAs logged as a block; else False and
        nothing done: `report` them. `lr_at(i)` is `lrs[i]`, asked only where it is kept."""
        peak, warmup = self.peak_lr, self.warmup_steps
        smooth = self.signals.skip(
            steps, losses, lambda i: out.learning_rate(lr_at(i), peak, int(steps[i]), warmup))
        if smooth is None:
            return False
        if self.signals.ema is not None:
            out.log_block("train/step_loss_ema", steps, smooth)
            out.figures["EMA"] = (float(smooth[-1]), ".4g")
        self.last = float(losses[-1])
        return True

    def state_dict(self) -> dict[str, Any]:
        return self.signals.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.signals.load_state_dict(state)
