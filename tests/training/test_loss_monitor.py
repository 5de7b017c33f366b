"""Enhancement 1 in the trainer: the EMA tag, its switch, and the non-finite loss policies."""
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.training.callbacks import StopReason, TrainerCallback
from trainvitals.training.trainer import Trainer


class Memory(Sink):
    def __init__(self):
        self.scalars, self.events = {}, []

    def log(self, tag, value, step):
        self.scalars.setdefault(tag, []).append((step, value))

    def emit(self, event):
        self.events.append(event)


class ParamTrace(TrainerCallback):
    def __init__(self):
        self.after = []

    def on_step_end(self, trainer):
        self.after.append(trainer.model.weight.detach().clone())


def data(n=12, bad_at=None):
    g = torch.Generator().manual_seed(0)
    batches = []
    for i in range(n):
        x = torch.randn(8, 4, generator=g)
        if i == bad_at:
            x[0, 0] = float("inf")
        batches.append((x, x.sum(1, keepdim=True)))
    return batches


def make(tmp_path=None, callbacks=(), **cfg):
    torch.manual_seed(0)
    memory = Memory()
    config = TrainerConfig(epochs=1, lr=1e-2, warmup_steps=0, log_every=4, progress_bar=False,
                           enable_gradient_monitor=False, enable_post_epoch_evaluation=False,
                           logdir=str(tmp_path) if tmp_path else "", **cfg)
    t = Trainer(nn.Linear(4, 1), config, criterion=nn.functional.mse_loss, callbacks=callbacks,
                sinks=SinkHub([memory]))
    return t, memory


def test_ema_tag_matches_pandas_for_every_step():
    t, mem = make(ema_alpha=0.9)
    t.fit(data())
    raw = [v for _, v in mem.scalars["train/step_loss"]]
    ema = mem.scalars["train/step_loss_ema"]
    assert [s for s, _ in ema] == list(range(1, 13))
    expected = pd.Series(raw).ewm(alpha=0.1, adjust=True).mean().tolist()
    assert [v for _, v in ema] == pytest.approx(expected, rel=1e-12)
    assert ema[0][1] == raw[0]


def test_disabling_the_ema_removes_the_tag_and_nothing_else():
    on, mem_on = make()
    on.fit(data())
    off, mem_off = make(enable_ema_loss=False)
    off.fit(data())
    assert "train/step_loss_ema" not in mem_off.scalars
    assert set(mem_on.scalars) - set(mem_off.scalars) == {"train/step_loss_ema"}
    assert mem_on.scalars["train/step_loss"] == mem_off.scalars["train/step_loss"]


def test_stop_policy_stops_and_keeps_the_last_finite_snapshot(tmp_path):
    t, mem = make(tmp_path, on_nonfinite_loss="stop")
    t.save_snapshot()  # the state before training
    assert t.fit(data(bad_at=5)) is StopReason.NONFINITE_LOSS
    alerts = [e for e in mem.events if e.kind == "nonfinite_loss" and e.severity == "alert"]
    assert len(alerts) == 1 and alerts[0].step == 6
    assert t.global_step < 12
    ema = [v for _, v in mem.scalars["train/step_loss_ema"]]
    assert all(math.isfinite(v) for v in ema)
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == ["step_0000000.pt"]


def test_skip_step_policy_does_not_apply_the_bad_step():
    trace = ParamTrace()
    t, mem = make(on_nonfinite_loss="skip_step", callbacks=[trace])
    assert t.fit(data(bad_at=5)) is StopReason.COMPLETED
    assert torch.equal(trace.after[5], trace.after[4]), "step 6 (batch 5) was applied"
    assert not torch.equal(trace.after[6], trace.after[5])
    assert torch.isfinite(t.model.weight).all()
    assert [e.step for e in mem.events if e.kind == "nonfinite_loss" and e.severity == "alert"] == [6]


def test_warn_policy_reports_and_goes_on():
    t, mem = make(on_nonfinite_loss="warn", gradient_clip=0.0)
    assert t.fit(data(bad_at=5)) is StopReason.COMPLETED
    assert t.global_step == 12
    kinds = [(e.kind, e.severity) for e in mem.events]
    assert ("nonfinite_loss", "alert") in kinds
