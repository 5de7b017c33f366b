"""Non-finite loss (training or validation): one alert when it starts, an info event when it clears."""
from __future__ import annotations

import math
from typing import Any

from trainvitals.events import ALERT, Event
from trainvitals.signals.advice import LearningRate, lr_value, reduce_lr, tighten_clip
from trainvitals.signals.lifecycle import Condition

__all__ = ["NonFiniteLossCheck"]


class NonFiniteLossCheck:
    """Watches the step loss (or, `what="validation loss"`, each evaluation's) for NaN/inf.

    A run of consecutive non-finite losses gives one ``nonfinite_loss`` alert (the
    repeats are counted, not re-raised) and an ``info`` event when a finite loss
    comes back. ``lr`` and ``gradient_clip`` only shape the suggestions; a clip of
    None or 0 means clipping is off. A non-finite validation loss matters on its own
    where the training loss is not logged as it was: HF's `Trainer` logs a NaN step
    loss as the mean of the finite ones (`logging_nan_inf_filter`, on by default).
    """

    source = "nonfinite_loss"

    def __init__(self, what: str = "loss") -> None:
        self.what = what
        self._cond = Condition("nonfinite_loss", source=self.source)
        self.total = 0  # non-finite losses seen over the whole run

    @property
    def active(self) -> bool:
        return self._cond.active

    def update(
        self,
        loss: float,
        step: int,
        epoch: int | None = None,
        *,
        lr: float | LearningRate | None = None,
        gradient_clip: float | None = None,
    ) -> list[Event]:
        """Feed one step's loss; return the events it causes (usually none)."""
        loss = float(loss)
        bad = not math.isfinite(loss)
        if bad:
            self.total += 1
        elif not self._cond.active:  # the common case: nothing to clear, no advice to word
            return []
        suggestions = (
            reduce_lr(lr),
            tighten_clip(gradient_clip),
            f"Check the batch at step {step} for extreme values" if self.what == "loss" else
            "Check the weights for NaN/inf: the training steps before this evaluation broke the model",
        )
        values: dict[str, Any] = {"loss": loss}
        if lr_value(lr) is not None:
            values["lr"] = lr_value(lr)
        if not bad:
            # Only reached with an active condition it clears; the count is the
            # length of the run that just ended.
            run = self._cond.repeats + 1
            return self._cond.observe(
                False,
                step=step,
                epoch=epoch,
                values=values,
                clear_message=(
                    f"{self.what.capitalize()} is finite again at step {step} after {run} non-finite "
                    f"{'step' if self.what == 'loss' else 'evaluation'}{'s' if run != 1 else ''}"
                ),
            )
        return self._cond.observe(
            True,
            severity=ALERT,
            message=f"Non-finite {self.what} {loss} at step {step}",
            step=step,
            epoch=epoch,
            suggestions=suggestions,
            values=values,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"condition": self._cond.state_dict(), "total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._cond.load_state_dict(state["condition"])
        self.total = int(state["total"])
