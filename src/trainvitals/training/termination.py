"""SIGTERM (what SLURM, Kubernetes and most schedulers send before killing) ends a run
like Ctrl-C does, but more gently: the current step finishes, then the trainer stops,
writes its final snapshot and report. A second SIGTERM interrupts at once, as Ctrl-C.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from trainvitals.monitor.outbox import StopReason

__all__ = ["SIGTERM_MESSAGE", "stop_on_sigterm"]

SIGTERM_MESSAGE = "terminated by SIGTERM"


@contextlib.contextmanager
def stop_on_sigterm(trainer: Any) -> Iterator[None]:
    """While inside, SIGTERM asks `trainer` to stop after the current step (the loop checks
    the stop reason before each step); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    received = 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal received
        received += 1
        trainer.request_stop(StopReason.INTERRUPTED, SIGTERM_MESSAGE)  # the first reason given stays
        if received > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
