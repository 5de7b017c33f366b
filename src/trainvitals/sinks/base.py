"""The one path metrics and events take out: `log(tag, value, step)` and `emit(event)`;
`settings(...)` once a run, the run's settings (`trainvitals.monitor.settings`)."""
from __future__ import annotations

from typing import Any, Iterable

from trainvitals.events import Event

__all__ = ["SETTINGS_TAG", "Sink", "SinkHub"]

SETTINGS_TAG = "run/settings"  # TensorBoard: the tag of the settings text summary


class Sink:
    """Do-nothing sink; subclasses override what they render."""

    def log(self, tag: str, value: float, step: int) -> None: ...
    def emit(self, event: Event) -> None: ...
    def text(self, line: str) -> None: ...
    def settings(self, settings: dict[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class SinkHub(Sink):
    """Fans every call out to each sink, and remembers the events for the run report."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks = list(sinks)
        self.events: list[Event] = []

    def log(self, tag: str, value: float, step: int) -> None:
        for s in self.sinks:
            s.log(tag, value, step)

    def emit(self, event: Event, echo: bool = True) -> None:
        """`echo=False`: the caller already printed it (e.g. inside a report block)."""
        self.events.append(event)
        for s in self.sinks:
            if echo or not getattr(s, "echoes", False):
                s.emit(event)

    def text(self, line: str) -> None:
        for s in self.sinks:
            s.text(line)

    def settings(self, settings: dict[str, Any]) -> None:
        for s in self.sinks:
            s.settings(settings)

    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()
