"""The hooks fire where callbacks.py documents them, and every documented hook exists."""
import torch
import torch.nn as nn
from test_loss_monitor import Memory

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.training.callbacks import HOOKS, TrainerCallback
from trainvitals.training.trainer import Trainer


class Recorder(TrainerCallback):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name in HOOKS:
            calls = object.__getattribute__(self, "calls")
            return lambda ctx, *args: calls.append((name, ctx.global_step))
        return object.__getattribute__(self, name)


def test_hooks_fire_in_loop_order():
    rec = Recorder()
    cfg = TrainerConfig(epochs=1, log_every=2, progress_bar=False, enable_gradient_monitor=False)
    batches = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
    Trainer(nn.Linear(3, 1), cfg, criterion=nn.functional.mse_loss, callbacks=[rec],
            sinks=SinkHub([Memory()])).fit(batches, batches[:1])
    assert rec.calls == [
        ("on_train_begin", 0),
        ("on_step_begin", 0), ("on_backward_end", 0), ("on_step_end", 1),
        ("on_step_begin", 1), ("on_backward_end", 1), ("on_step_end", 2),
        ("on_step_begin", 2), ("on_backward_end", 2), ("on_step_end", 3),
        ("on_validation_end", 3), ("on_epoch_end", 3),
        ("on_train_end", 3),
    ]
    assert set(HOOKS) == {n for n in vars(TrainerCallback) if n.startswith("on_")}
