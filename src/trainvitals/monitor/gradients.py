"""`GradientMonitorCallback`: what the gradient and weight-update measurements mean.

Fed one monitored step's host values at a time, by the `Monitor` (from its probes) and
by `analyze` (from a log's tags). Gain aggregates are computed from the per-block gains
by `gain_aggregates`, whoever measured them. Tags written:

| tag | when |
|---|---|
| `gradient_monitor/mean_gain`, `mean_gain_all`, `max_gain`, `amplification`, `gain/<block>` | block gains known (a block without one: a `gain_not_measurable` event, once) |
| `gradient_monitor/grad_norm`, `gradient_monitor/grad_norm/<group>` | grad norm known |
| `gradient_monitor/mean_gain_ma`, `gradient_monitor/mean_gain_drift` | drift detector |
| `weight_monitor/update_ratio/<group>`, `update_ratio_mean`, `update_ratio_max`, `frozen_params` | a measured step |
| `weight_monitor/update_ratio/<param>` | with `log_per_param` |

A group is a block (`"0"`, `"encoder.1"`) or, outside the blocks, the module that owns
the parameter (`"tok_emb"`, `"head"`): a group's grad norm is the 2-norm of its
parameters' gradients, its update ratio ||dW|| / ||W|| over all of its parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from trainvitals.events import ALERT, INFO, Event
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.outbox import Outbox, StopReason
from trainvitals.signals.advice import fmt_lr
from trainvitals.signals.frozen import FrozenParamsDetector
from trainvitals.signals.gradient_signals import (GradientSignals, gain_aggregates, measured_gain_columns,
                                                  measured_gains)

__all__ = ["GradientMonitorCallback", "GradientReading", "group_norms"]

_GAIN_KINDS = ("mean_gain_absolute", "mean_gain_drift", "max_gain_jump")


@dataclass
class GradientReading:
    """One monitored step, as plain floats. Any part may be missing from a log."""
    gains: dict[str, float] = field(default_factory=dict)  # per block; NaN = not measured
    grad_norm: float | None = None  # global, before clipping
    mean_gain: float | None = None  # a logged aggregate, used only when `gains` is empty
    max_gain: float | None = None  # likewise
    nonfinite_params: list[str] | None = None  # parameters whose gradient norm is NaN or inf
    total_params: int = 0
    param_grad_norms: dict[str, float] | None = None  # per parameter
    weights: dict[str, Any] | None = None  # WeightUpdateStats.to_host(), or the logged ratios
    groups: dict[str, str] | None = None  # parameter -> its block or module, for per-group tags


def group_norms(values: dict[str, float], groups: dict[str, str]) -> dict[str, float]:
    """The 2-norm over each group of per-parameter 2-norms (ungrouped names are their own group)."""
    sums: dict[str, float] = {}
    for name, v in values.items():
        g = groups.get(name, name)
        sums[g] = sums.get(g, 0.0) + v * v
    return {g: math.sqrt(v) for g, v in sums.items()}


class GradientMonitorCallback:
    """`gradient_clip`, `warmup_steps` and `peak_lr` (the LR the user set) are the run's,
    named in advice (None: unknown)."""

    def __init__(self, config: MonitorConfig | None = None, num_layers: int | None = None, *,
                 gradient_clip: float | None = None, warmup_steps: int | None = None,
                 peak_lr: float | None = None) -> None:
        self.config = config if config is not None else MonitorConfig()
        self.peak_lr, self.warmup_steps = peak_lr, warmup_steps
        self.signals = GradientSignals(self.config, num_layers, gradient_clip=gradient_clip,
                                       warmup_steps=warmup_steps)
        self.frozen = FrozenParamsDetector(self.config.frozen_patience)
        self.unmeasurable: list[str] = []  # blocks whose gain could not be measured (said once)

    def observe_losses(self, steps: list[int], losses: list[float]) -> None:
        """The step losses, in step order, before the gradients of those steps: a gain
        excursion is an alert only where the loss backs it (signals/gain_gate.py)."""
        self.signals.loss_trend.observe_many(steps, losses)

    def report(self, out: Outbox, step: int, r: GradientReading, lr: float | None,
               epoch: int | None = None, log_inputs: bool = True) -> None:
        # a NaN gain is a block not measured: left out of every figure, said once (below)
        raw = r.gains
        if raw:
            gains, mean_gain, max_gain = measured_gains(raw)
        else:  # a log with aggregates only
            gains, mean_gain, max_gain = raw, r.mean_gain, r.max_gain
        if log_inputs:
            for tag, value in (gain_aggregates(gains) if raw else {}).items():
                if value is not None:
                    out.log(f"gradient_monitor/{tag}", value, step)
            for block, gain in gains.items():
                out.log(f"gradient_monitor/gain/{block}", gain, step)
            if r.grad_norm is not None:
                out.log("gradient_monitor/grad_norm", r.grad_norm, step)
            if r.param_grad_norms and r.groups:
                for group, norm in group_norms(r.param_grad_norms, r.groups).items():
                    out.log(f"gradient_monitor/grad_norm/{group}", norm, step)
        rate = out.learning_rate(lr, self.peak_lr, step, self.warmup_steps)
        events = self.signals.update(step, mean_gain, r.grad_norm, gains or None, rate, r.nonfinite_params,
                                     r.total_params, max_gain)
        if gains is not raw:
            events = self._unmeasurable_now(step, [b for b in raw if b not in gains], r.nonfinite_params) + events
        if mean_gain is not None:
            ma, drift = self.signals.drift.moving_average, self.signals.drift.drift
            if ma is not None:
                out.log("gradient_monitor/mean_gain_ma", ma, step)
            if drift is not None:
                out.log("gradient_monitor/mean_gain_drift", drift, step)
        w = r.weights
        if w is not None and not w.get("skipped"):
            if log_inputs:
                for name, ratio in self._ratios(w, r.groups).items():
                    out.log(f"weight_monitor/update_ratio/{name}", ratio, step)
                for tag in ("update_ratio_mean", "update_ratio_max", "frozen_params"):
                    out.log(f"weight_monitor/{tag}", w[tag], step)
            events += self.frozen.update(step, w["unchanged"], len(w["update_ratio"]),
                                         w.get("intentionally_frozen"))
        if mean_gain is not None:
            out.figures["Gain"] = (mean_gain, ".3f")
        if events:  # most steps raise none
            events = [e if e.epoch is not None or epoch is None else replace(e, epoch=epoch) for e in events]
            out.emit(events)
            self._act_on_gain_alerts(out, events, step, rate.peak or lr, epoch)

    def skip(self, out: Outbox, steps: np.ndarray, names: tuple[str, ...], gains: np.ndarray | None,
             grad_norm: np.ndarray | None, mean_gain: np.ndarray | None = None,
             max_gain: np.ndarray | None = None) -> bool:
        """`report(..., log_inputs=False)` of readings holding block gains (a column of `gains`
        per name in `names`, every one measured; with none, the logged `mean_gain` and
        `max_gain`) and the grad norm (None: not known), when the detectors prove those steps
        raise nothing (`GradientSignals.skip`), the derived series logged as blocks; else
        False and nothing done: `report` them."""
        if names:
            if not np.isfinite(gains).all():
                return False  # a block not measured: said by `report`
            mean_gain, max_gain = measured_gain_columns(names, gains)
        done = self.signals.skip(steps, mean_gain, grad_norm, max_gain, gains if names else None, names)
        if done is None:
            return False
        ma, drift = done
        if ma is not None:
            out.log_block("gradient_monitor/mean_gain_ma", steps, ma)
            out.log_block("gradient_monitor/mean_gain_drift", steps, drift)
        if mean_gain is not None:
            out.figures["Gain"] = (float(mean_gain[-1]), ".3f")
        return True

    def _unmeasurable_now(self, step: int, unmeasured: list[str], nonfinite: list[str] | None) -> list[Event]:
        """One info event the first time blocks have no gain while the gradients are finite:
        no gradient reached their input (its producer is frozen, as the embeddings under
        LoRA are) or their output. With non-finite gradients, nonfinite_gradients says why."""
        new = [b for b in unmeasured if b not in self.unmeasurable]
        if not new or nonfinite:
            return []
        self.unmeasurable += new
        return [Event("gain_not_measurable", INFO,
                      f"Gain of {', '.join(new)} not measurable at step {step}: no gradient reaches "
                      f"{'its' if len(new) == 1 else 'their'} input (e.g. frozen embeddings); left out of "
                      f"every gain figure", step, values={"blocks": new}, source="gradient_monitor")]

    def _ratios(self, w: dict[str, Any], groups: dict[str, str] | None) -> dict[str, float]:
        """Update ratios per group, and per parameter with `log_per_param` (or no groups)."""
        if not groups or "update_norms" not in w:
            return w["update_ratio"]
        dw, norm = group_norms(w["update_norms"], groups), group_norms(w["weight_norms"], groups)
        out = {g: 0.0 if dw[g] == 0 else (dw[g] / norm[g] if norm[g] > 0 else math.nan) for g in dw}
        return {**out, **w["update_ratio"]} if self.config.log_per_param else out

    def _act_on_gain_alerts(self, out: Outbox, events: list[Event], step: int, lr: float | None,
                            epoch: int | None) -> None:
        """`lr`: the peak LR where known (what a user sets), else the LR in use."""
        policy = self.config.on_gain_alert
        if policy == "warn" or not any(e.kind in _GAIN_KINDS and e.severity == ALERT for e in events):
            return
        if policy == "stop":
            out.emit(Event("action", INFO, f"on_gain_alert='stop': stopping at step {step}", step, epoch,
                           source="gradient_monitor"))
            out.request_stop(StopReason.GAIN_ALERT, f"gradient gain alert at step {step}")
            return
        old = lr or 0.0
        if out.scale_lr(0.5):
            msg = f"on_gain_alert='reduce_lr': learning rate {fmt_lr(old)} → {fmt_lr(old * 0.5)} from the next step"
        else:
            msg = (f"on_gain_alert='reduce_lr': this training loop cannot have its learning rate changed by a "
                   f"callback; set it yourself: {fmt_lr(old)} → {fmt_lr(old * 0.5)}")
        out.emit(Event("action", INFO, msg, step, epoch, values={"old_lr": old, "new_lr": old * 0.5},
                       source="gradient_monitor"))

    def state_dict(self) -> dict[str, Any]:
        return {"signals": self.signals.state_dict(), "frozen": self.frozen.state_dict(),
                "unmeasurable": list(self.unmeasurable)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.signals.load_state_dict(state["signals"])
        self.frozen.load_state_dict(state["frozen"])
        self.unmeasurable = list(state.get("unmeasurable", []))  # absent from older snapshots
