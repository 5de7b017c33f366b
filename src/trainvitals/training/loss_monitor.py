"""`LossMonitorCallback`: the EMA of the step loss and what happens on a non-finite loss.

The trainer always runs it: the EMA (Enhancement 1) is on unless `enable_ema_loss` is
False, and non-finite losses are always caught, then handled per `on_nonfinite_loss`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainvitals.signals.ema import LossEMA
from trainvitals.signals.nonfinite import NonFiniteLossCheck
from trainvitals.training.callbacks import StopReason, TrainerCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["LossMonitorCallback"]


class LossMonitorCallback(TrainerCallback):
    def __init__(self, enable_ema: bool = True, alpha: float = 0.99, init: str = "debiased",
                 on_nonfinite: str = "stop") -> None:
        self.ema = LossEMA(alpha, init) if enable_ema else None
        self.nonfinite = NonFiniteLossCheck()
        self.on_nonfinite = on_nonfinite

    def on_step_losses(self, trainer: "Trainer", steps: list[int], losses: list[float]) -> None:
        clip = trainer.config.gradient_clip or None
        for step, loss in zip(steps, losses):
            events = self.nonfinite.update(loss, step, trainer.epoch, lr=trainer.lr, gradient_clip=clip)
            trainer.emit(events)
            if not math.isfinite(loss):
                if self.on_nonfinite == "stop":
                    trainer.request_stop(StopReason.NONFINITE_LOSS,
                                         f"non-finite loss {loss} at step {step} (on_nonfinite_loss='stop'); "
                                         f"the last finite snapshot is kept")
                continue  # never folded into the EMA
            if self.ema is not None:
                value = self.ema.update(loss)
                trainer.log("train/step_loss_ema", value, step)
        if self.ema is not None and self.ema.value is not None:
            trainer.status["EMA"] = f"{self.ema.value:.4g}"

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict() if self.ema else None, "nonfinite": self.nonfinite.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.nonfinite.load_state_dict(state["nonfinite"])
