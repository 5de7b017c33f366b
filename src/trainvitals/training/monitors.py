"""The monitors a `TrainerConfig` turns on, added to a trainer's callbacks.

A monitor is added only if the user did not pass their own instance of that class
(or a subclass), so `Trainer(..., callbacks=[GradientMonitorCallback(interval=1)])`
replaces the default one instead of doubling it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainvitals.training.callbacks import TrainerCallback
from trainvitals.training.evaluation import PostEpochEvaluationCallback
from trainvitals.training.gradient_monitor import GradientMonitorCallback
from trainvitals.training.loss_monitor import LossMonitorCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["add_default_monitors"]


def add_default_monitors(callbacks: list[TrainerCallback], trainer: "Trainer") -> list[TrainerCallback]:
    cfg = trainer.config

    def have(cls: type) -> bool:
        return any(isinstance(cb, cls) for cb in callbacks)

    out: list[TrainerCallback] = []
    if not have(LossMonitorCallback):
        out.append(LossMonitorCallback(cfg.enable_ema_loss, cfg.ema_alpha, cfg.ema_init, cfg.on_nonfinite_loss,
                                       trainer.run_info.get("unigram_entropy")))
    for cls in (GradientMonitorCallback, PostEpochEvaluationCallback):
        cb = None if have(cls) else cls.from_trainer(trainer)
        if cb is not None:
            out.append(cb)
    return out + callbacks
