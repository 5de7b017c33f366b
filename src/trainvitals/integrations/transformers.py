"""`TrainvitalsCallback` for Hugging Face `transformers.Trainer`: one line to add.

    trainer = Trainer(model=model, args=args, ..., callbacks=[TrainvitalsCallback()])

Where each part comes from in HF's loop (transformers 5.x):

| what | where |
|---|---|
| block gains | tensor hooks on the blocks' inputs and outputs during a monitored step's backward |
| grad norms, non-finite gradients | at the end of the step's last backward, before HF clips (a queued autograd callback) |
| weight updates | snapshot at that point, measured in `on_optimizer_step` from the real optimizer |
| step loss | a forward hook reading `output.loss` of each training micro-batch |
| validation loss | `metrics["eval_loss"]` in `on_evaluate`: an evaluation at its step, named by HF's epoch (`eval_strategy="epoch"`: the epoch's); the epoch end when HF does not evaluate |
| stop | `control.should_training_stop` |

HF cannot have its LR changed by a callback, so `reduce_lr` actions name the value to
set instead; with `auto_adjust` a rollback trigger stops the run, naming the step to resume
before and the steps whose batches to skip (docs/auto_adjust.md). `on_nonfinite_loss="skip_step"` is not available here. Scalars and events
go to the TensorBoard run HF writes (`TENSORBOARD_LOGGING_DIR`, else the newest
`output_dir/runs/*`), events to the console too, from the main process only. Detector
state is saved in `trainer_state.json` (`stateful_callbacks`) and read back from the
checkpoint a run resumes from, with HF's defaults (`restore_callback_states_from_checkpoint`
is not needed); our steps are HF's `global_step`, so a checkpoint without our state still
continues them. Under HF's DDP (torchrun) every figure is global: gradients are read
after DDP's all-reduce, and the monitor reduces losses and activation-gradient norms
over the ranks (docs/distributed.md).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError(f"trainvitals.integrations.transformers needs transformers ({e}): "
                      f"pip install 'trainvitals[hf]'") from None

from trainvitals.events import Event
from trainvitals.integrations._common import StepLoss, callback_config
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.console import ConsoleSink

__all__ = ["TrainvitalsCallback"]


class TrainvitalsCallback(TrainerCallback, ExportableState):
    def __init__(self, config: MonitorConfig | dict[str, Any] | None = None, logdir: str | None = None,
                 blocks: Any = None) -> None:
        self.config = callback_config(config, "HF Trainer")
        self.logdir, self.blocks = logdir, blocks
        self.monitor: Monitor | None = None
        self.saved_state: dict[str, Any] | None = None  # set by HF when it restores the callback
        self._loss = StepLoss()
        self._sum_losses = False
        self._accum = 1  # HF's gradient_accumulation_steps
        self._rank_share = 1
        self._handles: list[Any] = []
        self._queued = False
        self._scaler = None
        self._events: list[Event] = []
        self._ended = False  # train() returned: an evaluate() now is the user's

    @property
    def events(self) -> list[Event]:
        """Every event raised so far, in order."""
        return self.monitor.events if self.monitor is not None else self._events

    # --- HF's hooks ----------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        real = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the real one
        self._scaler = getattr(optimizer, "scaler", None)
        sinks = SinkHub()
        if state.is_world_process_zero:
            from trainvitals.sinks.tensorboard import TensorBoardSink
            sinks = SinkHub([TensorBoardSink(self.logdir or _hf_tensorboard_dir(args)),
                             ConsoleSink(progress_bar=False)])
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        # the warmup HF's scheduler gets (`warmup_steps` under 1, or `warmup_ratio`, is a share of max_steps)
        warmup = args.get_warmup_steps(state.max_steps) if state.max_steps else \
            (args.warmup_steps if args.warmup_steps >= 1 else None)
        info = {"gradient_clip": args.max_grad_norm or None, "warmup_steps": int(warmup) if warmup else None,
                **_run_length(args), "uniform_loss": math.log(vocab) if vocab else None}
        self.monitor = Monitor(model, real, self.config, blocks=self.blocks, sinks=sinks,
                               run_info={k: v for k, v in info.items() if v is not None}, can_set_lr=False)
        self.monitor.total_steps = state.max_steps or None
        if self.monitor.rollback is not None:  # auto_adjust: HF's loop is not rewound from a callback
            self.monitor.rollback.can_restore = False  # a trigger stops it, naming where to resume and skip
        self._resume(state)
        self._accum = args.gradient_accumulation_steps
        # HF divides each rank's token sum by the global token count: the step's loss is
        # then the sum over ranks, where the monitor reduces a mean
        self._rank_share = args.world_size if args.average_tokens_across_devices else 1
        self._handles = [model.register_forward_hook(self._capture_loss, with_kwargs=True)]

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self._ended = False
        m = self.monitor
        if m is not None and m.flow is not None and m.flow.attached:
            # the step's last backward ends before HF clips: measure there (queued by a grad hook)
            params = [p for p in m.model.parameters() if p.requires_grad]
            self._handles += [p.register_post_accumulate_grad_hook(self._queue) for p in params]

    def on_pre_optimizer_step(self, args, state, control, **kwargs) -> None:
        if self.monitor is not None and not self._queued:
            self._measure()  # records the step's LR; measures if the backward hook did not

    def on_optimizer_step(self, args, state, control, **kwargs) -> None:
        if self.monitor is not None:
            self.monitor.after_optimizer_step()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        if self.monitor is None:
            return
        self._remove_grad_hooks()
        loss = self._loss.take(mean=not self._sum_losses)
        # HF's step: a resume that found no state of ours still logs beside HF's own figures
        self.monitor.step_end(loss if loss is not None else float("nan"), step=state.global_step)
        if self.monitor.stop_reason is not None:
            control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        if self.monitor is None or not metrics or "eval_loss" not in metrics:
            return
        if args.eval_strategy == "epoch" and not self._ended:
            self.monitor.end_epoch(metrics["eval_loss"])
        else:  # eval_steps, or an evaluate() of the user's (after train(): not again at an evaluated step)
            self.monitor.evaluate(metrics["eval_loss"], epoch=state.epoch)
        if self._ended:
            self.saved_state = self.monitor.state_dict()
        elif self.monitor.stop_reason is not None:
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs) -> None:
        if self.monitor is not None and args.eval_strategy == "no":
            self.monitor.end_epoch()

    def on_train_end(self, args, state, control, **kwargs) -> None:
        self._ended = True
        if self.monitor is not None:
            self.saved_state = self.monitor.state_dict()
            self.monitor.close()
            self.monitor.sinks.close()
        for h in self._handles:
            h.remove()
        self._handles = []

    # --- ExportableState: what trainer_state.json keeps (JSON) ----------------------------
    def state(self) -> dict[str, Any]:
        saved = self.monitor.state_dict() if self.monitor is not None else self.saved_state
        return {"args": {"config": asdict(self.config), "logdir": self.logdir},
                "attributes": {"saved_state": saved}}

    # --- internals ------------------------------------------------------------------------
    def _resume(self, state) -> None:
        """A resumed HF run (global_step > 0) continues the detectors from the state saved in
        the checkpoint's `trainer_state.json`, which HF has loaded into `state` whether or
        not `restore_callback_states_from_checkpoint` rebuilt this callback from it."""
        if not state.global_step:
            return  # a fresh run, even when this callback trained before
        name = type(self).__name__
        record = state.stateful_callbacks.get(name)
        if isinstance(record, list):  # several TrainvitalsCallbacks: HF cannot tell them apart; the first's
            record = record[0] if record else None
        saved = ((record or {}).get("attributes") or {}).get("saved_state")
        if saved is not None and saved.get("step") == state.global_step:
            self.monitor.load_state_dict(saved)
            return
        if record is None:  # HF's checkpoint save indexes every stateful callback it has by name
            state.stateful_callbacks[name] = self.state()
        self.monitor.text(f"trainvitals: resuming at step {state.global_step} from a checkpoint without "
                          f"trainvitals' state; the steps continue, the detectors (EMA, drift) start afresh")

    def _capture_loss(self, module, args, kwargs, output) -> None:
        loss = getattr(output, "loss", None) if not isinstance(output, dict) else output.get("loss")
        if module.training and torch.is_grad_enabled() and isinstance(loss, torch.Tensor):
            # with num_items_in_batch, each micro-batch's loss is already a share of the step's
            self._sum_losses = kwargs.get("num_items_in_batch") is not None
            self._loss.add(loss * self._rank_share if self._sum_losses and self._rank_share > 1 else loss)

    def _queue(self, param: torch.Tensor) -> None:
        # the last micro-batch's backward (a short last step of an epoch is measured in
        # on_pre_optimizer_step instead, after HF's clipping)
        if not self._queued and self._loss.count == self._accum:
            self._queued = True
            # queued from a queued callback, it runs after every callback queued in this
            # backward, DDP's (which writes the reduced gradients) included
            engine = torch.autograd.Variable._execution_engine
            engine.queue_callback(lambda: engine.queue_callback(self._measure))

    def _measure(self) -> None:
        scaler = self._scaler  # fp16: HF unscales only when it clips, after this point
        scale = getattr(scaler, "_scale", None) if scaler is not None and scaler.is_enabled() else None
        self.monitor.after_backward(grad_scale=scale)

    def _remove_grad_hooks(self) -> None:
        keep = self._handles[:1]  # the loss hook
        for h in self._handles[1:]:
            h.remove()
        self._handles, self._queued = keep, False


def _run_length(args: Any) -> dict[str, Any]:
    """What bounds the run, in neutral names (advice names them as HF does: signals/setting_names.py):
    `max_steps` overrides `num_train_epochs` when set."""
    return {"host": "hf", **({"max_steps": args.max_steps} if args.max_steps > 0 else {"epochs": args.num_train_epochs})}


def _hf_tensorboard_dir(args: Any) -> str:
    """The run directory HF's TensorBoardCallback writes to (it picks it in on_train_begin,
    which runs before ours): TENSORBOARD_LOGGING_DIR, else the newest output_dir/runs/*."""
    env = os.getenv("TENSORBOARD_LOGGING_DIR")
    if env:
        return os.path.expanduser(env)
    runs = Path(args.output_dir) / "runs"
    found = sorted((p for p in runs.glob("*") if p.is_dir() and any(p.glob("events.out.tfevents*"))),
                   key=lambda p: p.stat().st_mtime)
    if found:
        return str(found[-1])
    from transformers.training_args import default_logdir
    return os.path.join(args.output_dir, default_logdir())
