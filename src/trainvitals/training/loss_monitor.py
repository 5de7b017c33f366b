"""`LossMonitorCallback`: the EMA of the step loss and what happens on a non-finite loss.

The trainer always runs it: the EMA (Enhancement 1) is on unless `enable_ema_loss` is
False, and non-finite losses are always caught, then handled per `on_nonfinite_loss`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainvitals.signals.loss_signals import LossSignals
from trainvitals.training.callbacks import StopReason, TrainerCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["LossMonitorCallback"]


class LossMonitorCallback(TrainerCallback):
    def __init__(self, enable_ema: bool = True, alpha: float = 0.99, init: str = "debiased",
                 on_nonfinite: str = "stop", baseline_loss: float | None = None) -> None:
        self.signals = LossSignals(alpha, init, enable_ema, baseline_loss)
        self.on_nonfinite = on_nonfinite

    def on_train_begin(self, trainer: "Trainer") -> None:
        baseline = trainer.run_info.get("unigram_entropy")
        if baseline and trainer.global_step == 0:  # so `analyze` knows the collapse level too
            trainer.log("data/unigram_entropy", baseline, 0)

    def on_step_losses(self, trainer: "Trainer", steps: list[int], losses: list[float]) -> None:
        clip = trainer.config.gradient_clip or None
        for step, loss in zip(steps, losses):
            ema, events = self.signals.update(loss, step, trainer.epoch, lr=trainer.lr, gradient_clip=clip)
            trainer.emit(events)
            if ema is not None:
                trainer.log("train/step_loss_ema", ema, step)
            if not math.isfinite(loss) and self.on_nonfinite == "stop":
                trainer.request_stop(StopReason.NONFINITE_LOSS,
                                     f"non-finite loss {loss} at step {step} (on_nonfinite_loss='stop'); "
                                     f"the last finite snapshot is kept")
        if self.signals.value is not None:
            trainer.status["EMA"] = f"{self.signals.value:.4g}"

    def state_dict(self) -> dict[str, Any]:
        return self.signals.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.signals.load_state_dict(state)
