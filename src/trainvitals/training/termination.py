"""SIGTERM (what SLURM, Kubernetes and most schedulers send before killing) ends a run
like Ctrl-C does, but more gently: the current step finishes, then the trainer stops,
writes its final snapshot and report. A second SIGTERM interrupts at once, as Ctrl-C.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any, Iterator

from trainvitals.training.callbacks import StopReason, TrainerCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["SIGTERM_MESSAGE", "stop_on_sigterm"]

SIGTERM_MESSAGE = "terminated by SIGTERM"


class _StopAtStepEnd(TrainerCallback):
    state_key = "trainvitals.sigterm"  # stateless; a fixed key keeps snapshots tidy

    def __init__(self) -> None:
        self.received = 0

    def on_step_end(self, trainer: "Trainer") -> None:
        if self.received:
            trainer.request_stop(StopReason.INTERRUPTED, SIGTERM_MESSAGE)


@contextlib.contextmanager
def stop_on_sigterm(trainer: Any) -> Iterator[None]:
    """While inside, SIGTERM asks `trainer` to stop after the current step."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    watcher = _StopAtStepEnd()

    def handler(signum: int, frame: Any) -> None:
        watcher.received += 1
        if watcher.received > 1:
            raise KeyboardInterrupt

    trainer.callbacks.append(watcher)
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        trainer.callbacks.remove(watcher)
        if watcher.received and trainer.stop_reason is StopReason.INTERRUPTED:
            # a second SIGTERM, or one during validation, ended it through KeyboardInterrupt
            trainer.stop_message = SIGTERM_MESSAGE
