"""Live advice names the LR the user set, wherever the Monitor is hosted: our Trainer
(its config) and a plain loop (a torch scheduler's `initial_lr`), with the LR now
beside it in warmup; and the Monitor writes the run's settings once."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals.config import TrainerConfig
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.signals.advice import fmt_lr
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training.trainer import Trainer

PEAK, WARMUP, STEPS, SPIKE = 2e-3, 100, 40, 30  # the demo's lr and warmup; a bad batch at step 30
MODEL = GPTConfig(n_layers=2, d_model=32, n_heads=2, block_size=16, dropout=0.0)


class _LM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gpt, self.forwards = GPT(MODEL), 0

    def forward(self, x, y):
        loss = F.cross_entropy(self.gpt(x).flatten(0, 1), y.flatten())
        if self.training and torch.is_grad_enabled():
            self.forwards += 1
            if self.forwards == SPIKE:
                loss = loss * 1e4
        return loss


def _batches():
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 64, (STEPS * 8, MODEL.block_size + 1), generator=g)
    return [(b[:, :-1], b[:, 1:]) for b in text.split(8)]


class _Memory(Sink):
    def __init__(self) -> None:
        self.scalars, self.settings_seen = {}, []

    def log(self, tag, value, step):
        self.scalars.setdefault(tag, {})[step] = value

    def settings(self, settings):
        self.settings_seen.append(settings)


def _spike(events):
    (spike,) = [e for e in events if e.kind == "loss_spike" and e.severity == "alert"]
    return spike


def test_trainer_advice_in_warmup_names_the_configured_lr_and_the_lr_now():
    class LMTrainer(Trainer):
        def compute_loss(self, batch):
            return self.model(*batch)
    mem = _Memory()
    cfg = TrainerConfig(epochs=1, lr=PEAK, warmup_steps=WARMUP, gradient_clip=1.0, device="cpu",
                        progress_bar=False)
    t = LMTrainer(_LM(), cfg, sinks=SinkHub([mem]))
    t.fit(_batches())
    now = mem.scalars["train/lr"][SPIKE]
    assert now < PEAK  # still warming up at the spike
    spike = _spike(t.monitor.events)
    assert spike.step == SPIKE
    assert spike.suggestions[:2] == (f"Reduce learning rate: 2.0e-03 → 1.0e-03 (now {fmt_lr(now)}, in warmup)",
                                     "Tighten gradient clipping: 1.0 → 0.7")
    (settings,) = mem.settings_seen  # once
    assert {k: settings[k] for k in ("lr", "warmup_steps", "gradient_clip", "num_layers")} == \
        {"lr": PEAK, "warmup_steps": WARMUP, "gradient_clip": 1.0, "num_layers": MODEL.n_layers}


def test_plain_loop_takes_the_peak_from_the_torch_scheduler():
    m, mem = _LM(), _Memory()
    opt = torch.optim.AdamW(m.parameters(), lr=PEAK)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))  # sets initial_lr
    monitor = Monitor(m, opt, MonitorConfig(), sinks=SinkHub([mem]), run_info={"warmup_steps": WARMUP})
    for x, y in _batches():
        loss = m(x, y)
        loss.backward()
        monitor.after_backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        monitor.step_end(loss)
    monitor.close()
    now = mem.scalars["train/lr"][SPIKE]
    assert _spike(monitor.events).suggestions[0] == \
        f"Reduce learning rate: 2.0e-03 → 1.0e-03 (now {fmt_lr(now)}, in warmup)"
    assert mem.settings_seen == [{"lr": PEAK, "num_layers": MODEL.n_layers, "warmup_steps": WARMUP,
                                  "weight_decay": 0.01}]
