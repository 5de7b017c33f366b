"""Frozen parameters: trainable weights that stopped moving.

Fed, at each monitored step, the names of the trainable parameters whose update was
exactly zero. A parameter unchanged for `patience` monitored steps in a row raises one
`frozen_parameters` warning naming them (not in the optimizer, LR 0, dead units).
Parameters with requires_grad=False are intentional: listed once as info, never alerted.
"""
from __future__ import annotations

from typing import Any

from trainvitals.errors import check_range, check_type
from trainvitals.events import INFO, WARNING, Event
from trainvitals.signals.lifecycle import Condition

__all__ = ["FrozenParamsDetector"]

_SHOW = 5


class FrozenParamsDetector:
    def __init__(self, patience: int = 3) -> None:
        check_type("frozen_patience", patience, int)
        check_range("frozen_patience", patience, 1)
        self.patience = patience
        self.streak: dict[str, int] = {}
        self.condition = Condition("frozen_parameters", "frozen_params")
        self._listed_intentional = False

    def update(self, step: int, unchanged: list[str], total: int,
               intentionally_frozen: list[str] | None = None) -> list[Event]:
        events: list[Event] = []
        if intentionally_frozen and not self._listed_intentional:
            self._listed_intentional = True
            events.append(Event("intentionally_frozen", INFO,
                                f"{len(intentionally_frozen)} parameter(s) have requires_grad=False and are "
                                f"not trained: {_names(intentionally_frozen)}", step,
                                values={"params": list(intentionally_frozen)}, source="frozen_params"))
        self.streak = {n: self.streak.get(n, 0) + 1 for n in unchanged}
        frozen = sorted(n for n, k in self.streak.items() if k >= self.patience)
        msg = (f"{len(frozen)} of {total} trainable parameter(s) did not change over {self.patience} "
               f"monitored steps: {_names(frozen)}")
        events += self.condition.observe(
            bool(frozen), severity=WARNING, message=msg, step=step,
            suggestions=("Check that these parameters are in the optimizer's param groups",
                         "Check their param group's learning rate is not 0",
                         "Check for dead units (e.g. ReLU outputs always 0) feeding them"),
            values={"params": frozen, "count": len(frozen)},
            clear_message="frozen_parameters cleared: every trainable parameter moved again")
        return events

    def state_dict(self) -> dict[str, Any]:
        return {"streak": dict(self.streak), "condition": self.condition.state_dict(),
                "listed_intentional": self._listed_intentional}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.streak = dict(state["streak"])
        self.condition.load_state_dict(state["condition"])
        self._listed_intentional = state["listed_intentional"]


def _names(names: list[str]) -> str:
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more
