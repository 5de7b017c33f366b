"""`Trainer`: the training loop, its snapshots, and a `Monitor` driven at the loop's points.

The monitor keeps step losses and measurements on the device and moves them to the
host once every `log_every` steps, when every step is logged with its own step number:
the hot path never waits on the device. User callbacks (callbacks.py says where each
hook fires) get a small `LoopContext`, not the trainer.

Under torchrun (a process group made, e.g. by `distributed.init_from_env`) the model is
wrapped in DDP, accumulation micro-steps run under `no_sync`, each batch is the global
one and this rank trains on its rows (`distributed.shard_rows`), validation losses are
reduced, and rank 0 alone writes snapshots, holding every rank's RNG state.
"""
from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals import distributed as dist
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError
from trainvitals.monitor.monitor import Monitor
from trainvitals.monitor.rollback import FILE_NAME
from trainvitals.sinks.base import SinkHub
from trainvitals.training import snapshot as snap
from trainvitals.training.callbacks import LoopContext, StopReason, TrainerCallback
from trainvitals.training.devices import rows as count_rows
from trainvitals.training.devices import select_device, to_device
from trainvitals.training.rng import rng_state, set_rng_state
from trainvitals.training.schedule import lr_at

__all__ = ["Trainer", "LanguageModelTrainer", "select_device"]


