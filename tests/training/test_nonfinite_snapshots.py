"""A snapshot is written only with finite parameters, so "the last finite snapshot is
kept" is true, and an epoch whose every step was skipped logs NaN and pushes out nothing."""
import math

import torch
import torch.nn as nn
from test_loss_monitor import Memory

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.training import snapshot as snap
from trainvitals.training.callbacks import StopReason, TrainerCallback
from trainvitals.training.trainer import Trainer


class Console(Memory):
    def __init__(self):
        super().__init__()
        self.lines = []

    def text(self, line):
        self.lines.append(line)


def _batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)) for _ in range(2)]


def _config(tmp_path, **kw):
    return TrainerConfig(steps_per_epoch=2, log_every=1, lr=1e-2, warmup_steps=0, progress_bar=False,
                         enable_gradient_monitor=False, enable_post_epoch_evaluation=False,
                         logdir=str(tmp_path), **kw)


class NaNGradientsOnStep(TrainerCallback):
    """The loss of that step is finite; the update it applies is not."""

    def __init__(self, step):
        self.step = step

    def on_backward_end(self, trainer):
        if trainer.global_step + 1 == self.step:
            for p in trainer.model.parameters():
                p.grad.fill_(math.nan)


def test_stop_keeps_only_finite_snapshots(tmp_path):
    torch.manual_seed(0)
    sink = Console()
    # step 4 ends epoch 1 with a finite training loss but NaN weights (its val loss is NaN)
    t = Trainer(nn.Linear(3, 1), _config(tmp_path, epochs=4, gradient_clip=0.0), criterion=nn.functional.mse_loss,
                callbacks=[NaNGradientsOnStep(4)], sinks=SinkHub([sink]))
    data = _batches()
    assert t.fit(data, data) is StopReason.NONFINITE_LOSS
    assert "the last finite snapshot is kept" in t.stop_message
    assert [s for s, _ in snap.list_snapshots(tmp_path / "snapshots")] == [2]
    latest = snap.read_snapshot(snap.latest_snapshot(tmp_path / "snapshots"))  # what --resume picks
    assert all(torch.isfinite(v).all() for v in latest["model"].values())
    assert any("snapshot at step 4 not written: the parameters are not finite" in line for line in sink.lines)


class NaNLossInEpoch(Trainer):
    def compute_loss(self, batch):
        loss = super().compute_loss(batch)
        return loss * math.nan if self.epoch == 1 else loss


def test_an_all_skipped_epoch_logs_nan_and_pushes_out_no_snapshot(tmp_path):
    torch.manual_seed(0)
    sink = Console()
    t = NaNLossInEpoch(nn.Linear(3, 1), _config(tmp_path, epochs=3, on_nonfinite_loss="skip_step"),
                       criterion=nn.functional.mse_loss, sinks=SinkHub([sink]))
    data = _batches()
    assert t.fit(data, data) is StopReason.COMPLETED
    epoch_loss = dict(sink.scalars["train/epoch_loss"])
    assert math.isfinite(epoch_loss[2]) and math.isnan(epoch_loss[4]) and math.isfinite(epoch_loss[6])
    assert [s for s, _ in snap.list_snapshots(tmp_path / "snapshots")] == [2, 6]
