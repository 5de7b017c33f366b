"""Where scalars and events go: `SinkHub` fans them out to its sinks.

`ConsoleSink` (events and reports as text), `JSONLSink` (one JSON record a line),
`TensorBoardSink` (event files), `Sink` (do-nothing base for your own), and
`open_sinks(logdir)`: the three of a run directory, as `Monitor(..., logdir=...)` and
the `train-*` commands write them.
"""
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.sinks.console import ConsoleSink
from trainvitals.sinks.jsonl import JSONLSink

__all__ = ["Sink", "SinkHub", "ConsoleSink", "JSONLSink", "TensorBoardSink", "open_sinks", "JSONL_NAME"]


def __getattr__(name: str):  # TensorBoard's writer is a slow import: only when asked for
    if name == "TensorBoardSink":
        from trainvitals.sinks.tensorboard import TensorBoardSink
        return TensorBoardSink
    if name in ("open_sinks", "JSONL_NAME"):
        from trainvitals.sinks import logdir
        return getattr(logdir, name)
    raise AttributeError(f"module 'trainvitals.sinks' has no attribute {name!r}")
