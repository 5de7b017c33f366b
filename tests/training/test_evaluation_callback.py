"""Enhancement 3 in the trainer: the report block, evaluation/* tags, and auto_adjust."""
import torch
import torch.nn as nn
from test_loss_monitor import Memory, data

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training.callbacks import TrainerCallback
from trainvitals.training.trainer import LanguageModelTrainer, Trainer


class Printed(Memory):
    def __init__(self):
        super().__init__()
        self.lines = []

    def text(self, line):
        self.lines.append(line)


def test_plateau_with_auto_adjust_halves_the_lr(tmp_path):
    torch.manual_seed(0)
    mem = Printed()
    # An LR so small nothing moves: val loss is flat, a plateau by epoch 2. The MSE of random
    # batches wavers past the early-loss checks, which auto_adjust would answer with a rollback
    # (tests/monitor/test_rollback.py): they are set out of reach here.
    cfg = TrainerConfig(epochs=5, lr=1e-9, warmup_steps=0, lr_schedule="constant", progress_bar=False,
                        enable_gradient_monitor=False, auto_adjust=True, evaluation_epochs=[2, 3, 4],
                        early_loss_rise=100.0, early_loss_jump=100.0)
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


def test_a_run_of_many_short_epochs_that_overfits_is_told_after_epoch_3():
    """2-step epochs of a tiny LM on 8 sequences of 16 symbols: the val loss is best at
    epoch 5, then climbs while the train loss falls. The checks run at every epoch, not
    only at `evaluation_epochs` (2, 3); the climb well above the best is an alert."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 16, (10, 17), generator=torch.Generator().manual_seed(0))
    train = [(tokens[i:i + 4, :-1], tokens[i:i + 4, 1:]) for i in (0, 4)]
    val = [(tokens[8:, :-1], tokens[8:, 1:])]
    mem = Printed()
    cfg = TrainerConfig(epochs=20, lr=6e-3, warmup_steps=0, lr_schedule="constant", progress_bar=False,
                        enable_gradient_monitor=False, weight_decay=0.0)
    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layers=2, n_heads=2, d_model=32))
    LanguageModelTrainer(model, cfg, sinks=SinkHub([mem])).fit(train, val)
    val_loss = [v for _, v in mem.scalars["val/loss"]]
    best = val_loss.index(min(val_loss))
    found = [(e.kind, e.severity, e.epoch) for e in mem.events if e.source == "evaluation"]
    assert best > 3 and ("overfitting", "warning", best + 1) in found, (best, found)
    # the alert: the first epoch ending a run of 3 at more than 10% above the best
    above = [i for i, v in enumerate(val_loss) if i > best and v > 1.1 * val_loss[best]]
    assert [f for f in found if f[1] == "alert"] == [("val_loss_above_best", "alert", above[2])]
    assert above[:3] == [above[0], above[0] + 1, above[0] + 2]
    text = "\n".join(mem.lines)
    assert f"POST-EPOCH EVALUATION (Epoch {best + 1})" in text  # the seed's naming: epochs
    assert f"Stop early: keep the snapshot from epoch {best}" in text
