"""One tiny LM, one batch stream, and a runner per host: our Trainer, a plain loop on
`Monitor`, HF `transformers.Trainer` and Lightning, each with the real library."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals.analyze.readers import read_run
from trainvitals.config import TrainerConfig
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training.trainer import Trainer

STEPS, BATCH, LR = 40, 8, 3e-3
MODEL = GPTConfig(n_layers=3, d_model=32, n_heads=2, block_size=16, dropout=0.0)


class TinyLM(nn.Module):
    """Our byte GPT behind the call HF and Lightning make: `model(input_ids=..., labels=...)`.
    Training forwards whose number is in `blow_up` return the loss times 1e4."""

    def __init__(self, blow_up=()) -> None:
        super().__init__()
        self.gpt = GPT(MODEL)
        self.blow_up, self.forwards = set(blow_up), 0

    def forward(self, input_ids, labels):
        logits = self.gpt(input_ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
        if self.training and torch.is_grad_enabled():
            self.forwards += 1
            if self.forwards in self.blow_up:
                loss = loss * 1e4
        return {"loss": loss, "logits": logits}


def model(blow_up=()) -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(blow_up)


def batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, 64, (STEPS * BATCH, MODEL.block_size + 1), generator=g)  # 64 symbols of 256
    return [{"input_ids": b[:, :-1], "labels": b[:, 1:]} for b in text.split(BATCH)]


def optimizer(m: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=0.0)


class Memory(Sink):
    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}

    def log(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((step, value))


def gains(scalars: dict[str, list[tuple[int, float]]]) -> dict[int, list[float]]:
    """step -> the block gains in block order, whatever the host named the blocks."""
    tags = sorted((t for t in scalars if t.startswith("gradient_monitor/gain/")),
                  key=lambda t: int(t.rsplit(".", 1)[-1]))
    out: dict[int, list[float]] = {}
    for t in tags:
        for step, value in scalars[t]:
            out.setdefault(step, []).append(value)
    return out


# --- the hosts: each returns (events, scalars) -------------------------------------------------
def run_trainer(blow_up=(), tmp_path: Path | None = None):
    class DictTrainer(Trainer):
        def compute_loss(self, batch):
            return self.model(**batch)["loss"]
    m, mem = model(blow_up), Memory()
    cfg = TrainerConfig(epochs=1, lr=LR, warmup_steps=0, lr_schedule="constant", gradient_clip=0.0,
                        weight_decay=0.0, device="cpu", progress_bar=False)
    t = DictTrainer(m, cfg, optimizer=optimizer(m), sinks=SinkHub([mem]))
    t.fit(batches())
    return t.monitor.events, mem.scalars


def run_plain_loop(blow_up=(), tmp_path: Path | None = None):
    m, mem = model(blow_up), Memory()
    opt = optimizer(m)
    monitor = Monitor(m, opt, MonitorConfig(), sinks=SinkHub([mem]))
    for batch in batches():
        loss = m(**batch)["loss"]
        loss.backward()
        monitor.after_backward()
        opt.step()
        opt.zero_grad()
        monitor.step_end(loss)
    monitor.end_epoch()
    monitor.close()
    return monitor.events, mem.scalars


def run_hf(blow_up=(), tmp_path: Path | None = None, config: MonitorConfig | None = None):
    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments

    from trainvitals.integrations.transformers import TrainvitalsCallback

    class Stream(torch.utils.data.IterableDataset):  # in order, as the other hosts see it
        def __iter__(self):
            for b in batches():
                yield from ({"input_ids": x, "labels": y} for x, y in zip(b["input_ids"], b["labels"]))

    m = model(blow_up)
    opt = optimizer(m)
    args = TrainingArguments(str(tmp_path / "hf"), max_steps=STEPS, per_device_train_batch_size=BATCH,
                             max_grad_norm=0.0, report_to=["tensorboard"], use_cpu=True, save_strategy="no",
                             logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)
    cb = TrainvitalsCallback(config)
    trainer = HFTrainer(model=m, args=args, train_dataset=Stream(), callbacks=[cb],
                        optimizers=(opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)))
    trainer.train()
    (run_dir,) = (tmp_path / "hf" / "runs").iterdir()
    return cb.events, read_run(run_dir).series


def run_lightning(blow_up=(), tmp_path: Path | None = None, config: MonitorConfig | None = None):
    import lightning.pytorch as L

    from trainvitals.integrations.lightning import TrainvitalsCallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model(blow_up)

        def training_step(self, batch, i):
            return self.model(**batch)["loss"]

        def configure_optimizers(self):
            return optimizer(self)

    cb = TrainvitalsCallback(config)
    loader = torch.utils.data.DataLoader(batches(), batch_size=None)
    trainer = L.Trainer(max_steps=STEPS, callbacks=[cb], default_root_dir=str(tmp_path / "pl"),
                        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(Module(), loader)
    return cb.events, read_run(trainer.logger.log_dir).series


HOSTS = {"trainer": run_trainer, "plain loop": run_plain_loop, "hf": run_hf, "lightning": run_lightning}


def alerts(events) -> list[tuple[str, int]]:
    return [(e.kind, e.step) for e in events if e.severity == "alert"]


def finite(x: float) -> bool:
    return math.isfinite(x)
