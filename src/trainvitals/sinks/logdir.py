"""The sinks of a run directory: TensorBoard event files and `metrics.jsonl` in it, and
the console. `purge_step` (a resumed run): what was logged from that step on is dropped,
so no step appears twice."""
from __future__ import annotations

from pathlib import Path

from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.console import ConsoleSink
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.sinks.tensorboard import TensorBoardSink

__all__ = ["JSONL_NAME", "open_sinks"]

JSONL_NAME = "metrics.jsonl"


def open_sinks(logdir: str | Path, purge_step: int | None = None, progress_bar: bool = False,
               total: int | None = None, console: bool = True) -> SinkHub:
    Path(logdir).mkdir(parents=True, exist_ok=True)
    sinks = [TensorBoardSink(logdir, purge_step=purge_step),
             JSONLSink(Path(logdir) / JSONL_NAME, purge_step=purge_step)]
    return SinkHub(sinks + ([ConsoleSink(progress_bar=progress_bar, total=total)] if console else []))
