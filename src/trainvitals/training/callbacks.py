"""`TrainerCallback`: the hooks, and where each fires in the training loop.

    on_train_begin(ctx)
    for epoch in epochs:
        for each optimizer step:
            on_step_begin(ctx)
            forward + backward (grad_accum_steps micro-batches)
            on_backward_end(ctx)           # gradients present, before clipping and step
            monitor.after_backward()
            clip, optimizer.step(), monitor.step_end(loss)
            on_step_end(ctx)
        validation, monitor.end_epoch(val_loss)
        on_validation_end(ctx, epoch, val_loss)
        on_epoch_end(ctx, epoch, train_loss, val_loss)
    on_train_end(ctx)

Monitoring is not a callback: the trainer drives a `trainvitals.Monitor` at the same
points as any other loop. A hook gets a `LoopContext`, a small view of the run (the
model, the optimizer, the config, the step and epoch, the monitor), and asks the
trainer to stop with `ctx.request_stop(reason, message)`. Stateful callbacks return
their state from `state_dict()`; it is saved in every snapshot under `state_key`,
which must tell two instances of one class apart.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainvitals.monitor.outbox import StopReason

if TYPE_CHECKING:
    import torch

    from trainvitals.config import TrainerConfig
    from trainvitals.monitor.monitor import Monitor
    from trainvitals.training.trainer import Trainer

__all__ = ["TrainerCallback", "LoopContext", "StopReason", "HOOKS"]

HOOKS = ("on_train_begin", "on_step_begin", "on_backward_end", "on_step_end",
         "on_validation_end", "on_epoch_end", "on_train_end")


class LoopContext:
    """What a hook may read of the run, and the one thing it may ask (a stop)."""

    def __init__(self, trainer: "Trainer") -> None:
        self._trainer = trainer

    model = property(lambda self: self._trainer.module)
    optimizer = property(lambda self: self._trainer.optimizer)
    config: "TrainerConfig" = property(lambda self: self._trainer.config)  # type: ignore[assignment]
    monitor: "Monitor" = property(lambda self: self._trainer.monitor)  # type: ignore[assignment]
    global_step = property(lambda self: self._trainer.monitor.step)  # optimizer steps done
    epoch = property(lambda self: self._trainer.monitor.epoch)

    @property
    def lr(self) -> float:
        return self._trainer.optimizer.param_groups[0]["lr"]

    def log(self, tag: str, value: float, step: int | None = None) -> None:
        self._trainer.monitor.log(tag, value, self.global_step if step is None else step)

    def request_stop(self, reason: StopReason, message: str = "") -> None:
        self._trainer.monitor.request_stop(reason, message)


class TrainerCallback:
    """Base class: every hook is a no-op; override the ones you need."""

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def on_train_begin(self, ctx: LoopContext) -> None: ...
    def on_step_begin(self, ctx: LoopContext) -> None: ...
    def on_backward_end(self, ctx: LoopContext) -> None: ...
    def on_step_end(self, ctx: LoopContext) -> None: ...
    def on_validation_end(self, ctx: LoopContext, epoch: int, val_loss: float | None) -> None: ...
    def on_epoch_end(self, ctx: LoopContext, epoch: int, train_loss: float,
                     val_loss: float | None) -> None: ...
    def on_train_end(self, ctx: LoopContext) -> None: ...

    def close(self) -> None:
        """Release hooks and resources; called by the trainer when training ends."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
