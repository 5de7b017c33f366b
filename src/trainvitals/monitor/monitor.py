"""`Monitor`: the probes and detectors for one model and optimizer, for any training loop.

A loop calls it at the points every loop has:

    with Monitor(model, optimizer, MonitorConfig(), logdir="runs/a") as monitor:
      for each optimizer step:
        forward, backward (any number of micro-batches)
        monitor.after_backward()          # not yet clipped (fp16: grad_scale=scaler)
        monitor.clip_grad_norm_(max_norm) # or torch's: this one reuses the measured norms
        optimizer.step()
        monitor.after_optimizer_step()    # may be left out: step_end() does it
        monitor.step_end(loss)            # the step's loss: a tensor stays on the device
      after a validation (every N steps, or mid-epoch):
        monitor.evaluate(val_loss)        # checks the train loss of the steps since the previous one
      at an epoch end:
        monitor.end_epoch(val_loss=...)   # its train loss is the mean of its steps; val_loss if validated
    # leaving the block (or close()) reports the last steps and closes the logs

Steps are optimizer steps counted from 1: step s is logged at s. A loop that counts its
own way passes its number, `step_end(loss, step=n)` (nanoGPT: `iter_num + 1`, the
optimizer steps done once iteration `iter_num` has stepped).

Step 1, then every `gradient_monitor_interval` steps, is measured: the block hooks are
attached when the previous step ends, so a host needs no call before the forward, and
removed after that step's backward (under torch.compile they stay, traced into the graph:
`probes/gradient_flow.py`; make the Monitor before the first compiled forward). Losses and
measurements stay on the device until a logging step (every `log_every` steps, and at
`flush()`, `evaluate()`, `end_epoch()`), when they
cross to the host in one transfer and feed the detectors. Each call returns the events
it raised; `events` holds all of them. Decisions are for the host to carry out:
`stop_reason` (stop now), `lr_scale` (multiply the scheduled LR), `skip_step(loss)`.
Set `total_steps` (the planned optimizer steps) where the loop knows it: advice on a
failure weighs how far into the run it came, and `auto_adjust` takes no plateau action
at the last evaluation.
With `auto_adjust`, a logging step whose alerts say the run is failing rolls the model
and optimizer back in place to the last good state (`monitor/rollback.py`); the loop just
goes on, and the batches in between are skipped. A loop that asks `skip_batch()` before
each step also lets a rollback skip past its alert (a stretch of bad data that goes on).

Under torch.distributed (DDP, FSDP2) every rank makes the same calls. At a logging step
the ranks sum their losses and what their probes measured (squared norms of activation
gradients, of gradient and weight shards) in one `all_reduce`, so every figure is the
global batch's and every rank's detectors see the same numbers and decide the same
(DESIGN.md). Only rank 0 has sinks. A decision a host takes from its own rank's view
(`request_stop_from_rank`: a signal, a callback) is reduced the same way.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from trainvitals import distributed as dist
from trainvitals.errors import ConfigError
from trainvitals.events import Event
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
from trainvitals.monitor.evaluation_points import EvaluationPoints
from trainvitals.monitor.gradients import GradientMonitorCallback, GradientReading
from trainvitals.monitor.inputs import loss_scale, optimizer_facts, param_groups
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.monitor.outbox import Outbox, StopReason
from trainvitals.monitor.rollback import FILE_NAME, Rollback
from trainvitals.monitor.settings import run_settings
from trainvitals.monitor.transfer import reduce_pending, split, to_host
from trainvitals.probes.gradient_flow import GradientFlowProbe, GradientFlowStats
from trainvitals.probes.weight_updates import WeightUpdateProbe, WeightUpdateStats
from trainvitals.sinks.base import Sink, SinkHub
from trainvitals.sinks.logdir import loop_sinks
from trainvitals.training.rundir import RunDir

__all__ = ["Monitor"]


class Monitor(EvaluationPoints, Outbox):
    """Where it writes: `logdir`, a directory of this run's own, gets TensorBoard event files
    and `metrics.jsonl`; the console prints events and reports (`console=False`: not);
    `sinks`, a list, adds sinks of yours beside them. A `logdir` that already holds another
    run's logs is refused (one run per directory); to continue a run, pass `resume=` the
    `state_dict()` you saved with your checkpoint: the detectors continue from it and what
    the logs hold after its step is dropped. `sinks=SinkHub([...])` instead: exactly those
    sinks, no `logdir` or console, closed by you (what a framework host passes).

    `run_info`: facts about the run that advice names or detectors compare with (`lr` =
    the peak LR you set, `gradient_clip`, `warmup_steps`, `weight_decay`, `unigram_entropy`,
    `uniform_loss` = ln of the vocabulary size, model sizes);
    `lr` and `weight_decay` default to the optimizer's.
    `can_set_lr=False` for a host that cannot apply `lr_scale` (its LR actions then say
    what to set instead). Under torch.distributed, ranks other than 0 write nothing.
    Used as a context manager, it is closed when the block ends."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 config: MonitorConfig | None = None, *, logdir: str | Path | None = None,
                 resume: dict[str, Any] | None = None, console: bool = True,
                 sinks: SinkHub | Sequence[Sink] | None = None, blocks: Sequence[tuple[str, nn.Module]] | None = None,
                 run_info: dict[str, Any] | None = None, can_set_lr: bool = True) -> None:
        if isinstance(sinks, SinkHub) and logdir is not None:
            raise ConfigError("sinks=SinkHub(...) is the whole set of sinks, so logdir= cannot be added to it; "
                              "pass sinks as a list to add them beside the logdir's")
        super().__init__(SinkHub(), can_set_lr)  # the sinks are opened last: a refused monitor writes nothing
        self.config = c = config if config is not None else MonitorConfig()
        self.model, self.optimizer = model, optimizer
        self.run_info = {**optimizer_facts(optimizer), **(run_info or {})}
        baseline = self.run_info.get("unigram_entropy")
        clip = self.run_info.get("gradient_clip") or None
        self.step = 0  # optimizer steps done; step s is logged at s (1-based)
        self.total_steps: int | None = None  # the run's planned steps, where the host knows them
        self.epoch = 0
        peak, warmup = self.run_info.get("lr"), self.run_info.get("warmup_steps")
        self.loss = LossMonitorCallback(c, baseline, clip, self.run_info.get("uniform_loss"), peak_lr=peak,
                                        warmup_steps=warmup)
        self.flow = GradientFlowProbe(model, blocks) if c.enable_gradient_monitor else None
        self.updates = WeightUpdateProbe(model, optimizer) \
            if c.enable_gradient_monitor and optimizer is not None else None
        self.num_layers = max(1, len(self.flow.block_names)) if self.flow is not None else None
        self.gradients = GradientMonitorCallback(c, self.num_layers, gradient_clip=clip, warmup_steps=warmup,
                                                 peak_lr=peak) if self.flow is not None else None
        self.evaluation = PostEpochEvaluationCallback(c, baseline) if c.enable_post_epoch_evaluation else None
        self.groups = param_groups(model, self.flow.blocks if self.flow is not None else [])
        self._losses: list[tuple[int, Any, float | None, bool]] = []  # (step, loss tensor or float, lr, skipped)
        self._measured: list[tuple[int, GradientFlowStats, WeightUpdateStats | None]] = []
        self._flow_now: GradientFlowStats | None = None
        self._clip_norm: torch.Tensor | None = None  # this step's total grad norm, for clip_grad_norm_
        self._lr_now: float | None = None
        self._epoch_loss = [0.0, 0]  # sum and count of the applied steps' losses this epoch
        self._eval_loss = [0.0, 0]  # ... since the previous evaluation
        self._evaluations = 0  # evaluations made
        self._last_eval: list | None = None  # the latest: [step, had a val loss, train loss]
        self._validated = False  # an evaluation had a val loss: the run validates
        self._before_nonfinite: float | None = None  # since the previous evaluation: the last finite loss before the first non-finite
        self._last_finite: float | None = None
        self._skipping = False  # skip_step() said this step is left out
        self._rank_stop: tuple[StopReason, str] | None = None  # asked on this rank, not yet reduced
        self._scaler_steps: set[int] = set()  # measured steps under an enabled GradScaler
        self._fresh = True  # nothing reported yet: the first report logs the run's settings
        self._rundir: RunDir | None = None
        self._owns_sinks = not isinstance(sinks, SinkHub)
        self.rollback = Rollback(c.rollback_every, c.rollback_keep, c.max_rollbacks) if c.auto_adjust else None
        self.arm()
        if resume is not None:
            self.load_state_dict(resume)
        if not dist.is_main():
            self.sinks = SinkHub()  # one voice: rank 0's
        elif isinstance(sinks, SinkHub):
            self.sinks = sinks
        else:
            self.sinks, self._rundir = loop_sinks(logdir, self.step if resume is not None else None, console,
                                                  sinks or [])
            if self._rundir is not None and self.rollback is not None:
                self.rollback.path = Path(logdir) / FILE_NAME
                self.rollback.write()

    # --- the loop's points ----------------------------------------------------------------
    def monitors(self, step: int) -> bool:
        """Whether optimizer step `step` (1-based) is measured."""
        return (step - 1) % self.config.gradient_monitor_interval == 0

    def after_backward(self, grad_scale: torch.amp.GradScaler | torch.Tensor | float | None = None) -> None:
        """The step's gradients are complete and not yet clipped. Under fp16 with a
        `GradScaler`, pass the scaler: its scale stays on the device (`get_scale()` would be
        a host sync), gradients not yet unscaled are divided by it, and a step whose scaled
        gradients overflowed (the scaler skips it) is not measured (no false
        `nonfinite_gradients` alert). A disabled scaler (`enabled=False`) changes nothing.
        A tensor or float is taken as the loss scale still in the gradients."""
        self._lr_now = self.current_lr()
        if self.rollback is not None:
            self.rollback.before_update(self, self._lr_now, grad_scale)
        if self.flow is None or not self.flow.attached:
            return
        grad_scale, scaler = loss_scale(grad_scale, self.optimizer)
        stats = self.flow.collect()
        self.flow.detach()
        if grad_scale is not None:
            stats = stats.scaled(grad_scale)
        self._flow_now = stats
        if scaler:
            self._scaler_steps.add(self.step + 1)
        if grad_scale is None and self.flow.grads_fp32 and not any(stats.sharded):
            self._clip_norm = stats.grad_norm  # what clip_grad_norm_ would compute
        if self.updates is not None:
            self.updates.before_step()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_` over the model's parameters, with its result (the
        total norm before clipping); call it after `after_backward()`, the gradients as they
        were there. On a measured step the total norm is the one the monitor has just
        computed, so the gradients are read once rather than twice (fp32, unsharded)."""
        total, self._clip_norm = self._clip_norm, None
        params = self.flow.parameters if self.flow is not None else list(self.model.parameters())
        if total is None or not hasattr(torch.nn.utils, "clip_grads_with_norm_"):  # torch < 2.6
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
        return total

    def after_optimizer_step(self) -> None:
        """The optimizer has stepped (or skipped the step)."""
        if self.updates is not None and self.updates.armed:
            self.updates.after_step()

    def step_end(self, loss: torch.Tensor | float, step: int | None = None) -> list[Event]:
        """The step is done; `loss` is its loss (the mean over its micro-batches, unscaled).
        `step`: your number for it, if you count steps your own way (above the last one)."""
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step <= self.step):
            raise ConfigError(f"step_end(step={step!r}): expected an int above the previous step ({self.step}); "
                              f"steps are optimizer steps counted from 1")
        self.after_optimizer_step()
        self.step = self.step + 1 if step is None else step
        lr = self._lr_now if self._lr_now is not None else self.current_lr()
        self._losses.append((self.step, loss.detach() if isinstance(loss, torch.Tensor) else float(loss), lr,
                             self._skipping))
        self._skipping = False
        if self._flow_now is not None:
            weights = self.updates.collect() if self.updates is not None and self.updates.measured else None
            self._measured.append((self.step, self._flow_now, weights))
        self._flow_now, self._lr_now, self._clip_norm = None, None, None
        self.arm()
        return self.flush() if self.step % self.config.log_every == 0 else []

    def skip_batch(self) -> bool:
        """Ask before each step's forward. True: `auto_adjust` skips this step (a stretch of bad
        data went on past the last rollback's alert, which skips ahead of it): drop the step's
        batches, no forward, no update, no `step_end`; the step is counted as done. A loop
        that never asks gets no skip ahead (its rollbacks skip up to their alert only)."""
        if self.rollback is None:
            return False
        self.rollback.drops = True
        if not self.rollback.skipping(self.step + 1):
            return False
        self.step += 1
        if self.flow is not None and self.flow.attached and not self.monitors(self.step + 1):
            self.flow.detach()  # armed for the step just skipped
        self.arm()
        return True

    def skip_step(self, loss: torch.Tensor | float) -> bool:
        """With on_nonfinite_loss='skip_step': whether to leave this step's update out
        (one host sync per step: the price of that policy, and only under it)."""
        if self.config.on_nonfinite_loss != "skip_step":
            return False
        # a loss non-finite on any rank skips the step on every rank (a collective under DDP)
        self._skipping = dist.any_rank(~torch.isfinite(torch.as_tensor(loss)))
        return self._skipping

    def request_stop_from_rank(self, reason: StopReason, message: str = "") -> None:
        """A stop this process decided from its own view (a signal, a callback). Alone it
        takes effect at once; under torch.distributed every rank stops at the next logging
        step, so no rank is left waiting in a collective."""
        if not dist.active():
            self.request_stop(reason, message)
        elif self._rank_stop is None:
            self._rank_stop = (reason, message)

    @property
    def pending(self) -> bool:
        """Steps not yet reported (they wait for the next logging step)."""
        return bool(self._losses)

    def flush(self) -> list[Event]:
        """Move everything pending to the host in one transfer; run the detectors on it."""
        if not self._losses and not self._measured:
            return []
        start = len(self.events)
        losses, measured = self._losses, self._measured
        self._losses, self._measured = [], []
        votes = None
        if dist.active():
            asked = self._rank_stop[0] if self._rank_stop is not None else None
            losses, measured, votes = reduce_pending(losses, measured, asked)
        parts = [[votes]] if votes is not None else []
        parts += [[l] for _, l, _, _ in losses if isinstance(l, torch.Tensor)]
        parts += [stats.host_parts() for _, f, w in measured for stats in ((f, w) if w else (f,))]
        values = iter(split(to_host(p for group in parts for p in group), parts))
        if votes is not None:
            self._take_rank_stop(next(values))
        steps, floats, lrs = [], [], {}
        for step, loss, lr, skipped in losses:
            if isinstance(loss, torch.Tensor):
                (loss,) = next(values)
            steps.append(step)
            floats.append(loss)
            lrs[step] = lr
            if not skipped:
                for acc in (self._epoch_loss, self._eval_loss):
                    acc[0] += loss
                    acc[1] += 1
            if math.isfinite(loss):
                self._last_finite = loss
            elif self._before_nonfinite is None:
                self._before_nonfinite = self._last_finite
        if steps and self._fresh:  # so `analyze` knows the reference levels and settings too
            self._fresh = False
            for tag in ("unigram_entropy", "uniform_loss"):
                if self.run_info.get(tag):
                    self.log(f"data/{tag}", self.run_info[tag], 0)
            self.sinks.settings(run_settings(self.run_info, self.num_layers))
        self.loss.report(self, steps, floats, [lrs[s] for s in steps], self.epoch)
        if self.gradients is not None:
            self.gradients.observe_losses(steps, floats)
        for step, flow, weights in measured:
            g = flow.from_host(next(values))
            w = weights.from_host(next(values)) if weights is not None else None
            if step in self._scaler_steps and not math.isfinite(g["grad_norm"]):
                continue  # the scaled gradients overflowed: the GradScaler skips this step
            reading = GradientReading(g["gains"], g["grad_norm"], nonfinite_params=g["nonfinite_params"],
                                      total_params=len(g["param_grad_norms"]), weights=w,
                                      param_grad_norms=g["param_grad_norms"], groups=self.groups)
            self.gradients.report(self, step, reading, lrs.get(step), self.epoch)
        self._scaler_steps.difference_update(step for step, _, _ in measured)
        if self.rollback is not None:  # the same events on every rank: the same rollback
            self.rollback.check(self, self.events[start:])
        self.sinks.flush()
        return self.events[start:]

    def _take_rank_stop(self, votes: list[float]) -> None:
        """Every rank stops for the first reason any rank asked for."""
        for reason, count in zip(StopReason, votes):
            if count:
                mine = self._rank_stop is not None and self._rank_stop[0] is reason
                self.request_stop(reason, self._rank_stop[1] if mine else f"{reason.value} on another rank")
                break
        self._rank_stop = None

    # --- state -------------------------------------------------------------------------
    def current_lr(self) -> float | None:
        return self.optimizer.param_groups[0]["lr"] if self.optimizer is not None else None

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue the detectors exactly (JSON-safe).
        Pending measurements are reported first, so nothing measured is lost."""
        self.flush()
        parts = {"loss": self.loss, "gradients": self.gradients, "evaluation": self.evaluation,
                 "rollback": self.rollback}
        return {"step": self.step, "epoch": self.epoch, "lr_scale": self.lr_scale,
                "epoch_loss": list(self._epoch_loss), "eval_loss": list(self._eval_loss),
                "evaluations": self._evaluations, "last_eval": self._last_eval, "validated": self._validated,
                "last_finite": self._last_finite,
                "before_nonfinite": self._before_nonfinite,
                **{k: p.state_dict() for k, p in parts.items() if p is not None}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._fresh = False  # the resumed run's logs hold its settings
        self.step, self.epoch, self.lr_scale = state["step"], state["epoch"], state["lr_scale"]
        self._epoch_loss = list(state["epoch_loss"])
        # older snapshots: one evaluation an epoch
        self._eval_loss = list(state.get("eval_loss", state["epoch_loss"]))
        self._evaluations = state.get("evaluations", self.epoch)
        self._last_eval, self._validated = state.get("last_eval"), state.get("validated", False)
        self._last_finite, self._before_nonfinite = state["last_finite"], state["before_nonfinite"]
        for key, part in (("loss", self.loss), ("gradients", self.gradients), ("evaluation", self.evaluation),
                          ("rollback", self.rollback)):
            if part is not None and state.get(key) is not None:
                part.load_state_dict(state[key])
        if self.flow is not None:  # the next step may not be the one armed for
            self.flow.detach()
            self.arm()

    def detach(self) -> None:
        """Report what is pending and remove every hook, until `arm()`."""
        self.flush()
        if self.flow is not None:
            self.flow.detach()
        if self.updates is not None and self.updates.armed:
            self.updates.after_step()
        self._flow_now = None

    def close(self) -> None:
        """Report what is pending and remove every hook; the monitor measures nothing after.
        Closes the sinks it opened and gives up its `logdir`."""
        self.flush()
        if self.flow is not None:
            self.flow.close()
        if self.updates is not None:
            self.updates.close()
        self.flow = self.updates = None
        self._flow_now = None
        if self._owns_sinks:
            self.sinks.close()
        if self._rundir is not None:
            self._rundir.release()
            self._rundir = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # after an exception too: the steps before it are logged

    def arm(self) -> None:
        """Attach the block hooks if the next step is measured (done after every step; call
        it after `detach()` to go on)."""
        if self.flow is not None and self.monitors(self.step + 1) and not self.flow.attached:
            self.flow.attach()
