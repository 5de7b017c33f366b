"""auto_adjust: when to cut the LR (as ReduceLROnPlateau would) and when to stop early.

Pure: decides from the post-epoch evaluation's reports; the callback applies the actions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainvitals.errors import check_range, check_type
from trainvitals.events import INFO, Event
from trainvitals.signals.advice import fmt_lr
from trainvitals.signals.evaluation_report import EpochReport
from trainvitals.signals.evaluation_report import finite as _finite
from trainvitals.signals.evaluation_report import report_event as _event

__all__ = ["Action", "PlateauLRPolicy"]


@dataclass(frozen=True)
class Action:
    """Something auto_adjust should do: "reduce_lr" (old_lr → new_lr) or "stop"."""
    kind: str
    epoch: int
    event: Event
    old_lr: float | None = None
    new_lr: float | None = None
    reason: str = ""


class PlateauLRPolicy:
    """Decide LR cuts and early stops from reports, in the manner of ReduceLROnPlateau.

    An epoch is "bad" when its val loss does not beat the best, or its report holds a
    plateau finding (under 1% change over the plateau window): a real plateau. A val loss
    still reaching new bests, however slowly (a slow_improvement finding alone), is not
    one: a decaying schedule ends that way in a healthy run. The LR is cut by ``factor``
    (not below ``min_lr``) once ``patience`` bad epochs have been seen in a row (torch
    waits for more than ``patience``; here a plateau finding already spans several
    epochs), then ``cooldown`` epochs are not counted. ``early_stop_patience`` epochs with
    a val loss and no new best stop the run (None: never). At the run's last evaluation
    (``final``) nothing is done: no step is left for a cut or a stop to matter.
    """

    def __init__(self, factor: float = 0.5, patience: int = 1, cooldown: int = 1,
                 min_lr: float = 0.0, early_stop_patience: int | None = 3) -> None:
        check_range("factor", factor, 0, 1, lo_open=True, hi_open=True)
        for name, value, lo in (("patience", patience, 1), ("cooldown", cooldown, 0),
                                ("early_stop_patience", early_stop_patience, 1)):
            if value is not None or name != "early_stop_patience":
                check_type(name, value, int)
                check_range(name, value, lo)
        check_range("min_lr", min_lr, 0)
        self.factor, self.patience, self.cooldown = float(factor), patience, cooldown
        self.min_lr, self.early_stop_patience = float(min_lr), early_stop_patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_since_best = self.bad_epochs = self.cooldown_left = 0
        self.stopped = False
        self.best_where = ""

    def update(self, report: EpochReport, lr: float, final: bool = False) -> list[Action]:
        """Return the actions this report calls for: none, a LR cut, or a stop. `final`:
        the run's last evaluation (no action)."""
        val, epoch = report.val_loss, report.epoch
        if self.stopped or val is None:
            return []
        improved = self.best is None or val < self.best * (1 - 1e-4)  # torch's default
        if improved:
            self.best, self.best_epoch, self.epochs_since_best = val, epoch, 0
            self.best_where = report.where
        else:
            self.epochs_since_best += 1
        if final:
            return []
        if self.early_stop_patience and self.epochs_since_best >= self.early_stop_patience:
            self.stopped = True
            unit = "epochs" if report.host_epoch is None else "evaluations"
            reason = (f"no val improvement for {self.epochs_since_best} {unit} "
                      f"(best {self.best:.3f} at {self.best_where})")
            event = _event("action", INFO, f"auto_adjust: stopping at {report.where}: {reason}",
                           report, (), {"best_val_loss": self.best, "best_epoch": self.best_epoch})
            return [Action("stop", epoch, event, reason=reason)]
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
            return []
        findings = [e.kind for e in report.events if e.kind == "plateau" and e.severity != INFO]
        self.bad_epochs = self.bad_epochs + 1 if (findings or not improved) else 0
        new_lr = max(lr * self.factor, self.min_lr) if _finite(lr) is not None else None
        if self.bad_epochs < self.patience or new_lr is None or new_lr >= lr:
            return []
        self.bad_epochs, self.cooldown_left = 0, self.cooldown
        reason = findings[0] if findings else "no val improvement"
        event = _event("action", INFO, f"auto_adjust: learning rate {fmt_lr(lr)} → {fmt_lr(new_lr)} "
                       f"after {reason} at {report.where}", report, (),
                       {"old_lr": lr, "new_lr": new_lr})
        return [Action("reduce_lr", epoch, event, old_lr=lr, new_lr=new_lr, reason=reason)]

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _POLICY_STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = {"best_where": f"epoch {state['best_epoch']}", **state}  # older snapshots: epochs only
        for k in _POLICY_STATE:
            setattr(self, k, state[k])


_POLICY_STATE = ("best", "best_epoch", "best_where", "epochs_since_best", "bad_epochs", "cooldown_left",
                 "stopped")


# --- small private helpers ------------------------------------------------------------
