"""`PostEpochEvaluationCallback`: the seed's Enhancement 3 after each epoch.

The checks live in `signals.evaluation`; this part feeds them each epoch's losses and
the run's real settings (named in advice), logs `evaluation/*` at the epoch's last step, stamps that step on its events,
prints the seed's report block and, with `auto_adjust`, takes the safe actions of
`signals.lr_policy` (cut the LR, stop early), each logged as an event. The `Monitor`
and `analyze` both call it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.outbox import Outbox, StopReason
from trainvitals.signals.evaluation import EpochEvaluator, format_report
from trainvitals.signals.lr_policy import PlateauLRPolicy

__all__ = ["PostEpochEvaluationCallback"]


class PostEpochEvaluationCallback:
    def __init__(self, config: MonitorConfig | None = None, baseline_loss: float | None = None) -> None:
        self.config = c = config if config is not None else MonitorConfig()
        self.evaluator = EpochEvaluator(list(c.evaluation_epochs), c.improvement_threshold, c.gap_threshold,
                                        c.plateau_window, baseline_loss)
        self.policy = PlateauLRPolicy() if c.auto_adjust else None

    def report(self, out: Outbox, epoch: int, step: int | None, train_loss: float | None,
               val_loss: float | None, lr: float | None, run_info: dict[str, Any] | None = None,
               last_finite_loss: float | None = None) -> None:
        """`lr`: the LR in use at `step`. Advice names the peak, `run_info["lr"]` (the one
        the user set) times the cuts decided so far (`out.lr_scale`), else `lr`;
        `last_finite_loss`: in an epoch that turned non-finite, the step loss just before."""
        info = dict(run_info or {})
        peak = out.learning_rate(lr, info.get("lr"), step, info.get("warmup_steps")).peak
        peak = peak if peak is not None else lr
        if peak is not None:
            info["lr"] = peak
        report = self.evaluator.update(epoch, train_loss, val_loss, lr=peak, run_info=info, step=step,
                                       warmup_steps=info.get("warmup_steps"), last_finite_loss=last_finite_loss,
                                       lr_now=lr)
        for tag, value in report.metrics.items():  # an epoch-indexed log (a CSV) has no step
            out.log(f"evaluation/{tag}", value, epoch if step is None else step)
        events = [e if e.step is not None or step is None else replace(e, step=step) for e in report.events]
        text = format_report(report)
        if text:
            out.text("\n" + text)
        out.emit(events, echo=not text)
        if self.policy is None or peak is None:
            return
        for action in self.policy.update(report, peak):
            out.emit(action.event)
            if action.kind == "reduce_lr" and action.old_lr and action.new_lr is not None:
                out.scale_lr(action.new_lr / action.old_lr)
            elif action.kind == "stop":
                out.request_stop(StopReason.EARLY_STOPPING, action.reason)

    def state_dict(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator.state_dict(),
                "policy": self.policy.state_dict() if self.policy else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluator.load_state_dict(state["evaluator"])
        if self.policy is not None and state.get("policy"):
            self.policy.load_state_dict(state["policy"])
