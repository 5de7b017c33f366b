"""`GradientMonitorCallback`: gradient flow, weight updates and gain drift, every N steps.

On a monitored step (step 1, then every `interval` steps) the probes hook the blocks
for that forward/backward only, measure on the device, and the results wait there
until the next logging step, when they cross to the host in one transfer each and
feed the detectors (`signals.gradient_signals`, `signals.frozen`). On other steps no
hook exists and no work is done.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import torch.nn as nn

from trainvitals.events import ALERT, INFO, Event
from trainvitals.probes.gradient_flow import GradientFlowProbe, GradientFlowStats
from trainvitals.probes.weight_updates import WeightUpdateProbe, WeightUpdateStats
from trainvitals.signals.advice import fmt_lr
from trainvitals.signals.frozen import FrozenParamsDetector
from trainvitals.signals.gradient_signals import GradientSignals, inner_mean_gain
from trainvitals.training.callbacks import StopReason, TrainerCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["GradientMonitorCallback"]

_GAIN_KINDS = ("mean_gain_absolute", "mean_gain_drift", "max_gain_jump")


class GradientMonitorCallback(TrainerCallback):
    def __init__(
        self,
        interval: int = 10,
        blocks: Sequence[tuple[str, nn.Module]] | None = None,
        mean_gain_drift_threshold: float = 0.1,
        mean_gain_absolute_threshold: float | str = 1.3,
        mean_gain_drift_window: int = 5,
        frozen_patience: int = 3,
        max_gain_jump_factor: float = 10.0,
        on_gain_alert: str = "warn",
        weight_updates: bool = True,
    ) -> None:
        self.interval = interval
        self.blocks = blocks
        self.drift_args = (mean_gain_drift_threshold, mean_gain_absolute_threshold, mean_gain_drift_window)
        self.max_gain_jump_factor = max_gain_jump_factor
        self.on_gain_alert = on_gain_alert
        self.weight_updates = weight_updates
        self.frozen = FrozenParamsDetector(frozen_patience)
        self.flow: GradientFlowProbe | None = None
        self.updates: WeightUpdateProbe | None = None
        self.signals: GradientSignals | None = None
        self._saved_signals: dict[str, Any] | None = None
        self._this_step: tuple[int, GradientFlowStats] | None = None
        self._pending: list[tuple[int, GradientFlowStats, WeightUpdateStats | None]] = []

    @classmethod
    def from_trainer(cls, trainer: "Trainer") -> "GradientMonitorCallback | None":
        c = trainer.config
        if not c.enable_gradient_monitor:
            return None
        return cls(c.gradient_monitor_interval, None, c.mean_gain_drift_threshold, c.mean_gain_absolute_threshold,
                   c.mean_gain_drift_window, c.frozen_patience, c.max_gain_jump_factor, c.on_gain_alert)

    @property
    def enabled(self) -> bool:
        return self.flow is not None

    def monitors(self, step: int) -> bool:
        """Whether optimizer step `step` (1-based) is measured."""
        return (step - 1) % self.interval == 0

    # --- hooks ---------------------------------------------------------------------------
    def on_train_begin(self, trainer: "Trainer") -> None:
        self.flow = GradientFlowProbe(trainer.model, self.blocks)
        self.updates = WeightUpdateProbe(trainer.model, trainer.optimizer) if self.weight_updates else None
        cfg = trainer.config
        self.signals = GradientSignals(*self.drift_args, num_layers=max(1, len(self.flow.block_names)),
                                       gradient_clip=cfg.gradient_clip or None, warmup_steps=cfg.warmup_steps,
                                       max_gain_jump_factor=self.max_gain_jump_factor)
        if self._saved_signals is not None:
            self.signals.load_state_dict(self._saved_signals)

    def on_step_begin(self, trainer: "Trainer") -> None:
        if self.flow is not None and self.monitors(trainer.global_step + 1):
            self.flow.attach()

    def on_backward_end(self, trainer: "Trainer") -> None:
        if self.flow is None or not self.flow.attached:
            return
        self._this_step = (trainer.global_step + 1, self.flow.collect())
        self.flow.detach()
        if self.updates is not None:
            self.updates.before_step()

    def on_step_end(self, trainer: "Trainer") -> None:
        if self._this_step is None:
            return
        step, flow = self._this_step
        self._this_step = None
        weights = None
        if self.updates is not None:
            self.updates.after_step()
            weights = self.updates.collect()
        self._pending.append((step, flow, weights))

    def on_step_losses(self, trainer: "Trainer", steps: list[int], losses: list[float]) -> None:
        """A logging step: the one place measurements cross to the host."""
        for step, flow, weights in self._pending:
            self._report(trainer, step, flow.to_host(), weights.to_host() if weights is not None else None)
        self._pending.clear()

    def on_train_end(self, trainer: "Trainer") -> None:
        self.close()

    # --- reporting ---------------------------------------------------------------------
    def _report(self, trainer: "Trainer", step: int, g: dict[str, Any], w: dict[str, Any] | None) -> None:
        log = trainer.log
        mean_gain = inner_mean_gain(g["gains"])
        mean_gain = g["mean_gain"] if mean_gain is None else mean_gain
        log("gradient_monitor/mean_gain", mean_gain, step)
        log("gradient_monitor/mean_gain_all", g["mean_gain"], step)  # the seed's: every block
        log("gradient_monitor/max_gain", g["max_gain"], step)
        log("gradient_monitor/amplification", g["amplification"], step)
        log("gradient_monitor/grad_norm", g["grad_norm"], step)
        for block, gain in g["gains"].items():
            log(f"gradient_monitor/gain/{block}", gain, step)
        lr = trainer.lr
        events = self.signals.update(step, mean_gain, g["grad_norm"], g["gains"], lr,
                                     g["nonfinite_params"], len(g["param_grad_norms"]), g["max_gain"])
        for tag, value in (("gradient_monitor/mean_gain_ma", self.signals.moving_average),
                           ("gradient_monitor/mean_gain_drift", self.signals.mean_gain_drift)):
            if value is not None:
                log(tag, value, step)
        if w is not None and not w["skipped"]:
            for name, ratio in w["update_ratio"].items():
                log(f"weight_monitor/update_ratio/{name}", ratio, step)
            log("weight_monitor/update_ratio_mean", w["update_ratio_mean"], step)
            log("weight_monitor/update_ratio_max", w["update_ratio_max"], step)
            log("weight_monitor/frozen_params", w["frozen_params"], step)
            events += self.frozen.update(step, w["unchanged"], len(w["update_ratio"]), w["intentionally_frozen"])
        events = [e if e.epoch is not None else replace(e, epoch=trainer.epoch) for e in events]
        trainer.emit(events)
        trainer.status["Gain"] = f"{mean_gain:.3f}"
        self._act_on_gain_alerts(trainer, events, step)

    def _act_on_gain_alerts(self, trainer: "Trainer", events: list[Event], step: int) -> None:
        if self.on_gain_alert == "warn" or not any(
                e.kind in _GAIN_KINDS and e.severity == ALERT for e in events):
            return
        if self.on_gain_alert == "stop":
            trainer.emit(Event("action", INFO, f"on_gain_alert='stop': stopping at step {step}", step,
                               trainer.epoch, source="gradient_monitor"))
            trainer.request_stop(StopReason.GAIN_ALERT, f"gradient gain alert at step {step}")
        else:  # reduce_lr
            old = trainer.lr
            trainer.lr_scale *= 0.5
            trainer.emit(Event("action", INFO, f"on_gain_alert='reduce_lr': learning rate {fmt_lr(old)} → "
                               f"{fmt_lr(old * 0.5)} from the next step", step, trainer.epoch,
                               values={"old_lr": old, "new_lr": old * 0.5}, source="gradient_monitor"))

    # --- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Remove every hook; the monitor does nothing until training begins again."""
        if self.flow is not None:
            self.flow.close()
        if self.updates is not None:
            self.updates.close()
        self.flow = self.updates = None
        self._this_step = None

    disable = close

    def state_dict(self) -> dict[str, Any]:
        signals = self.signals.state_dict() if self.signals is not None else self._saved_signals
        return {"signals": signals, "frozen": self.frozen.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved_signals = state.get("signals")
        if self.signals is not None and self._saved_signals is not None:
            self.signals.load_state_dict(self._saved_signals)
        self.frozen.load_state_dict(state["frozen"])
