"""`PostEpochEvaluationCallback`: the seed's Enhancement 3 at every evaluation.

The checks live in `signals.evaluation`; this part feeds them each evaluation's losses
(an epoch end, or a validation every N steps) and the run's real settings (named in
advice), logs `evaluation/*` at the evaluation's step, stamps that step on its events,
prints the seed's report block and, with `auto_adjust`, takes the safe actions of
`signals.lr_policy` (cut the LR, stop early), each logged as an event. The `Monitor`
and `analyze` both call it.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.outbox import Outbox, StopReason
from trainvitals.signals.evaluation import EpochEvaluator, format_report
from trainvitals.signals.lr_policy import PlateauLRPolicy
from trainvitals.signals.nonfinite import NonFiniteLossCheck

__all__ = ["PostEpochEvaluationCallback"]


class PostEpochEvaluationCallback:
    def __init__(self, config: MonitorConfig | None = None, baseline_loss: float | None = None) -> None:
        self.config = c = config if config is not None else MonitorConfig()
        self.evaluator = EpochEvaluator(list(c.evaluation_epochs), c.improvement_threshold, c.gap_threshold,
                                        c.plateau_window, baseline_loss, c.val_loss_rise, c.val_loss_rise_patience)
        self.policy = PlateauLRPolicy() if c.auto_adjust else None
        self.nonfinite_val = NonFiniteLossCheck("validation loss")

    def report(self, out: Outbox, epoch: int, step: int | None, train_loss: float | None,
               val_loss: float | None, lr: float | None, run_info: dict[str, Any] | None = None,
               last_finite_loss: float | None = None, host_epoch: float | None = None, final: bool = False) -> None:
        """Evaluation number `epoch` (0-based; the epoch where evaluations are epoch ends)
        at `step`. `lr`: the LR in use at `step`. Advice names the peak, `run_info["lr"]`
        (the one the user set) times the cuts decided so far (`out.lr_scale`), else `lr`;
        `last_finite_loss`: in an evaluation span that turned non-finite, the step loss
        just before; `host_epoch`: the host's epoch, for an evaluation that is not the
        end of epoch `epoch` (it names the evaluation); `final`: the run's last planned
        step (auto_adjust then acts no more)."""
        info = dict(run_info or {})
        peak = out.learning_rate(lr, info.get("lr"), step, info.get("warmup_steps")).peak
        peak = peak if peak is not None else lr
        if peak is not None:
            info["lr"] = peak
        report = self.evaluator.update(epoch, train_loss, val_loss, lr=peak, run_info=info, step=step,
                                       warmup_steps=info.get("warmup_steps"), last_finite_loss=last_finite_loss,
                                       lr_now=lr, host_epoch=host_epoch, lr_scale=out.lr_scale)
        at = epoch if step is None else step  # an epoch-indexed log (a CSV) has no step
        # what the evaluation compared (`analyze` finds the evaluations of a log of ours by it)
        metrics = {**report.metrics, "train_loss": math.nan if train_loss is None else float(train_loss),
                   "epoch": report.host_epoch}
        for tag, value in metrics.items():
            if value is not None:
                out.log(f"evaluation/{tag}", value, at)
        events = [e if e.step is not None or step is None else replace(e, step=step) for e in report.events]
        if isinstance(val_loss, (int, float)):  # None: no evaluation loss logged, nothing to say
            events = self.nonfinite_val.update(val_loss, at, epoch,
                                               lr=lr, gradient_clip=info.get("gradient_clip")) + events
        text = format_report(report)
        if text:
            out.text("\n" + text)
        out.emit(events, echo=not text)
        if self.policy is None or peak is None:
            return
        for action in self.policy.update(report, peak, final):
            out.emit(action.event)
            if action.kind == "reduce_lr" and action.old_lr and action.new_lr is not None:
                out.scale_lr(action.new_lr / action.old_lr)
            elif action.kind == "stop":
                out.request_stop(StopReason.EARLY_STOPPING, action.reason)

    def state_dict(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator.state_dict(), "nonfinite_val": self.nonfinite_val.state_dict(),
                "policy": self.policy.state_dict() if self.policy else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluator.load_state_dict(state["evaluator"])
        if state.get("nonfinite_val"):  # absent from snapshots written before the check
            self.nonfinite_val.load_state_dict(state["nonfinite_val"])
        if self.policy is not None and state.get("policy"):
            self.policy.load_state_dict(state["policy"])
