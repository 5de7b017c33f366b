"""Console sink: progress bar and status lines via tqdm, events as readable blocks."""
from __future__ import annotations

import sys

from trainvitals.events import ALERT, WARNING, Event
from trainvitals.sinks.base import Sink

__all__ = ["ConsoleSink", "format_event"]

_ICON = {ALERT: "🔴", WARNING: "⚠️ ", "info": "ℹ️ "}


def format_event(event: Event) -> str:
    head = f"  {_ICON.get(event.severity, '')} {event.severity.upper()} {event.kind}"
    where = event.where()
    lines = [f"{head} ({where}): {event.message}" if where else f"{head}: {event.message}"]
    lr = event.values.get("lr")
    if isinstance(lr, float) and event.kind.startswith("mean_gain"):
        lines.append(f"     Current LR: {lr:.1e}")  # the seed's warning block shows it
    if event.suggestions:
        lines.append("     Suggestions:")
        lines += [f"       {i}. {s}" for i, s in enumerate(event.suggestions, 1)]
    return "\n".join(lines)


class ConsoleSink(Sink):
    """Events and report lines on stdout. `progress_bar=True`: a tqdm bar on stderr as well,
    for a host that moves it (`progress()`; our `Trainer` does, a `Monitor` does not)."""

    echoes = True  # prints events; SinkHub.emit(echo=False) skips it

    def __init__(self, progress_bar: bool = False, total: int | None = None, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.bar = None
        if progress_bar:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)

    def text(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def emit(self, event: Event) -> None:
        self.text(format_event(event))

    def progress(self, n: int, total: int | None = None, **postfix: str) -> None:
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = n
            self.bar.set_postfix(postfix, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
