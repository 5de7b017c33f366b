"""The event lifecycle shared by every detector.

A condition raises one event when it starts, none while it persists (repeats are
counted), and an ``info`` event when it clears, after which it can fire again.
Severity may escalate (warning -> alert) with a new event. A condition built with
``clear_after=N`` clears only once it has been absent for N consecutive checks: a loss
that jumps above a line every other step is one episode, not an alert every other step.
"""
from __future__ import annotations

from typing import Any

from trainvitals.events import ALERT, INFO, WARNING, Event

__all__ = ["Condition"]

_RANK = {INFO: 0, WARNING: 1, ALERT: 2}


class Condition:
    """One watched condition of one detector (e.g. 'loss is non-finite'); it clears
    after `clear_after` consecutive checks without it (1: the first)."""

    def __init__(self, kind: str, source: str = "", clear_after: int = 1) -> None:
        self.kind = kind
        self.source = source
        self.clear_after = clear_after
        self.absent = 0  # consecutive checks without the condition while it is active
        self.active_severity: str | None = None
        self.repeats = 0
        self.started_step: int | None = None
        self.started_epoch: int | None = None

    @property
    def active_severity(self) -> str | None:
        return self._severity

    @active_severity.setter
    def active_severity(self, severity: str | None) -> None:
        self._severity = severity
        # a plain attribute: every detector asks it at every step, it changes only with the condition
        self.active = severity is not None

    def settled(self, firing: bool) -> bool:
        """Whether observing `firing` now would start or clear nothing (a severity
        escalation aside): callers skip composing the message then."""
        if firing:
            return self.active
        return not self.active or self.absent + 1 < self.clear_after

    def observe(
        self,
        firing: bool,
        *,
        severity: str = ALERT,
        message: str = "",
        step: int | None = None,
        epoch: int | None = None,
        suggestions: tuple[str, ...] | list[str] = (),
        values: dict[str, Any] | None = None,
        clear_message: str | None = None,
    ) -> list[Event]:
        """Feed the condition's truth value at this point; return the events it causes."""
        if firing:
            self.absent = 0
            if not self.active or _RANK[severity] > _RANK[self._severity]:
                self.active_severity = severity
                if self.started_step is None and self.started_epoch is None:
                    self.started_step, self.started_epoch = step, epoch
                return [Event(self.kind, severity, message, step, epoch, tuple(suggestions), dict(values or {}),
                              self.source)]
            self.repeats += 1
            return []
        if not self.active:
            return []
        self.absent += 1
        if self.absent < self.clear_after:
            self.repeats += 1
            return []
        repeats = self.repeats
        self.reset()
        values = {**(values or {}), "repeats": repeats}
        msg = clear_message or f"{self.kind} cleared after {repeats + 1} consecutive checks"
        return [Event(self.kind, INFO, msg, step, epoch, (), values, self.source)]

    def reset(self) -> None:
        self.active_severity = None
        self.repeats = 0
        self.absent = 0
        self.started_step = None
        self.started_epoch = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "active_severity": self.active_severity,
            "repeats": self.repeats,
            "started_step": self.started_step,
            "started_epoch": self.started_epoch,
            "absent": self.absent,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.active_severity = state["active_severity"]
        self.repeats = int(state["repeats"])
        self.started_step = state["started_step"]
        self.started_epoch = state["started_epoch"]
        self.absent = int(state.get("absent", 0))  # absent from snapshots written before clear_after
