"""Every detector that reads gradient flow, composed once for the trainer and `analyze`.

Fed plain floats at each monitored step: mean gain (drift and absolute threshold),
global grad norm (jumps, vanishing flow), block gains, non-finite gradients.
"""
from __future__ import annotations

import math
from typing import Any

from trainvitals.events import Event
from trainvitals.signals.drift import MeanGainDriftDetector
from trainvitals.signals.grad_health import GradNormJumpDetector, NonFiniteGradCheck, VanishingFlowDetector

__all__ = ["GradientSignals"]


class GradientSignals:
    def __init__(self, drift_threshold: float = 0.1, absolute_threshold: float | str = 1.3, window: int = 5,
                 num_layers: int | None = None, *, gradient_clip: float | None = None,
                 warmup_steps: int | None = None) -> None:
        self.drift = MeanGainDriftDetector(drift_threshold, absolute_threshold, window, num_layers,
                                           gradient_clip=gradient_clip, warmup_steps=warmup_steps)
        self.jump = GradNormJumpDetector()
        self.vanishing = VanishingFlowDetector()
        self.nonfinite = NonFiniteGradCheck()
        self.gradient_clip = gradient_clip

    def update(self, step: int, mean_gain: float | None = None, grad_norm: float | None = None,
               gains: dict[str, float] | None = None, lr: float | None = None,
               nonfinite_params: list[str] | None = None, total_params: int = 0) -> list[Event]:
        events: list[Event] = []
        if nonfinite_params is not None:
            events += self.nonfinite.update(step, nonfinite_params, total_params, lr=lr,
                                            gradient_clip=self.gradient_clip)
        if mean_gain is not None:
            events += self.drift.update(mean_gain, step, lr)
        if grad_norm is not None:
            events += self.jump.update(grad_norm, step, lr=lr, gradient_clip=self.gradient_clip)
            if math.isfinite(grad_norm):
                events += self.vanishing.update(step, grad_norm, gains)
        return events

    @property
    def moving_average(self) -> float | None:
        return self.drift.moving_average

    @property
    def mean_gain_drift(self) -> float | None:
        return self.drift.drift

    def state_dict(self) -> dict[str, Any]:
        return {"drift": self.drift.state_dict(), "jump": self.jump.state_dict(),
                "vanishing": self.vanishing.state_dict(), "nonfinite": self.nonfinite.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drift.load_state_dict(state["drift"])
        self.jump.load_state_dict(state["jump"])
        self.vanishing.load_state_dict(state["vanishing"])
        self.nonfinite.load_state_dict(state["nonfinite"])