class Trainer:
    """Trains `model` with AdamW, warmup + cosine LR, clipping, accumulation and autocast.

    `criterion(output, target)` computes the loss of a batch `(input, target)`; subclasses
    may override `compute_loss(batch)` instead. What is monitored follows `config` (its
    `MonitorConfig` fields); `blocks` names the model's blocks when they cannot be found.
    `module` is the model itself; `model` is what the loop calls: the same, or its DDP
    wrapper under torch.distributed (call it in `compute_loss`, so gradients are reduced).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        callbacks: Iterable[TrainerCallback] = (),
        sinks: SinkHub | None = None,
        model_config: Any = None,
        run_info: dict[str, Any] | None = None,
        blocks: Sequence[tuple[str, nn.Module]] | None = None,
    ) -> None:
        self.config = config
        self.device = select_device(config.device)
        self.module = model.to(self.device)
        self.model = self.module
        if dist.active():
            # buffers are not broadcast: a forward then holds no collective (validation shards
            # may differ in their number of batches)
            self.model = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        self.criterion = criterion
        self.optimizer = optimizer or self._default_optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.model_config = model_config
        self.run_info = dict(run_info or {})
        self.sinks = sinks or SinkHub()
        facts = {"lr": config.lr, "weight_decay": config.weight_decay, "warmup_steps": config.warmup_steps,
                 "scheduler": config.lr_schedule, **_run_length(config),
                 "gradient_clip": config.gradient_clip}
        self.monitor = Monitor(self.module, self.optimizer, config, blocks=blocks, sinks=self.sinks,
                               run_info={**facts, **self.run_info})
        if self.monitor.rollback is not None:  # auto_adjust: rollbacks.json, and snapshots to fall back on
            self.monitor.rollback.path = Path(config.logdir) / FILE_NAME if config.logdir else None
            self.monitor.rollback.disk = lambda: snap.list_snapshots(self.snapshot_dir) if self.snapshot_dir else []
        self.batch_in_epoch = 0  # optimizer steps done in the current epoch
        self.best_val: float | None = None
        self.total_steps: int | None = config.planned_steps
        self.last_val_loss: float | None = None
        self.callbacks = list(callbacks)
        self.ctx = LoopContext(self)
        keys = [cb.state_key for cb in self.callbacks]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup:
            raise ConfigError(f"callbacks: two callbacks share state_key={dup!r}; give one a distinct state_key")

    # --- public API ----------------------------------------------------------------
    @property
    def global_step(self) -> int:
        """Optimizer steps done; step s is logged at s (1-based)."""
        return self.monitor.step

    @property
    def epoch(self) -> int:
        return self.monitor.epoch

    @property
    def stop_reason(self) -> StopReason | None:
        return self.monitor.stop_reason

    @property
    def stop_message(self) -> str:
        return self.monitor.stop_message

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def snapshot_dir(self) -> Path | None:
        return Path(self.config.logdir) / "snapshots" if self.config.logdir else None

    def print(self, text: str) -> None:
        self.sinks.text(text)

    def request_stop(self, reason: StopReason, message: str = "") -> None:
        """Stop after this step; under torch.distributed every rank stops at the next logging step."""
        self.monitor.request_stop_from_rank(reason, message)

    def compute_loss(self, batch: Any) -> torch.Tensor:
        inputs, target = batch
        if self.criterion is None:
            raise ConfigError("criterion: Trainer needs a criterion(output, target) or a compute_loss override")
        return self.criterion(self.model(inputs), target)

    def fit(self, train_data: Any, val_data: Any = None) -> StopReason:
        """Train until the planned epochs / max_steps are done or a callback stops the run."""
        cfg = self.config
        if self.total_steps is None:
            self.total_steps = cfg.epochs * self._steps_in_epoch(train_data) if cfg.epochs else cfg.max_steps
            if cfg.max_steps:
                self.total_steps = min(self.total_steps, cfg.max_steps) if cfg.epochs else cfg.max_steps
        self._decay_steps = cfg.lr_decay_steps or self.total_steps
        self.monitor.total_steps = self.total_steps  # auto_adjust: where the run is (its last evaluation, advise's early/late)
        if self.stop_reason is StopReason.COMPLETED:  # fit() again after raising epochs / max_steps
            self.monitor.stop_reason, self.monitor.stop_message = None, ""
        self.monitor.arm()
        self._call("on_train_begin")
        try:
            while self.stop_reason is None:
                if cfg.epochs and self.epoch >= cfg.epochs:
                    break
                if cfg.max_steps and self.global_step >= cfg.max_steps:
                    break
                if not self._train_epoch(train_data):
                    break  # stopped mid-epoch: no validation of a partial epoch
                self._end_epoch(val_data)
            self.monitor.request_stop(StopReason.COMPLETED)  # a no-op if something stopped it already
        except KeyboardInterrupt:
            self.monitor.request_stop(StopReason.INTERRUPTED, "interrupted by the user")
            self._flush()
        self._call("on_train_end")
        self.monitor.detach()  # reports what is pending, removes every hook
        if self.stop_reason is not StopReason.NONFINITE_LOSS and self.snapshot_dir is not None:
            self.save_snapshot()  # the end state; an epoch-end snapshot may already be it
        return self.stop_reason

    def evaluate(self, val_data: Any) -> float | None:
        """Mean loss over the validation batches (one host sync). Under torch.distributed
        each rank takes its rows of every batch and the batch means are reduced (one
        collective): the figure a single process computes over the same batches."""
        batches = val_data.validation() if hasattr(val_data, "validation") else val_data
        was_training = self.model.training
        self.model.eval()
        sums = []  # per batch: (loss * rows, rows) of this rank's rows
        with torch.no_grad(), self._autocast():
            for batch in batches:
                local = dist.shard_rows(batch)
                rows = count_rows(local)
                loss = self.compute_loss(self._to_device(local)).float() * rows if rows \
                    else torch.zeros((), device=self.device)
                sums.append(torch.stack([loss, torch.tensor(float(rows), device=self.device)]))
        self.model.train(was_training)
        if not sums:
            return None
        total = dist.all_reduce_sum(torch.stack(sums).to(dist.collective_device()))
        return float((total[:, 0] / total[:, 1]).mean())

    # --- the loop --------------------------------------------------------------------
    def _train_epoch(self, train_data: Any) -> bool:
        """Run the rest of the current epoch; True if it completed."""
        cfg = self.config
        self.model.train()
        batches = self._epoch_batches(train_data)
        per_epoch = self._steps_in_epoch(train_data)
        while self.batch_in_epoch < per_epoch and self.stop_reason is None:
            if cfg.max_steps and self.global_step >= cfg.max_steps:
                break
            micro = list(itertools.islice(batches, cfg.grad_accum_steps))
            if len(micro) < cfg.grad_accum_steps:
                break
            if self.monitor.skip_batch():  # auto_adjust skips past a stretch of bad data: dropped, not trained
                self.batch_in_epoch += 1
                continue
            self._train_step(micro)
        self._flush()
        return self.batch_in_epoch >= per_epoch

    def _train_step(self, micro: list[Any]) -> None:
        cfg = self.config
        self._call("on_step_begin")
        lr = lr_at(self.global_step, cfg.lr, cfg.warmup_steps, self._decay_steps, cfg.lr_schedule,
                   cfg.min_lr_ratio) * self.monitor.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_multiplier", 1.0)
        step_loss = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro):
            # DDP reduces gradients once, in the last micro-step's backward
            sync = i == len(micro) - 1 or not isinstance(self.model, nn.parallel.DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with self._autocast():
                    loss = self.compute_loss(self._to_device(dist.shard_rows(batch))) / cfg.grad_accum_steps
                self.scaler.scale(loss).backward()
            step_loss += loss.detach().float()
        self.scaler.unscale_(self.optimizer)  # the monitor and hooks below see true gradients
        self._call("on_backward_end")
        self.monitor.after_backward(grad_scale=self.scaler)  # the gradients the step will apply; fp16 overflow steps left out
        skip = self.monitor.skip_step(step_loss)  # a host sync, only under on_nonfinite_loss='skip_step'
        if cfg.gradient_clip > 0:
            self.monitor.clip_grad_norm_(cfg.gradient_clip)  # reuses a measured step's norms
        if not skip:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.monitor.after_optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)
        self.batch_in_epoch += 1
        self.monitor.step_end(step_loss)  # a logging step moves everything to the host, once
        if self.global_step % cfg.log_every == 0:
            self._console()
        self._call("on_step_end")

    def _flush(self) -> None:
        """Log what is pending (one host transfer) and print the console line."""
        if self.monitor.pending:
            self.monitor.flush()
            self._console()

    def _console(self) -> None:
        loss = self.monitor.loss.last
        if loss is None:
            return
        total = f"/{self.total_steps}" if self.total_steps else ""
        fields = [f"Epoch {self.epoch}", f"Step {self.global_step}{total}", f"Loss: {loss:.4g}"]
        fields += [f"{k}: {v}" for k, v in self.monitor.status.items()]
        self.print(" | ".join(fields))
        console = next((s for s in self.sinks.sinks if hasattr(s, "progress")), None)
        if console is not None:
            console.progress(self.global_step, self.total_steps, loss=f"{loss:.4g}", **self.monitor.status)
        self.sinks.flush()

    def _end_epoch(self, val_data: Any) -> None:
        self.monitor.flush()
        epoch = self.epoch
        train_loss = self.monitor.epoch_loss()  # NaN when every step was skipped: no snapshot then
        val_loss = self.evaluate(val_data) if val_data is not None else None
        self.last_val_loss = val_loss
        msg = f"Epoch {epoch} done | train loss {train_loss:.4f}"
        self.print(msg + (f" | val loss {val_loss:.4f}" if val_loss is not None else ""))
        self._call("on_validation_end", epoch, val_loss)
        self.monitor.end_epoch(val_loss, train_loss)
        self._call("on_epoch_end", epoch, train_loss, val_loss)
        self.batch_in_epoch = 0
        is_best = val_loss is not None and math.isfinite(val_loss) and (
            self.best_val is None or val_loss < self.best_val)
        if is_best:
            self.best_val = val_loss
        if self.snapshot_dir is not None and math.isfinite(train_loss):
            self.save_snapshot(best=is_best)
        self.sinks.flush()

    # --- snapshots -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.monitor.flush()  # what it decides (a rollback) comes before the weights are read
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            # every rank's, in rank order (a collective: every rank calls state_dict)
            "rng_ranks": dist.gather_objects(rng_state()) if dist.active() else None,
            "monitor": self.monitor.state_dict(),  # step, epoch, LR scale, every detector
            "progress": {  # global_step and epoch are the monitor's, repeated for readers of the file
                "global_step": self.global_step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_val": self.best_val,
            },
            "trainer_config": asdict(self.config),
            "model_config": asdict(self.model_config) if is_dataclass(self.model_config) else None,
            "run_info": _plain(self.run_info),
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["grad_scaler"]:
            self.scaler.load_state_dict(state["grad_scaler"])
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) != dist.world_size():  # the batches per step and every RNG stream would change
            raise ConfigError(f"resume: the snapshot was written by {len(ranks)} process(es); resume it with "
                              f"the same number (torchrun --nproc_per_node {len(ranks)}), not {dist.world_size()}")
        set_rng_state(ranks[dist.rank()])
        self.monitor.load_state_dict(state["monitor"])
        p = state["progress"]
        self.batch_in_epoch, self.best_val = p["batch_in_epoch"], p["best_val"]
        saved = state.get("callbacks", {})
        for cb in self.callbacks:
            if cb.state_key in saved:
                cb.load_state_dict(saved[cb.state_key])

    def save_snapshot(self, path: str | Path | None = None, best: bool = False) -> Path | None:
        """Write a snapshot atomically (default: snapshots/step_N.pt in the run directory).

        Not written (None) if the parameters are not finite: the last finite one is kept.
        Under torch.distributed every rank calls it; rank 0 writes, the others wait for it."""
        # one fused finite check, on snapshot steps only: every snapshot is one --resume can use
        # (DDP replicas hold equal weights, so every rank decides the same)
        if not snap.params_finite(self.module):
            self.print(f"snapshot at step {self.global_step} not written: the parameters are not finite; "
                       f"the last finite snapshot is kept")
            return None
        state = self.state_dict()
        if path is None and self.snapshot_dir is None:
            raise ConfigError("logdir: set a run directory to save snapshots without a path")
        try:
            if not dist.is_main():
                return None
            if path is not None:
                return snap.atomic_save(state, path)
            path = self.snapshot_dir / f"step_{self.global_step:07d}.pt"
            snap.atomic_save(state, path)
            snap.prune(self.snapshot_dir, self.config.keep_snapshots)
            if best:
                snap.atomic_save(state, self.snapshot_dir / "best.pt")
            return Path(path)
        finally:
            dist.barrier()  # no rank runs ahead of a snapshot still being written

    def load_snapshot(self, path: str | Path) -> None:
        state = snap.read_snapshot(path, map_location=self.device)
        self.load_state_dict(state)

    # --- helpers -------------------------------------------------------------------------
    def _default_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        decay = [p for p in self.module.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.module.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _steps_in_epoch(self, train_data: Any) -> int:
        n = train_data.num_batches() if hasattr(train_data, "num_batches") else len(train_data)
        n //= self.config.grad_accum_steps
        return min(n, self.config.steps_per_epoch) if self.config.steps_per_epoch else n

    def _epoch_batches(self, train_data: Any) -> Iterator[Any]:
        it = iter(train_data.epoch(self.epoch) if hasattr(train_data, "epoch") else train_data)
        # resuming mid-epoch: skip what this epoch already consumed
        return itertools.islice(it, self.batch_in_epoch * self.config.grad_accum_steps, None)

    def _to_device(self, batch: Any) -> Any:
        return to_device(batch, self.device)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self.ctx, *args)

    def close(self) -> None:
        self.monitor.close()
        for cb in self.callbacks:
            cb.close()
        self.sinks.close()


class LanguageModelTrainer(Trainer):
    """Next-token prediction: batches are (tokens, next_tokens), the model returns logits."""

    def compute_loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items()
            if isinstance(v, (int, float, str, bool, type(None), list, tuple, dict))}


def _run_length(config: TrainerConfig) -> dict[str, int]:
    """What bounds the run, for advice: `max_steps` where it ends the run before the epochs do."""
    if config.max_steps and (not config.epochs or config.planned_steps == config.max_steps):
        return {"max_steps": config.max_steps}
    return {"epochs": config.epochs}
