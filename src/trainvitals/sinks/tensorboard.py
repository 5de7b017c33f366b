"""TensorBoard sink: scalars, events as text, and a layout that pairs loss with its EMA."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from trainvitals.events import Event
from trainvitals.sinks.base import SETTINGS_TAG, Sink

__all__ = ["TensorBoardSink", "LAYOUT"]

# The seed recommends plotting step loss and its EMA on one graph.
LAYOUT = {
    "trainvitals": {
        "loss and EMA": ["Multiline", ["train/step_loss", "train/step_loss_ema"]],
        "train vs val (per epoch)": ["Multiline", ["train/epoch_loss", "val/loss"]],
        "mean gain and moving average": ["Multiline", ["gradient_monitor/mean_gain",
                                                       "gradient_monitor/mean_gain_ma",
                                                       "gradient_monitor/mean_gain_all"]],
    }
}


class TensorBoardSink(Sink):
    """Scalars of one step go out as one event holding every value (TensorBoard reads a
    summary with many values as one point per tag), not one event per scalar."""

    def __init__(self, logdir: str | Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=purge_step)
        if purge_step is None:
            self.writer.add_custom_scalars(LAYOUT)
        self._step: int | None = None
        self._values: list[Summary.Value] = []

    def log(self, tag: str, value: float, step: int) -> None:
        if step != self._step:
            self._write()
            self._step = step
        self._values.append(Summary.Value(tag=tag, simple_value=float(value)))

    def _write(self) -> None:
        if self._values:
            self.writer._get_file_writer().add_summary(Summary(value=self._values), self._step)
            self._values = []

    def emit(self, event: Event) -> None:
        lines = [f"**{event.severity}** `{event.kind}` ({event.where()}): {event.message}"]
        lines += [f"- {s}" for s in event.suggestions]
        self.writer.add_text(f"events/{event.kind}", "\n".join(lines), event.step or 0)

    def settings(self, settings: dict[str, Any]) -> None:
        """One text summary at step 0 (tag `run/settings/text_summary`), JSON, read back by `analyze`."""
        self.writer.add_text(SETTINGS_TAG, json.dumps(settings, sort_keys=True), 0)

    def flush(self) -> None:
        self._write()
        self.writer.flush()

    def close(self) -> None:
        self._write()
        self.writer.close()
