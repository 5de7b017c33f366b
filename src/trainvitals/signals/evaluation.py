"""Post-epoch evaluation: the seed's Enhancement 3 checks as a pure signal.

``EpochEvaluator.update`` takes an epoch's mean train loss and validation loss and
returns an ``EpochReport``: the ``evaluation/*`` metrics (every epoch) and, on the
configured evaluation epochs, a full diagnosis with concrete advice. Two checks run
whatever ``evaluation_epochs`` says: the learning-rate check after epoch 1 and
``no_learning``. ``PlateauLRPolicy`` turns reports into LR cuts and early stops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.events import ALERT, INFO, WARNING, Event
from trainvitals.signals.lifecycle import Condition

__all__ = ["EpochReport", "EpochEvaluator", "format_report", "Action", "PlateauLRPolicy"]

_SOURCE = "evaluation"
_GOOD_RATE = 0.05      # seed: val improvement > 5%/epoch is good, 1-5% acceptable
_HEALTHY_GAP = 0.10    # seed: gap < 10% healthy; mild up to gap_threshold, severe above
# A gap "widens" when it grows 5 points in one epoch: Scenario 1's stable gap drifts by
# < 2 points an epoch, Scenario 3's grows by 80-120.
_WIDENING = 0.05
_PLATEAU_TOL = 0.01    # seed: < 1% change of val loss per epoch over the window
# no_learning: the val loss is within 2% of the unigram entropy, or above it.
_NO_LEARNING_FRAC = 0.98
# Underfitting needs the losses to be "still high": at least 70% of the unigram
# entropy when it is known, otherwise less than 25% gone since the first epoch.
_HIGH_OF_BASELINE = 0.70
_HIGH_DROP = 0.25
_LR_CUT = 0.5           # seed: "Reduce learning rate by 0.5x"
_LR_CUT_UNSTABLE = 1 / 3  # a rising loss needs a firmer cut (seed: 3e-4 -> 1e-4)
_LR_RAISE = 3.0
_RULE = "=" * 70


@dataclass
class EpochReport:
    """What the evaluator found after one epoch."""
    epoch: int
    evaluated: bool
    events: list[Event] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    train_loss: float | None = None
    val_loss: float | None = None


class EpochEvaluator:
    """The seed's post-epoch checks; ``update`` once per epoch (0-based)."""

    def __init__(self, evaluation_epochs=(2, 3), improvement_threshold: float = 0.01,
                 gap_threshold: float = 0.3, plateau_window: int = 3,
                 baseline_loss: float | None = None) -> None:
        try:
            epochs = tuple(evaluation_epochs)
        except TypeError:
            epochs = (None,)
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in epochs):
            raise ConfigError(f"evaluation_epochs={evaluation_epochs!r}: expected epoch numbers "
                              ">= 0 (epochs are 0-based)")
        check_range("improvement_threshold", improvement_threshold, 0, 1, lo_open=True, hi_open=True)
        check_range("gap_threshold", gap_threshold, 0, lo_open=True)
        check_type("plateau_window", plateau_window, int)
        check_range("plateau_window", plateau_window, 2)  # one epoch has no change to measure
        if baseline_loss is not None:
            check_range("baseline_loss", baseline_loss, 0, lo_open=True)
        self.evaluation_epochs = epochs
        self.improvement_threshold = float(improvement_threshold)
        self.gap_threshold = float(gap_threshold)
        self.plateau_window = plateau_window
        self.baseline_loss = baseline_loss
        self._history: list[list[Any]] = []  # [epoch, train, val, lr]; None where unknown
        self._no_learning = Condition("no_learning", _SOURCE)

    def update(self, epoch: int, train_loss: float, val_loss: float | None,
               lr: float | None = None, run_info: dict | None = None) -> EpochReport:
        """Record one epoch and return its metrics and (on evaluation epochs) findings."""
        train, val = _finite(train_loss), _finite(val_loss)
        # An epoch seen again (resumed from an earlier snapshot) replaces what followed it.
        while self._history and self._history[-1][0] >= epoch:
            self._history.pop()
        self._history.append([epoch, train, val, _finite(lr)])
        info = dict(run_info or {})
        if "lr" not in info and _finite(lr) is not None:
            info["lr"] = lr
        evaluated = epoch in self.evaluation_epochs
        report = EpochReport(epoch, evaluated, metrics=self._metrics(), train_loss=train, val_loss=val)
        report.events += self._check_lr(epoch, train_loss, info)
        report.events += self._check_no_learning(epoch, val, info, evaluated)
        if evaluated and val is None:
            report.reason = "no validation loss"
        elif evaluated:
            report.events += self._diagnose(info)
        return report

    # --- metrics -----------------------------------------------------------------------
    def _metrics(self) -> dict[str, float]:
        h, m = self._history, {}
        rate = _rate(h[-2][2], h[-1][2]) if len(h) >= 2 else None
        if rate is not None:
            m["improvement_rate"] = rate
        gap = _gap(h[-1])
        if gap is not None:
            m["train_val_gap"] = gap
        plateau = self._plateau(2)
        if plateau is not None:
            m["plateau_detected"] = float(plateau)
        return m

    def _plateau(self, col: int) -> bool | None:
        """True when column col (1 train, 2 val) moved < 1% each epoch over the window."""
        window = [e[col] for e in self._history[-self.plateau_window:]]
        if len(window) < self.plateau_window or None in window:
            return None
        return all(abs(b - a) < _PLATEAU_TOL * a for a, b in zip(window, window[1:]))

    # --- checks that run whatever evaluation_epochs says -------------------------------
    def _check_lr(self, epoch: int, raw_train: float, info: dict) -> list[Event]:
        h = self._history
        if epoch != 1 or len(h) < 2 or h[-2][0] != 0 or h[-2][1] is None:
            return []
        t0, t1 = h[-2][1], _finite(raw_train)
        lr = _num(info, "lr")
        warmup = _num(info, "warmup_steps")
        if t1 is None or t1 > t0:
            shown = f"{t1:.3f}" if t1 is not None else str(raw_train)
            sugg = [f"Reduce learning rate: {_lr(lr)} → {_lr(lr * _LR_CUT_UNSTABLE)}" if lr
                    else "Reduce learning rate by 3x",
                    f"Lengthen warmup: {int(warmup)} → {int(2 * warmup)} steps" if warmup
                    else "Add or lengthen learning-rate warmup",
                    "Tighten gradient clipping"]
            return [Event("lr_too_high", ALERT,
                          f"Training loss rose in epoch 1: {t0:.3f} → {shown}: learning rate too high "
                          "(instability)", None, epoch, sugg,
                          {"train_loss_0": t0, "train_loss_1": t1, "lr": lr}, _SOURCE)]
        drop = (t0 - t1) / t0 if t0 > 0 else None
        if drop is None or drop >= self.improvement_threshold:
            return []
        sugg = [f"Increase learning rate: {_lr(lr)} → {_lr(lr * _LR_RAISE)}" if lr
                else "Increase learning rate by 3x",
                f"Shorten warmup: {int(warmup)} → {int(warmup // 2)} steps" if warmup
                else "Check warmup: a long warmup keeps the learning rate near zero early",
                "Check that the parameters are updating (frozen_parameters events)"]
        return [Event("lr_too_low", WARNING,
                      f"Training loss barely moved in epoch 1: {t0:.3f} → {t1:.3f} ({100 * drop:.1f}%, "
                      f"threshold: {100 * self.improvement_threshold:.1f}%): learning rate may be too "
                      "low (cold start)", None, epoch, sugg,
                      {"train_loss_0": t0, "train_loss_1": t1, "improvement": drop, "lr": lr}, _SOURCE)]

    def _check_no_learning(self, epoch: int, val: float | None, info: dict,
                           evaluated: bool) -> list[Event]:
        b = self.baseline_loss
        if b is None or epoch < 1 or val is None:
            return []
        firing = val >= _NO_LEARNING_FRAC * b
        lr = _num(info, "lr")
        msg = (f"No learning: val loss {val:.3f} is at the unigram entropy of the data ({b:.3f} "
               "nats): the model predicts no more than token frequencies")
        sugg = [f"Reduce learning rate: {_lr(lr)} → {_lr(lr * _LR_CUT_UNSTABLE)}" if lr
                else "Reduce learning rate by 3x (a too-high LR collapses a model to the unigram "
                     "entropy without any NaN)",
                "Check the data: targets must be the inputs shifted by one token",
                "Check that the parameters are updating (frozen_parameters events)"]
        values = {"val_loss": val, "baseline_loss": b}
        events = self._no_learning.observe(
            firing, severity=ALERT, message=msg, epoch=epoch, suggestions=sugg, values=values,
            clear_message=f"no_learning cleared: val loss {val:.3f} is below the unigram entropy {b:.3f}")
        if firing and not events and evaluated:
            # A report on an evaluation epoch is a full diagnosis: restate the alert there.
            events = [Event("no_learning", ALERT, msg, None, epoch, sugg, values, _SOURCE)]
        return events

    # --- the diagnosis of an evaluation epoch ------------------------------------------
    def _diagnose(self, info: dict) -> list[Event]:
        h, thr = self._history, self.improvement_threshold
        cur, prev = h[-1], (h[-2] if len(h) >= 2 else None)
        epoch = cur[0]
        val_rate = _rate(prev[2], cur[2]) if prev else None
        train_rate = _rate(prev[1], cur[1]) if prev else None
        gap, prev_gap = _gap(cur), (_gap(prev) if prev else None)
        values = {"val_loss": cur[2], "train_loss": cur[1], "improvement_rate": val_rate,
                  "train_improvement_rate": train_rate, "train_val_gap": gap}
        healthy = min(_HEALTHY_GAP, self.gap_threshold)
        severe = gap is not None and gap > self.gap_threshold
        widening = gap is not None and prev_gap is not None and gap - prev_gap >= _WIDENING
        # Overfitting: the gap is past healthy AND widening, train still falls, and val
        # stalls, rises, or improves at under a quarter of train's pace. A large gap that
        # holds steady while both losses stall (the seed's Scenario 1) is not overfitting.
        overfit = (widening and gap > healthy and train_rate is not None and val_rate is not None
                   and train_rate >= thr and val_rate < max(thr, train_rate / 4))
        events = []
        lr = _num(info, "lr")
        cut = (f"Reduce learning rate: {_lr(lr)} → {_lr(lr * _LR_CUT)}" if lr
               else "Reduce learning rate by 0.5x")
        quiet = overfit or self._no_learning.active  # they explain a stalling val loss
        if val_rate is not None and val_rate < thr and not quiet:
            msg = f"Slow validation improvement: {100 * val_rate:.1f}% (threshold: {100 * thr:.1f}%)"
            earlier = [r for r in (_rate(a[2], b[2]) for a, b in zip(h[:-2], h[1:-1])) if r is not None]
            if earlier and max(earlier) > _GOOD_RATE:
                msg += f"; down from {100 * max(earlier):.1f}% earlier, so the LR is now overstepping"
            if gap is not None and gap > healthy:
                msg += (f"; train/val gap {100 * gap:.1f}% is large but stable while train loss "
                        "stalls too: not overfitting")
            sugg = [cut, _schedule_advice(info), _warmup_check(info)]
            if gap is not None and gap <= healthy:
                sugg.append(_more_capacity(info))
            events.append(Event("slow_improvement", WARNING, msg, None, epoch, sugg, values, _SOURCE))
        if overfit:
            band = "severe" if severe else "mild"
            msg = (f"Overfitting: train/val gap widened {100 * prev_gap:.1f}% → {100 * gap:.1f}% "
                   f"({band}, threshold: {100 * self.gap_threshold:.1f}%); val loss {prev[2]:.3f} → "
                   f"{cur[2]:.3f} while train loss {prev[1]:.3f} → {cur[1]:.3f}")
            events.append(Event("overfitting", WARNING, msg, None, epoch,
                                self._regularization_advice(info, severe), values, _SOURCE))
        if self._plateau(2) and not quiet:
            sugg = [cut, _schedule_advice(info), "Consider early stopping if this persists"]
            if self._plateau(1) and (gap is None or gap <= healthy):
                sugg.append(_more_capacity(info))  # both losses flat and no gap: the model is out of room
            events.append(Event("plateau", WARNING,
                                f"Loss plateau detected (< {100 * _PLATEAU_TOL:.0f}% change for "
                                f"{self.plateau_window} epochs)", None, epoch, sugg, values, _SOURCE))
        if not quiet and self._underfitting(healthy):
            msg = (f"Underfitting: train and val losses both falling slowly (val {100 * val_rate:.1f}%, "
                   f"train {100 * train_rate:.1f}% this epoch) with a small gap ({100 * gap:.1f}%): "
                   "model capacity looks limited")
            events.append(Event("underfitting", WARNING, msg, None, epoch,
                                _capacity_advice(info) + [_longer_advice(info)], values, _SOURCE))
        return events

    def _underfitting(self, healthy: float) -> bool:
        """Small gap, both losses improving 1-5% an epoch for 2 epochs, loss still high."""
        last = self._history[-3:]
        if len(last) < 3 or any(e[1] is None or e[2] is None for e in last):
            return False
        pairs = list(zip(last, last[1:]))
        val_rates = [_rate(a[2], b[2]) for a, b in pairs]
        train_rates = [_rate(a[1], b[1]) for a, b in pairs]
        gaps = [_gap(e) for e in last[1:]]
        if None in val_rates + train_rates + gaps:
            return False
        steady_val = all(self.improvement_threshold <= r <= _GOOD_RATE for r in val_rates)
        steady_train = all(0 < r <= _GOOD_RATE for r in train_rates)
        small_gap = all(g < healthy for g in gaps)
        val = last[-1][2]
        if self.baseline_loss is not None:
            high = val >= _HIGH_OF_BASELINE * self.baseline_loss
        else:
            first = next(e[2] for e in self._history if e[2] is not None)
            high = (first - val) / first < _HIGH_DROP
        return steady_val and steady_train and small_gap and high

    def _regularization_advice(self, info: dict, severe: bool) -> list[str]:
        sugg = []
        d = _num(info, "dropout")
        if d is None:
            sugg.append("Add dropout: 0.1 in attention and FFN layers")
        elif d < 0.5:
            sugg.append(f"{'Add' if d < 0.1 else 'Increase'} dropout: {_n(d)} → {_n(max(0.1, d + 0.1))}"
                        " in attention and FFN layers")
        wd = _num(info, "weight_decay")
        if wd is None:
            sugg.append("Add weight decay: 0.01")
        elif wd < 0.1:
            sugg.append(f"{'Add' if wd < 0.01 else 'Increase'} weight decay: {_n(wd)} → "
                        f"{_n(max(0.01, min(0.1, wd * 5)))}")
        ls = _num(info, "label_smoothing")
        if ls is None or ls == 0:
            sugg.append(f"Add label smoothing: {'' if ls is None else '0.0 → '}0.1")
        dm = _num(info, "d_model")
        if severe:
            sugg.append(f"Reduce model size if the dataset is small: d_model {int(dm)} → "
                        f"{max(64, round(dm * 2 / 3 / 64) * 64)}" if dm and dm > 64
                        else "Reduce model size if the dataset is small")
        best = min((e for e in self._history if e[2] is not None), key=lambda e: e[2])
        if best[0] != self._history[-1][0]:
            sugg.append(f"Stop early: keep the snapshot from epoch {best[0]} (val loss {best[2]:.3f})")
        sugg.append("Increase training data (augmentation or more samples)")
        return sugg

    # --- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(e) for e in self._history],
                "no_learning": self._no_learning.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._history = [list(e) for e in state["history"]]
        self._no_learning.load_state_dict(state["no_learning"])


