"""`Outbox`: where the monitor's parts put what they find, and the decisions a host carries out.

Scalars, events and report text fan out to the sinks; the two decisions a detector
can take, stop the run and scale the learning rate, are recorded here for the host
(our `Trainer`, a plain loop, a framework callback) to carry out. `analyze` replays
the same parts into a `ReplayOutbox`, which keeps the derived series instead.
"""
from __future__ import annotations

import enum
from typing import Iterable

from trainvitals.events import Event
from trainvitals.signals.advice import LearningRate, learning_rate
from trainvitals.sinks.base import SinkHub

__all__ = ["StopReason", "Outbox"]


class StopReason(str, enum.Enum):
    """Why training stopped."""
    COMPLETED = "completed"  # the planned epochs / max_steps are done
    NONFINITE_LOSS = "nonfinite_loss"
    GAIN_ALERT = "gain_alert"
    EARLY_STOPPING = "early_stopping"
    CALLBACK = "callback"
    INTERRUPTED = "interrupted"
    AUTO_ADJUST = "auto_adjust"  # auto_adjust could not heal the run (max_rollbacks reached, no good state)


class Outbox:
    def __init__(self, sinks: SinkHub | None = None, can_set_lr: bool = True) -> None:
        self.sinks = sinks if sinks is not None else SinkHub()
        self.events: list[Event] = []  # every event raised so far, in order
        self.scalars: dict[str, tuple[int, float]] = {}  # the latest (step, value) of every tag
        # short figures for a console line ("EMA", "Gain"): name -> (value, format spec), formatted
        # only when shown (`status`), not at each of the millions of steps a replay feeds
        self.figures: dict[str, tuple[float, str]] = {}
        self.can_set_lr = can_set_lr
        self.lr_scale = 1.0  # product of the LR cuts decided so far; the host applies it
        self.stop_reason: StopReason | None = None
        self.stop_message = ""

    @property
    def status(self) -> dict[str, str]:
        """The figures for a console line, as text: {"EMA": "2.31", "Gain": "1.042"}."""
        return {name: format(value, spec) for name, (value, spec) in self.figures.items()}

    def log(self, tag: str, value: float, step: int) -> None:
        self.scalars[tag] = (step, value)
        self.sinks.log(tag, value, step)

    def log_block(self, tag: str, steps, values) -> None:
        """`log` each (step, value) in turn, leaving out NaN (no value at that step)."""
        for step, value in zip(steps.tolist(), values.tolist()):
            if value == value:
                self.log(tag, value, step)

    def emit(self, events: Event | Iterable[Event], echo: bool = True) -> None:
        """`echo=False`: the text was already printed (inside a report block)."""
        for e in [events] if isinstance(events, Event) else events:
            self.events.append(e)
            self.sinks.emit(e, echo)

    def text(self, line: str) -> None:
        self.sinks.text(line)

    def request_stop(self, reason: StopReason, message: str = "") -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message

    def learning_rate(self, now: float | None, peak: float | None, step: int | None,
                      warmup_steps: int | None) -> LearningRate:
        """The LR advice names at `step`: `peak`, the one the user set, times the cuts
        decided so far; `now`, the one in use."""
        return learning_rate(now, peak * self.lr_scale if peak else None, step, warmup_steps)

    def scale_lr(self, factor: float) -> bool:
        """Record an LR cut; False when the host cannot change the LR (the caller says so)."""
        if not self.can_set_lr:
            return False
        self.lr_scale *= factor
        return True
