"""The monitors a `TrainerConfig` turns on, added to a trainer's callbacks.

A monitor is added only if the user did not pass their own instance of that class.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trainvitals.training.callbacks import TrainerCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["add_default_monitors"]


def add_default_monitors(callbacks: list[TrainerCallback], trainer: "Trainer") -> list[TrainerCallback]:
    from trainvitals.training.loss_monitor import LossMonitorCallback
    cfg = trainer.config
    have = {type(cb) for cb in callbacks}
    out: list[TrainerCallback] = []
    if LossMonitorCallback not in have:
        out.append(LossMonitorCallback(cfg.enable_ema_loss, cfg.ema_alpha, cfg.ema_init, cfg.on_nonfinite_loss,
                                       trainer.run_info.get("unigram_entropy")))
    for factory in _optional_monitors():
        cb = factory(trainer)
        if cb is not None and type(cb) not in have:
            out.append(cb)
    return out + callbacks


def _optional_monitors():
    """Factories for the monitors that may be switched off in the config."""
    factories = []
    try:
        from trainvitals.training.gradient_monitor import GradientMonitorCallback
        factories.append(GradientMonitorCallback.from_trainer)
    except ImportError:
        pass
    try:
        from trainvitals.training.evaluation import PostEpochEvaluationCallback
        factories.append(PostEpochEvaluationCallback.from_trainer)
    except ImportError:
        pass
    return factories
