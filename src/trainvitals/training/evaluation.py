"""`PostEpochEvaluationCallback`: the seed's Enhancement 3 inside the trainer.

The checks live in `signals.evaluation` (shared with `trainvitals analyze`); this
callback feeds them each epoch's losses and the run's real settings, prints the
seed's report block, logs `evaluation/*` and, with `auto_adjust`, applies the safe
actions of `signals.lr_policy` (cut the LR, stop early), logging each as an event.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from trainvitals.signals.evaluation import EpochEvaluator, format_report
from trainvitals.signals.lr_policy import PlateauLRPolicy
from trainvitals.training.callbacks import StopReason, TrainerCallback

if TYPE_CHECKING:
    from trainvitals.training.trainer import Trainer

__all__ = ["PostEpochEvaluationCallback"]


class PostEpochEvaluationCallback(TrainerCallback):
    """Automated post-epoch evaluation and hyperparameter suggestions."""

    def __init__(
        self,
        evaluation_epochs: Sequence[int] = (2, 3),
        improvement_threshold: float = 0.01,
        gap_threshold: float = 0.3,
        plateau_window: int = 3,
        auto_adjust: bool = False,
        baseline_loss: float | None = None,
    ) -> None:
        self.evaluator = EpochEvaluator(list(evaluation_epochs), improvement_threshold, gap_threshold,
                                        plateau_window, baseline_loss)
        self.policy = PlateauLRPolicy() if auto_adjust else None

    @classmethod
    def from_trainer(cls, trainer: "Trainer") -> "PostEpochEvaluationCallback | None":
        cfg = trainer.config
        if not cfg.enable_post_epoch_evaluation:
            return None
        return cls(cfg.evaluation_epochs, cfg.improvement_threshold, cfg.gap_threshold, cfg.plateau_window,
                   cfg.auto_adjust, trainer.run_info.get("unigram_entropy"))

    def on_epoch_end(self, trainer: "Trainer", epoch: int, train_loss: float, val_loss: float | None) -> None:
        cfg = trainer.config
        # advice names the settings a user would change: the peak LR flag, not the decayed LR
        info: dict[str, Any] = {
            "lr": cfg.lr * trainer.lr_scale, "weight_decay": cfg.weight_decay, "warmup_steps": cfg.warmup_steps,
            "scheduler": cfg.lr_schedule, "epochs": cfg.epochs, **trainer.run_info,
        }
        report = self.evaluator.update(epoch, train_loss, val_loss, lr=info["lr"], run_info=info)
        for tag, value in report.metrics.items():
            trainer.log(f"evaluation/{tag}", value)
        step_events = [e if e.step is not None else _at_step(e, trainer.global_step) for e in report.events]
        text = format_report(report)
        if text:
            trainer.print("\n" + text)
        trainer.emit(step_events, echo=not text)
        if self.policy is not None:
            for action in self.policy.update(report, trainer.lr):
                trainer.emit(action.event)
                if action.kind == "reduce_lr" and action.old_lr and action.new_lr is not None:
                    trainer.lr_scale *= action.new_lr / action.old_lr
                elif action.kind == "stop":
                    trainer.request_stop(StopReason.EARLY_STOPPING, action.reason)

    def state_dict(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator.state_dict(),
                "policy": self.policy.state_dict() if self.policy else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evaluator.load_state_dict(state["evaluator"])
        if self.policy is not None and state.get("policy"):
            self.policy.load_state_dict(state["policy"])


def _at_step(event, step: int):
    from dataclasses import replace
    return replace(event, step=step)
