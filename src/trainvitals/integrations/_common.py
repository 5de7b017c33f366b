"""What the framework callbacks share: their config, the step-loss accumulator."""
from __future__ import annotations

from typing import Any

import torch

from trainvitals.errors import ConfigError
from trainvitals.monitor.config import MonitorConfig

__all__ = ["callback_config", "StepLoss"]


def callback_config(config: MonitorConfig | dict[str, Any] | None, host: str) -> MonitorConfig:
    """A `MonitorConfig` from itself, a dict of its fields (restored from JSON), or None,
    for a framework callback, which cannot leave a step out."""
    if config is None:
        config = MonitorConfig()
    elif isinstance(config, dict):
        from trainvitals.config import config_from_dict
        config = config_from_dict(MonitorConfig, config, "config")
    else:
        config = config.monitor_settings()
    if config.on_nonfinite_loss == "skip_step":
        raise ConfigError(f"on_nonfinite_loss='skip_step': a {host} callback cannot skip a step; "
                          "use 'stop' or 'warn'")
    return config


class StepLoss:
    """The loss of one optimizer step from its micro-batches, kept on the device."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.total = loss if self.total is None else self.total + loss
        self.count += 1

    def take(self, mean: bool) -> torch.Tensor | None:
        """The step's loss (the mean or the sum of the micro-batch losses); resets."""
        total, count = self.total, self.count
        self.total, self.count = None, 0
        if total is None:
            return None
        return total / count if mean else total
