"""Enhancement 3 in the trainer: the report block, evaluation/* tags, and auto_adjust."""
import torch
import torch.nn as nn
from test_loss_monitor import Memory, data

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.training.callbacks import TrainerCallback
from trainvitals.training.trainer import Trainer


class Printed(Memory):
    def __init__(self):
        super().__init__()
        self.lines = []

    def text(self, line):
        self.lines.append(line)


def test_plateau_with_auto_adjust_halves_the_lr(tmp_path):
    torch.manual_seed(0)
    mem = Printed()
    # An LR so small nothing moves: val loss is flat, a plateau by epoch 2.
    cfg = TrainerConfig(epochs=5, lr=1e-9, warmup_steps=0, lr_schedule="constant", progress_bar=False,
                        enable_gradient_monitor=False, auto_adjust=True, evaluation_epochs=[2, 3, 4])
    trainer = Trainer(nn.Linear(4, 1), cfg, criterion=nn.functional.mse_loss, sinks=SinkHub([mem]))
    lrs = []

    class LRTrace(TrainerCallback):
        def on_epoch_end(self, t, *args):
            lrs.append(t.lr)

    trainer.callbacks.append(LRTrace())
    trainer.fit(data(6), data(3))
    actions = [e for e in mem.events if e.kind == "action"]
    assert actions, [e.kind for e in mem.events]
    assert "learning rate 1.0e-09 → 5.0e-10" in actions[0].message
    cut_epoch = actions[0].epoch
    assert lrs[cut_epoch + 1] == lrs[cut_epoch] / 2
    assert "evaluation/plateau_detected" in mem.scalars
    text = "\n".join(mem.lines)
    assert "POST-EPOCH EVALUATION (Epoch 2)" in text and "plateau" in text.lower()


def test_no_validation_says_it_cannot_evaluate():
    mem = Printed()
    cfg = TrainerConfig(epochs=3, lr=1e-2, warmup_steps=0, progress_bar=False, enable_gradient_monitor=False)
    Trainer(nn.Linear(4, 1), cfg, criterion=nn.functional.mse_loss, sinks=SinkHub([mem])).fit(data(4))
    assert any("Cannot evaluate (no validation loss)" in line for line in mem.lines)
