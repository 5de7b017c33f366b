"""`TrainerCallback`: the hooks, and where each fires in the training loop.

    on_train_begin(trainer)
    for epoch in epochs:
        for each optimizer step:
            on_step_begin(trainer)
            forward + backward (grad_accum_steps micro-batches)
            on_backward_end(trainer)       # gradients present, before clipping and step
            clip, optimizer.step()
            on_step_end(trainer)
            every log_every steps, one host sync:
                on_step_losses(trainer, steps, losses)   # host floats, every step
        validation
        on_validation_end(trainer, epoch, val_loss)
        on_epoch_end(trainer, epoch, train_loss, val_loss)
    on_train_end(trainer)

A callback asks the trainer to stop with `trainer.request_stop(reason, message)`.
Stateful callbacks return their state from `state_dict()`; it is saved in every
snapshot under `state_key`, which must tell two instances of one class apart.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["TrainerCallback", "StopReason", "HOOKS"]

HOOKS = ("on_train_begin", "on_step_begin", "on_backward_end", "on_step_end", "on_step_losses",
         "on_validation_end", "on_epoch_end", "on_train_end")


class StopReason(str, enum.Enum):
    """Why training stopped."""
    COMPLETED = "completed"  # the planned epochs / max_steps are done
    NONFINITE_LOSS = "nonfinite_loss"
    GAIN_ALERT = "gain_alert"
    EARLY_STOPPING = "early_stopping"
    CALLBACK = "callback"
    INTERRUPTED = "interrupted"


class TrainerCallback:
    """Base class: every hook is a no-op; override the ones you need."""

    @property
    def state_key(self) -> str:
        return type(self).__qualname__

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_step_begin(self, trainer: "Trainer") -> None: ...
    def on_backward_end(self, trainer: "Trainer") -> None: ...
    def on_step_end(self, trainer: "Trainer") -> None: ...
    def on_step_losses(self, trainer: "Trainer", steps: list[int], losses: list[float]) -> None: ...
    def on_validation_end(self, trainer: "Trainer", epoch: int, val_loss: float | None) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int, train_loss: float,
                     val_loss: float | None) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...

    def close(self) -> None:
        """Release hooks and resources; called by the trainer when training ends."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
