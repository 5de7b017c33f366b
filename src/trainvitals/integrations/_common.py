"""What the framework callbacks share: the config from a dict, the step-loss accumulator."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from trainvitals.monitor.config import MonitorConfig

__all__ = ["as_config", "config_dict", "StepLoss"]


def as_config(config: MonitorConfig | dict[str, Any] | None) -> MonitorConfig:
    """A `MonitorConfig` from itself, a dict of its fields (restored from JSON), or None."""
    if config is None:
        return MonitorConfig()
    if isinstance(config, dict):
        from trainvitals.config import config_from_dict
        return config_from_dict(MonitorConfig, config, "config")
    return config.monitor_settings()


def config_dict(config: MonitorConfig) -> dict[str, Any]:
    return asdict(config)


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
