"""`TrainvitalsCallback` for PyTorch Lightning: one line to add.

    trainer = L.Trainer(..., callbacks=[TrainvitalsCallback()])

Where each part comes from in Lightning's loop (lightning 2.x):

| what | where |
|---|---|
| block gains | tensor hooks on the blocks' inputs and outputs during a monitored step's backward |
| grad norms, non-finite gradients, weight-update snapshot | `on_before_optimizer_step`: unscaled (AMP), not yet clipped; inside `optimizer.step(closure)` under automatic optimization, which the weight-update probe handles |
| step loss | `outputs["loss"]` of `on_train_batch_end` (divided by `accumulate_grad_batches`), summed over the step's batches |
| validation loss | `trainer.callback_metrics[val_loss_key]` (default `"val_loss"`, what you `self.log`) after validation: the epoch's evaluation at its end, an evaluation at its step mid-epoch (`val_check_interval`) |
| stop | `trainer.should_stop` |

Scalars go to every logger of the trainer (`logger.log_metrics`, one call per step),
events to the console too, from global rank zero only. The state is saved in the
checkpoint's `callbacks` under `state_key`. `reduce_lr` actions name the value to set
(a callback does not own the schedule); `on_nonfinite_loss="skip_step"` is not
available here.
"""
from __future__ import annotations

import json
import math
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError(f"trainvitals.integrations.lightning needs lightning ({e}): "
                      f"pip install 'trainvitals[lightning]'") from None

from trainvitals.events import Event
from trainvitals.integrations._common import StepLoss, callback_config
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SETTINGS_TAG, Sink, SinkHub
from trainvitals.sinks.console import ConsoleSink

__all__ = ["TrainvitalsCallback"]


class TrainvitalsCallback(pl.Callback):
    def __init__(self, config: MonitorConfig | dict[str, Any] | None = None, val_loss_key: str = "val_loss",
                 blocks: Any = None) -> None:
        self.config = callback_config(config, "Lightning")
        self.val_loss_key, self.blocks = val_loss_key, blocks
        self.monitor: Monitor | None = None
        self._saved: dict[str, Any] | None = None
        self._loss = StepLoss()
        self._last_step = 0
        self._epoch_val: tuple = ()  # the val loss of the validation at the epoch's end, for end_epoch

    @property
    def state_key(self) -> str:
        return self._generate_state_key(val_loss_key=self.val_loss_key)

    @property
    def events(self) -> list[Event]:
        """Every event raised so far, in order."""
        return self.monitor.events if self.monitor is not None else []

    # --- Lightning's hooks ---------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sinks = SinkHub([_LoggerSink(trainer), ConsoleSink(progress_bar=False)]) if trainer.is_global_zero \
            else SinkHub()
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        clip = trainer.gradient_clip_val
        # what bounds the run, in neutral names (advice says "Train longer: max_epochs 5 → 10")
        length = {"max_steps": trainer.max_steps} if trainer.max_steps > 0 else \
            {"epochs": trainer.max_epochs} if trainer.max_epochs and trainer.max_epochs > 0 else {}
        length["host"] = "lightning"
        self.monitor = Monitor(pl_module, optimizer, self.config, blocks=self.blocks, sinks=sinks,
                               run_info={**length, **({"gradient_clip": float(clip)} if clip else {})},
                               can_set_lr=False)
        self.monitor.total_steps = trainer.max_steps if trainer.max_steps > 0 else None
        if self._saved is not None:
            self.monitor.load_state_dict(self._saved)
        self._last_step = trainer.global_step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.monitor is not None:
            self.monitor.after_backward()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.monitor is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._loss.add(loss)
        if trainer.global_step == self._last_step:
            return  # an accumulation micro-batch: the optimizer has not stepped
        self._last_step = trainer.global_step
        step_loss = self._loss.take(mean=False)  # Lightning divided each by accumulate_grad_batches
        # Lightning's own count, so our steps are its steps even on a checkpoint we did not write
        self.monitor.step_end(step_loss if step_loss is not None else math.nan, step=trainer.global_step)
        if self.monitor.stop_reason is not None:
            trainer.should_stop = True

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.val_loss_key)
        if getattr(trainer, "is_last_batch", False):  # the epoch's own validation: it ends the epoch
            self._epoch_val = (value,)
            return
        self.monitor.evaluate(value, epoch=trainer.current_epoch)  # val_check_interval: mid-epoch
        if self.monitor.stop_reason is not None:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.monitor is None:
            return
        self.monitor.end_epoch(*self._epoch_val)
        self._epoch_val = ()
        if self.monitor.stop_reason is not None:
            trainer.should_stop = True

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self._saved = self.monitor.state_dict()
            self.monitor.close()

    # --- checkpoint state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict() if self.monitor is not None else self._saved}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved = state_dict.get("monitor")
        if self.monitor is not None and self._saved is not None:
            self.monitor.load_state_dict(self._saved)


class _LoggerSink(Sink):
    """Scalars to every logger of a Lightning trainer, one `log_metrics` call per step."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer
        self._step: int | None = None
        self._metrics: dict[str, float] = {}

    def log(self, tag: str, value: float, step: int) -> None:
        if step != self._step:
            self.flush()
            self._step = step
        self._metrics[tag] = value

    def settings(self, settings: dict[str, Any]) -> None:
        """The run's settings once: a TensorBoard logger gets the `run/settings` text that
        `analyze` reads back; any other logger gets them as hyperparameters."""
        for logger in self.trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if hasattr(writer, "add_text"):
                writer.add_text(SETTINGS_TAG, json.dumps(settings, sort_keys=True), 0)
            else:
                logger.log_hyperparams(settings)

    def flush(self) -> None:
        if self._metrics:
            for logger in self.trainer.loggers:
                logger.log_metrics(self._metrics, step=self._step)
        self._metrics = {}

    def close(self) -> None:
        self.flush()
