"""Exponential moving average of the training loss (seed Enhancement 1, DESIGN.md 1-2)."""
from __future__ import annotations

import math
from typing import Any

from trainvitals.errors import check_choice, check_range

__all__ = ["LossEMA", "EMA_INITS"]

EMA_INITS = ("debiased", "first")


class LossEMA:
    """Smoothed loss: ``ema = alpha * ema + (1 - alpha) * loss``.

    ``alpha`` is the decay (weight on the old value; lag ~1/(1-alpha) steps).
    ``init="debiased"`` is TensorBoard's debiased smoothing, equal to pandas
    ``ewm(alpha=1-alpha, adjust=True).mean()``; ``init="first"`` starts at the first
    loss, equal to ``adjust=False``. Both return the first loss at step 1. Non-finite
    losses are skipped (report them with ``NonFiniteLossCheck``).
    """

    def __init__(self, alpha: float = 0.99, init: str = "debiased") -> None:
        check_range("ema_alpha", alpha, 0.0, 1.0, lo_open=True, hi_open=True)
        check_choice("ema_init", init, EMA_INITS)
        self.alpha = float(alpha)
        self.init = init
        self._value: float | None = None
        # Debiased mode: sum of the (un-normalised) weights alpha^i of the losses seen.
        # Dividing each new loss by it is the incremental form of num/den; it gives the
        # first loss exactly (weight 1/1) rather than (1-a)x/(1-a) up to rounding.
        self._weight = 0.0
        self.count = 0

    @property
    def value(self) -> float | None:
        """Current EMA, or None before the first finite loss."""
        return self._value

    def update(self, loss: float) -> float | None:
        """Fold in one loss and return the EMA (unchanged if ``loss`` is not finite)."""
        return self.update_many((loss,))[0]

    def update_many(self, losses) -> list[float | None]:
        """`update` each loss in turn; the EMA after each (one loop: a replay folds in millions)."""
        a, c, debiased = self.alpha, 1.0 - self.alpha, self.init == "debiased"
        value, weight, count = self._value, self._weight, self.count
        out = []
        for loss in losses:
            loss = float(loss)
            if -math.inf < loss < math.inf:
                weight = a * weight + 1.0
                if value is None:
                    value = loss
                elif debiased:
                    value += (loss - value) / weight
                else:
                    value = a * value + c * loss
                count += 1
            out.append(value)
        self._value, self._weight, self.count = value, weight, count
        return out

    def state_dict(self) -> dict[str, Any]:
        # alpha/init are recorded for inspection; the constructor's config wins on load.
        return {
            "alpha": self.alpha,
            "init": self.init,
            "value": self._value,
            "weight": self._weight,
            "count": self.count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        value = state["value"]
        self._value = None if value is None else float(value)
        self._weight = float(state["weight"])
        self.count = int(state["count"])
