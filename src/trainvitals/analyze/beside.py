"""Run one part of a replay in a forked child process while this process runs another.

The loss detectors and the gradient detectors of a replay share no state (a replay
takes no decision, and the loss part cuts no LR), so on a machine with two cores a long
log replays them side by side: each keeps its own objects, and their events are merged
by step exactly as one process would have ordered them. Fork shares the log read so
far without copying it; where fork is missing (Windows, macOS's default) or there is
one core, the part runs here, in turn.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable

__all__ = ["Beside", "can_fork"]

Tick = Callable[[int], None]


def can_fork() -> bool:
    """Fork is available and this process may use two cores or more."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores >= 2


class Beside:
    """`job(tick)` in a forked child; `result()` waits for its return value (pickled
    back), forwarding the steps the child reports through `tick` meanwhile. An
    exception in the child is raised again by `result()`."""

    def __init__(self, job: Callable[[Tick], Any], tick: Tick) -> None:
        ctx = multiprocessing.get_context("fork")
        self.tick, self.done = tick, 0
        self.count = ctx.RawValue("q", 0)  # one writer (the child), read here: no lock needed
        self.recv, send = ctx.Pipe(duplex=False)
        count = self.count

        def child() -> None:
            def child_tick(n: int) -> None:
                count.value += n
            try:
                reply = ("ok", job(child_tick))
            except BaseException as e:  # noqa: BLE001 - handed back to the parent as it is
                reply = ("error", e)
            try:
                send.send(reply)
            except Exception as e:  # an exception that does not pickle: its text
                send.send(("error", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]} ({e})")))
            send.close()

        self.proc = ctx.Process(target=child, daemon=True)
        self.proc.start()
        send.close()

    def forward(self) -> None:
        """Pass on the child's progress since the last call."""
        n = self.count.value
        if n > self.done:
            self.tick(n - self.done)
            self.done = n

    def result(self) -> Any:
        try:
            while not self.recv.poll(0.2):
                self.forward()
                if not self.proc.is_alive() and not self.recv.poll(0):
                    raise RuntimeError(f"the replay's worker process died (exit code {self.proc.exitcode})")
            status, value = self.recv.recv()
        finally:
            self.recv.close()
            self.proc.join()
        self.forward()
        if status == "error":
            raise value
        return value