def format_report(report: EpochReport) -> str:
    """The seed's console block for one report ('' for a quiet, unevaluated epoch)."""
    cannot = f"⚠️  Epoch {report.epoch}: Cannot evaluate ({report.reason})" if report.reason else ""
    if not report.events:
        return cannot if report.reason or not report.evaluated else _block(report, [])
    return _block(report, [cannot] if cannot else [])


def _block(report: EpochReport, head: list[str]) -> str:
    lines = [_RULE, f"POST-EPOCH EVALUATION (Epoch {report.epoch})", _RULE] + head
    issues = [e for e in report.events if e.severity != INFO]
    if not issues and not report.reason:
        lines.append("✅ All checks passed - training progressing well")
    elif issues:
        lines.append(f"🔴 {len(issues)} issue(s) detected:")
        for i, event in enumerate(issues, 1):
            lines += ["", f"{i}. {event.message}", "   Suggestions:"]
            lines += [f"     • {s}" for s in event.suggestions]
        lines.append("")
    lines += [f"ℹ️  {e.message}" for e in report.events if e.severity == INFO]
    lines.append(_RULE)
    return "\n".join(lines)


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

    An epoch is "bad" when its report holds a plateau or slow_improvement finding, or
    its val loss did not beat the best. Unlike torch (which cuts after more than
    ``patience`` bad epochs) the LR is cut once ``patience`` bad epochs have been seen,
    because a plateau finding already spans several epochs. Bad epochs during
    ``cooldown`` are not counted. ``early_stop_patience`` epochs with a val loss and no
    new best stop the run (None: never).
    """

    def __init__(self, factor: float = 0.5, patience: int = 1, cooldown: int = 1,
                 min_lr: float = 0.0, early_stop_patience: int | None = 3) -> None:
        check_range("factor", factor, 0, 1, lo_open=True, hi_open=True)
        for name, value, lo in (("patience", patience, 1), ("cooldown", cooldown, 0)):
            check_type(name, value, int)
            check_range(name, value, lo)
        check_range("min_lr", min_lr, 0)
        if early_stop_patience is not None:
            check_type("early_stop_patience", early_stop_patience, int)
            check_range("early_stop_patience", early_stop_patience, 1)
        self.factor, self.patience, self.cooldown = float(factor), patience, cooldown
        self.min_lr, self.early_stop_patience = float(min_lr), early_stop_patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epochs_since_best = 0
        self.bad_epochs = 0
        self.cooldown_left = 0
        self.stopped = False

    def update(self, report: EpochReport, lr: float) -> list[Action]:
        """Return the actions this report calls for (none, a LR cut, or a stop)."""
        val, epoch = report.val_loss, report.epoch
        if self.stopped or val is None:
            return []
        # torch's default relative threshold: a new best must be 0.01% lower.
        improved = self.best is None or val < self.best * (1 - 1e-4)
        if improved:
            self.best, self.best_epoch, self.epochs_since_best = val, epoch, 0
        else:
            self.epochs_since_best += 1
        if self.early_stop_patience is not None and self.epochs_since_best >= self.early_stop_patience:
            self.stopped = True
            reason = (f"no val improvement for {self.epochs_since_best} epochs "
                      f"(best {self.best:.3f} at epoch {self.best_epoch})")
            event = Event("action", INFO, f"auto_adjust: stopping at epoch {epoch}: {reason}",
                          None, epoch, (), {"best_val_loss": self.best, "best_epoch": self.best_epoch},
                          _SOURCE)
            return [Action("stop", epoch, event, reason=reason)]
        findings = [e.kind for e in report.events
                    if e.kind in ("plateau", "slow_improvement") and e.severity != INFO]
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
            return []
        self.bad_epochs = self.bad_epochs + 1 if (findings or not improved) else 0
        new_lr = max(lr * self.factor, self.min_lr) if _finite(lr) is not None else None
        if self.bad_epochs < self.patience or new_lr is None or new_lr >= lr:
            return []
        self.bad_epochs, self.cooldown_left = 0, self.cooldown
        reason = (findings[0].replace("_", " ") if findings else "no val improvement")
        event = Event("action", INFO,
                      f"auto_adjust: learning rate {_lr(lr)} → {_lr(new_lr)} after {reason} at epoch "
                      f"{epoch}", None, epoch, (), {"old_lr": lr, "new_lr": new_lr}, _SOURCE)
        return [Action("reduce_lr", epoch, event, old_lr=lr, new_lr=new_lr, reason=reason)]

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _POLICY_STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in _POLICY_STATE:
            setattr(self, k, state[k])


_POLICY_STATE = ("best", "best_epoch", "epochs_since_best", "bad_epochs", "cooldown_left", "stopped")


# --- small private helpers ------------------------------------------------------------
def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _rate(before: float | None, after: float | None) -> float | None:
    """Relative improvement (positive when the loss fell)."""
    if before is None or after is None or before <= 0:
        return None
    return (before - after) / before


def _gap(entry: list | None) -> float | None:
    if entry is None or entry[1] is None or entry[2] is None or entry[1] <= 0:
        return None
    return (entry[2] - entry[1]) / entry[1]


def _num(info: dict, key: str) -> float | None:
    return _finite(info.get(key))


def _lr(x: float) -> str:
    return f"{x:.1e}"


def _n(x: float) -> str:
    return str(round(float(x), 6))


def _schedule_advice(info: dict) -> str:
    if "scheduler" not in info:
        return "Add a learning-rate decay schedule (cosine) if the learning rate is constant"
    sched = info["scheduler"]
    if sched in (None, "constant", "none"):
        return "Add a learning-rate decay schedule (cosine)"
    return f"Consider ReduceLROnPlateau (auto_adjust) on top of the {sched} schedule"


def _warmup_check(info: dict) -> str:
    w = _num(info, "warmup_steps")
    return f"Check that warmup ({int(w)} steps) is complete" if w else "Check that warmup is complete"


def _capacity_advice(info: dict) -> list[str]:
    dm, nl = _num(info, "d_model"), _num(info, "n_layers")
    sugg = [f"Increase d_model: {int(dm)} → {max(int(dm) + 64, round(dm * 1.5 / 64) * 64)}" if dm
            else "Increase d_model (e.g. 512 → 768)",
            f"Add layers: {int(nl)} → {max(int(nl) + 1, round(nl * 4 / 3))}" if nl
            else "Add layers (e.g. 6 → 8)"]
    return sugg


def _more_capacity(info: dict) -> str:
    """One line for checks where capacity is one option among several."""
    d_model, layers = _capacity_advice(info)
    return f"Increase model capacity: {d_model[9:]}; or {layers[0].lower()}{layers[1:]}"


def _longer_advice(info: dict) -> str:
    ep = _num(info, "epochs")
    return (f"Train longer: {int(ep)} → {2 * int(ep)} epochs" if ep
            else "Alternative: train longer (the model may need more epochs)")
