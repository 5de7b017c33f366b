"""Trainer features a user relies on: accumulation, bf16, TOML config, the TB layout, stopping."""
import torch
import torch.nn as nn
from helpers import TINY, run_cli, tb_scalars
from test_loss_monitor import Memory

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.training.callbacks import StopReason, TrainerCallback
from trainvitals.training.trainer import Trainer


def _linear_after_one_step(batches, accum):
    torch.manual_seed(0)
    cfg = TrainerConfig(epochs=1, grad_accum_steps=accum, lr=0.1, warmup_steps=0, gradient_clip=0.0,
                        weight_decay=0.0, progress_bar=False, enable_gradient_monitor=False,
                        enable_post_epoch_evaluation=False)
    t = Trainer(nn.Linear(3, 1), cfg, criterion=nn.functional.mse_loss, sinks=SinkHub([Memory()]))
    t.fit(batches)
    return t.model.weight.detach().clone(), t.global_step


def test_gradient_accumulation_equals_the_big_batch():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)
    w_acc, steps_acc = _linear_after_one_step([(x[:4], y[:4]), (x[4:], y[4:])], accum=2)
    w_big, steps_big = _linear_after_one_step([(x, y)], accum=1)
    assert steps_acc == steps_big == 1
    torch.testing.assert_close(w_acc, w_big, rtol=1e-6, atol=1e-7)


def test_a_callback_can_stop_the_run_with_a_reason():
    class StopAt3(TrainerCallback):
        def on_step_end(self, trainer):
            if trainer.global_step == 3:
                trainer.request_stop(StopReason.CALLBACK, "enough")

    cfg = TrainerConfig(epochs=2, progress_bar=False, enable_gradient_monitor=False)
    t = Trainer(nn.Linear(3, 1), cfg, criterion=nn.functional.mse_loss, callbacks=[StopAt3()],
                sinks=SinkHub([Memory()]))
    batches = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(10)]
    assert t.fit(batches) is StopReason.CALLBACK and t.stop_message == "enough" and t.global_step == 3


def test_bf16_toml_config_and_loss_ema_layout(tmp_path):
    conf = tmp_path / "run.toml"
    conf.write_text('precision = "bf16"\nmax_steps = 12\nepochs = 1\nsteps_per_epoch = 6\nlr = 3e-3\n')
    run_cli("train-lm", *TINY, "--config", str(conf), "--logdir", str(tmp_path / "run"), "--epochs", "2")
    tb = tb_scalars(tmp_path / "run")
    assert len(tb["train/step_loss"]) == 12, "flags override the file (epochs 2 x 6 steps)"
    assert all(v == v for _, v in tb["train/step_loss"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0})
    acc.Reload()
    raw = acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    layout = layout_pb2.Layout.FromString(raw)
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts["loss and EMA"] == ["train/step_loss", "train/step_loss_ema"]
