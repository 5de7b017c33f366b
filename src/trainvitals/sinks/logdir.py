"""The sinks of a run directory: TensorBoard event files and `metrics.jsonl` in it, and
the console; the directory is claimed for one run (`trainvitals.training.rundir`).
`purge_step` (a resumed run): what was logged from that step on is dropped, so no step
appears twice."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from trainvitals.errors import RunDirError
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.sinks.console import ConsoleSink
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.training.rundir import RunDir

__all__ = ["JSONL_NAME", "open_sinks", "loop_sinks"]

JSONL_NAME = "metrics.jsonl"


def open_sinks(logdir: str | Path, purge_step: int | None = None, progress_bar: bool = False,
               total: int | None = None, console: bool = True) -> SinkHub:
    from trainvitals.sinks.tensorboard import TensorBoardSink  # a slow import: only with a logdir
    Path(logdir).mkdir(parents=True, exist_ok=True)
    sinks = [TensorBoardSink(logdir, purge_step=purge_step),
             JSONLSink(Path(logdir) / JSONL_NAME, purge_step=purge_step)]
    return SinkHub(sinks + ([ConsoleSink(progress_bar=progress_bar, total=total)] if console else []))


def loop_sinks(logdir: str | Path | None, resumed_at: int | None, console: bool,
               extra: Sequence[Sink]) -> tuple[SinkHub, RunDir | None]:
    """A `Monitor`'s sinks: the console (unless `console=False` or one is in `extra`),
    `extra`, and with `logdir` its TensorBoard and JSONL, the directory claimed for this
    run (`resumed_at`: the step of the state a resumed run continues from)."""
    console = console and not any(isinstance(s, ConsoleSink) for s in extra)
    if logdir is None:
        return SinkHub(([ConsoleSink()] if console else []) + list(extra)), None
    rundir = RunDir(logdir)
    hint = f"Monitor(..., logdir={str(logdir)!r}, resume=<the monitor's state_dict() from your checkpoint>)"
    notes = rundir.claim(resume=resumed_at is not None, how_to_resume=hint)
    try:
        hub = open_sinks(logdir, purge_step=resumed_at + 1 if resumed_at is not None else None, console=console)
    except OSError as e:
        rundir.release()
        raise RunDirError(f"logdir={str(logdir)!r}: cannot write the logs ({e.strerror or e}); "
                          f"give a writable logdir") from None
    hub.sinks += extra
    for line in notes:
        hub.text(line)
    return hub, rundir
