"""Post-epoch evaluation: the seed's Enhancement 3 checks as a pure signal.

``EpochEvaluator.update`` takes an epoch's mean train loss and validation loss and
returns an ``EpochReport``: the ``evaluation/*`` metrics (every epoch) and, on the
configured evaluation epochs, a full diagnosis with concrete advice. Two checks run
whatever ``evaluation_epochs`` says: the learning-rate check after epoch 1 and
``no_learning``. ``PlateauLRPolicy`` turns reports into LR cuts and early stops.

Given the step an epoch ended at and the warmup, progress is judged by steps and LR
phase rather than by epoch count (epochs may be far shorter than the warmup): while
the LR still ramps up, nothing is said about slow progress (``lr_too_low``,
``no_learning``, the diagnosis), only a rising loss; "still falling" compares the
val loss with the one ``_PROGRESS_STEPS`` or more steps back, not one epoch back. Given the last finite step loss before a non-finite epoch, a loss that was
healthy just before blames the batch (``bad_batch``), not the learning rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.events import ALERT, INFO, WARNING, Event
from trainvitals.signals.advice import increase_lr, learning_rate, reduce_lr, tighten_clip
from trainvitals.signals.lifecycle import Condition

__all__ = ["EpochReport", "EpochEvaluator", "format_report"]

_SOURCE = "evaluation"
_GOOD_RATE = 0.05      # seed: val improvement > 5%/epoch is good, 1-5% acceptable
_HEALTHY_GAP = 0.10    # seed: gap < 10% healthy; mild up to gap_threshold, severe above
# A gap "widens" when it grows 5 points in one epoch: Scenario 1's stable gap drifts by
# < 2 points an epoch, Scenario 3's grows by 80-120.
_WIDENING = 0.05
_PLATEAU_TOL = 0.01    # seed: < 1% change of val loss per epoch over the window
_NO_LEARNING_FRAC = 0.98  # val within 2% of the unigram entropy (or above): nothing learned
# Underfitting needs the loss "still high": >= 70% of the unigram entropy when that is
# known, otherwise less than 25% of the first epoch's val loss gone.
_HIGH_OF_BASELINE, _HIGH_DROP = 0.70, 0.25
_LR_CUT = 0.5           # seed: "Reduce learning rate by 0.5x"
_LR_CUT_HARD = 1 / 3    # a rising or collapsed loss needs a firmer cut (seed: 3e-4 -> 1e-4)
_LR_RAISE = 3.0
# With steps known, "still falling" is measured over at least this many steps (longer
# epochs: over the previous one). Measured on 10-step epochs of our tiny LM: 20 steps
# still calls a healthy run stuck; 30 does not, and finds a collapse at lr 0.3 by step
# 60 (50: step 90; 100: step 140).
_PROGRESS_STEPS = 30
# A step loss at most this far above the previous epoch's mean is healthy (the
# divergence check's climb): a non-finite loss right after it came from its batch.
_HEALTHY_CLIMB = 0.2
# Common widths, so that advice proposes a size people use (seed: 512 -> 768, 768 -> 512).
_WIDTHS = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
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
    """The seed's post-epoch checks; call ``update`` once per epoch (0-based)."""

    def __init__(self, evaluation_epochs=(2, 3), improvement_threshold: float = 0.01,
                 gap_threshold: float = 0.3, plateau_window: int = 3,
                 baseline_loss: float | None = None) -> None:
        epochs = tuple(evaluation_epochs) if hasattr(evaluation_epochs, "__iter__") else (None,)
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in epochs):
            raise ConfigError(f"evaluation_epochs={evaluation_epochs!r}: expected epoch "
                              "numbers >= 0 (epochs are 0-based)")
        check_range("improvement_threshold", improvement_threshold, 0, 1,
                    lo_open=True, hi_open=True)
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
        self._history: list[list[Any]] = []  # [epoch, train, val, lr, step]; None where unknown
        self._no_learning = Condition("no_learning", _SOURCE)

    def update(self, epoch: int, train_loss: float, val_loss: float | None,
               lr: float | None = None, run_info: dict | None = None, *, step: int | None = None,
               warmup_steps: int | None = None, last_finite_loss: float | None = None,
               lr_now: float | None = None) -> EpochReport:
        """Record one epoch; return its metrics and (on evaluation epochs) findings.

        ``lr`` (else ``run_info["lr"]``) is the peak LR advice names; ``lr_now``, the LR
        in use at ``step``, is named beside it where the two differ.
        Optional, for judging by steps (module doc): ``step``, the optimizer step the
        epoch ended at; ``warmup_steps``, the run's linear warmup; ``last_finite_loss``,
        for an epoch whose train loss is non-finite, the last finite step loss before
        its first non-finite one. None leaves the epoch-count rules as they were.
        """
        train, val = _finite(train_loss), _finite(val_loss)
        # An epoch seen again (resumed from an earlier snapshot) replaces what followed it.
        while self._history and self._history[-1][0] >= epoch:
            self._history.pop()
        self._history.append([epoch, train, val, _finite(lr), step])
        info = dict(run_info or {})
        if "lr" not in info and _finite(lr) is not None:
            info["lr"] = lr
        if warmup_steps is not None:
            info.setdefault("warmup_steps", warmup_steps)
        warming = step is not None and bool(warmup_steps) and step <= warmup_steps
        info["learning_rate"] = learning_rate(_finite(lr_now), _num(info, "lr"), step, warmup_steps)
        evaluated = epoch in self.evaluation_epochs
        report = EpochReport(epoch, evaluated, metrics=self._metrics(),
                             train_loss=train, val_loss=val)
        report.events += self._check_lr(epoch, train_loss, info, warming, _finite(last_finite_loss))
        if not warming:  # a slow start at a ramping LR is what warmup does
            report.events += self._check_no_learning(epoch, val, info, evaluated)
        if evaluated and val is None:
            report.reason = "no validation loss"
        elif evaluated and warming:
            report.reason = f"the learning rate is still warming up (step {step} of {warmup_steps})"
        elif evaluated:
            report.events += self._diagnose(info)
        return report

    def _metrics(self) -> dict[str, float]:
        h = self._history
        found = {"improvement_rate": _rate(h[-2][2], h[-1][2]) if len(h) >= 2 else None,
                 "train_val_gap": _gap(h[-1]), "plateau_detected": self._plateau(2)}
        return {k: float(v) for k, v in found.items() if v is not None}

    def _plateau(self, col: int) -> bool | None:
        """Whether column col (1 train, 2 val) moved < 1% each epoch over the window."""
        window = [e[col] for e in self._history[-self.plateau_window:]]
        if len(window) < self.plateau_window or None in window:
            return None
        return all(abs(b - a) < _PLATEAU_TOL * a for a, b in zip(window, window[1:]))

    # --- checks that run whatever evaluation_epochs says -------------------------------
    def _check_lr(self, epoch: int, raw_train: float, info: dict, warming: bool = False,
                  last_finite: float | None = None) -> list[Event]:
        h = self._history
        if epoch != 1 or len(h) < 2 or h[-2][0] != 0 or h[-2][1] is None:
            return []
        t0, t1 = h[-2][1], _finite(raw_train)
        lr, warmup = _num(info, "lr"), _num(info, "warmup_steps")
        values = {"train_loss_0": t0, "train_loss_1": t1, "lr": lr}
        if t1 is None and last_finite is not None and last_finite <= (1 + _HEALTHY_CLIMB) * t0:
            return [_bad_batch_event(epoch, raw_train, last_finite, t0, values)]
        if t1 is None or t1 > t0:
            sugg = [_lr_change(info, _LR_CUT_HARD),
                    f"Lengthen warmup: {warmup:.0f} → {2 * warmup:.0f} steps" if warmup
                    else "Add or lengthen learning-rate warmup",
                    tighten_clip(_num(info, "gradient_clip")) if "gradient_clip" in info
                    else "Tighten gradient clipping"]
            shown = raw_train if t1 is None else f"{t1:.3f}"
            return [_event("lr_too_high", ALERT, f"Training loss rose in epoch 1: {t0:.3f} → "
                           f"{shown}: learning rate too high (instability)", epoch, sugg, values)]
        drop = _rate(t0, t1)
        if drop is None or drop >= self.improvement_threshold or warming:
            return []
        sugg = [_lr_change(info, _LR_RAISE),
                f"Shorten warmup: {warmup:.0f} → {warmup // 2:.0f} steps" if warmup
                else "Check warmup: a long warmup keeps the learning rate near zero early",
                "Check that the parameters are updating (frozen_parameters events)"]
        return [_event("lr_too_low", WARNING, f"Training loss barely moved in epoch 1: "
                       f"{t0:.3f} → {t1:.3f} ({100 * drop:.1f}%, threshold: "
                       f"{100 * self.improvement_threshold:.1f}%): learning rate may be too low "
                       "(cold start)", epoch, sugg, {**values, "improvement": drop})]

    def _check_no_learning(self, epoch: int, val: float | None, info: dict,
                           evaluated: bool) -> list[Event]:
        b = self.baseline_loss
        if b is None or epoch < 1 or val is None:
            return []
        msg = (f"No learning: val loss {val:.3f} is at the unigram entropy of the data "
               f"({b:.3f} nats): the model predicts no better than token frequencies")
        sugg = [_lr_change(info, _LR_CUT_HARD) + "; a too-high learning rate "
                "collapses a model to the unigram entropy without any NaN",
                "Check the data: targets must be the inputs shifted by one token",
                "Check that the parameters are updating (frozen_parameters events)"]
        values = {"val_loss": val, "baseline_loss": b}
        # Still falling fast (> 5%/epoch) is a run on its way down, not one that is stuck.
        rate = _rate(self._earlier_val(), val)
        falling = rate is not None and rate > _GOOD_RATE
        # A training loss well under the baseline means the model did learn: a val loss up
        # at the baseline then is memorization (overfitting, diagnosed below), not no learning.
        train = self._history[-1][1]
        learned_train = train is not None and train < _NO_LEARNING_FRAC * b
        firing = val >= _NO_LEARNING_FRAC * b and not falling and not learned_train
        events = self._no_learning.observe(
            firing, severity=ALERT, message=msg, epoch=epoch, suggestions=sugg, values=values,
            clear_message=f"no_learning cleared: val loss {val:.3f} is below the unigram "
                          f"entropy {b:.3f}")
        if firing and not events and evaluated:
            # A report on an evaluation epoch is a full diagnosis: restate the alert there.
            events = [_event("no_learning", ALERT, msg, epoch, sugg, values)]
        return events

    def _earlier_val(self) -> float | None:
        """The val loss to measure "still falling" from: the previous epoch's, or, when
        steps are known, the latest one at least _PROGRESS_STEPS steps back (the
        first one if the run is younger), so short epochs are not judged on a few steps."""
        h = self._history
        if len(h) < 2:
            return None
        step = h[-1][4]
        if step is None or any(e[4] is None for e in h[:-1]):
            return h[-2][2]
        known = [e for e in h[:-1] if e[2] is not None]
        back = [e for e in known if e[4] <= step - _PROGRESS_STEPS]
        ref = back[-1] if back else (known[0] if known else None)
        return ref[2] if ref is not None else None

    # --- the diagnosis of an evaluation epoch ------------------------------------------
    def _diagnose(self, info: dict) -> list[Event]:
        h, thr = self._history, self.improvement_threshold
        cur, prev = h[-1], (h[-2] if len(h) >= 2 else [None] * 4)
        epoch = cur[0]
        val_rate, train_rate = _rate(prev[2], cur[2]), _rate(prev[1], cur[1])
        gap, prev_gap = _gap(cur), _gap(prev)
        values = {"val_loss": cur[2], "train_loss": cur[1], "improvement_rate": val_rate,
                  "train_improvement_rate": train_rate, "train_val_gap": gap}
        healthy = min(_HEALTHY_GAP, self.gap_threshold)
        small_gap = gap is None or gap <= healthy
        # Overfitting: the gap is past healthy AND widening, train still falls, and val
        # stalls, rises, or improves at under a quarter of train's pace. A large gap that
        # holds steady while both losses stall (the seed's Scenario 1) is not overfitting.
        overfit = (gap is not None and prev_gap is not None and gap > healthy
                   and gap - prev_gap >= _WIDENING and train_rate >= thr
                   and val_rate < max(thr, train_rate / 4))
        quiet = overfit or self._no_learning.active  # they explain a stalling val loss
        cut = _lr_change(info, _LR_CUT)
        events = []
        if val_rate is not None and val_rate < thr and not quiet:
            msg = f"Slow validation improvement: {100 * val_rate:.1f}% (threshold: {100 * thr:.1f}%)"
            earlier = [(_rate(a[2], b[2]) or 0.0, b[0]) for a, b in zip(h[:-2], h[1:-1])]
            if earlier and max(earlier)[0] > _GOOD_RATE:
                best, at = max(earlier)
                msg += (f"; down from {100 * best:.1f}% at epoch {at}: rapid early gains, then a "
                        "stall, suggest the learning rate now oversteps")
            if not small_gap:
                msg += (f"; the train/val gap ({100 * gap:.1f}%) is large but stable and train "
                        "loss stalls too: not overfitting")
            sugg = [cut, _schedule_advice(info), _warmup_check(info)]
            events.append(_event("slow_improvement", WARNING, msg, epoch,
                                 sugg + ([_more_capacity(info)] if small_gap else []), values))
        if overfit:
            severe = gap > self.gap_threshold
            msg = (f"Overfitting: train/val gap widened {100 * prev_gap:.1f}% → {100 * gap:.1f}% "
                   f"({'severe' if severe else 'mild'}, threshold: {100 * self.gap_threshold:.1f}%);"
                   f" val loss {prev[2]:.3f} → {cur[2]:.3f} while train loss {prev[1]:.3f} → "
                   f"{cur[1]:.3f}")
            events.append(_event("overfitting", WARNING, msg, epoch,
                                 self._regularization_advice(info, severe), values))
        if self._plateau(2) and not quiet:
            sugg = [cut, _schedule_advice(info), "Consider early stopping if this persists"]
            if self._plateau(1) and small_gap:  # both losses flat and no gap: out of room
                sugg.append(_more_capacity(info))
            events.append(_event("plateau", WARNING, f"Loss plateau detected (< "
                                 f"{100 * _PLATEAU_TOL:.0f}% change for {self.plateau_window} "
                                 "epochs)", epoch, sugg, values))
        if not quiet and self._underfitting(healthy):
            msg = (f"Underfitting: train and val losses both falling slowly (val "
                   f"{100 * val_rate:.1f}%, train {100 * train_rate:.1f}% this epoch) with a small "
                   f"gap ({100 * gap:.1f}%): model capacity looks limited")
            events.append(_event("underfitting", WARNING, msg, epoch,
                                 _capacity_advice(info) + [_longer_advice(info)], values))
        return events

    def _underfitting(self, healthy: float) -> bool:
        """Small gap, both losses improving 1-5% an epoch for 2 epochs, loss still high."""
        last = self._history[-3:]
        pairs = list(zip(last, last[1:]))
        val_rates = [_rate(a[2], b[2]) for a, b in pairs]
        train_rates = [_rate(a[1], b[1]) for a, b in pairs]
        gaps = [_gap(e) for e in last[1:]]
        if len(last) < 3 or None in val_rates + train_rates + gaps:
            return False
        val = last[-1][2]
        if self.baseline_loss is not None:
            high = val >= _HIGH_OF_BASELINE * self.baseline_loss
        else:
            first = next(e[2] for e in self._history if e[2] is not None)
            high = (first - val) / first < _HIGH_DROP
        return (high and all(self.improvement_threshold <= r <= _GOOD_RATE for r in val_rates)
                and all(0 < r <= _GOOD_RATE for r in train_rates)
                and all(g < healthy for g in gaps))

    def _regularization_advice(self, info: dict, severe: bool) -> list[str]:
        d, wd = _num(info, "dropout"), _num(info, "weight_decay")
        ls, dm = _num(info, "label_smoothing"), _num(info, "d_model")
        sugg = []
        if d is None or d < 0.5:
            sugg.append("Add dropout: 0.1 in attention and FFN layers" if d is None else
                        f"{'Add' if d < 0.1 else 'Increase'} dropout: {_n(d)} → "
                        f"{_n(max(0.1, d + 0.1))} in attention and FFN layers")
        if wd is None or wd < 0.1:
            sugg.append("Add weight decay: 0.01" if wd is None else
                        f"{'Add' if wd < 0.01 else 'Increase'} weight decay: {_n(wd)} → "
                        f"{_n(max(0.01, min(0.1, wd * 5)))}")
        if not ls:
            sugg.append("Add label smoothing: " + ("0.1" if ls is None else "0.0 → 0.1"))
        if severe:
            smaller = [w for w in _WIDTHS if dm and w < dm]
            sugg.append("Reduce model size if the dataset is small" + (
                f": d_model {dm:.0f} → {smaller[-1]}" if smaller else ""))
        best = min((e for e in self._history if e[2] is not None), key=lambda e: e[2])
        if best[0] != self._history[-1][0]:
            sugg.append(f"Stop early: keep the snapshot from epoch {best[0]} "
                        f"(val loss {best[2]:.3f})")
        return sugg + ["Increase training data (augmentation or more samples)"]

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(e) for e in self._history],
                "no_learning": self._no_learning.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._history = [(list(e) + [None])[:5] for e in state["history"]]  # older: no step
        self._no_learning.load_state_dict(state["no_learning"])


def format_report(report: EpochReport) -> str:
    """The seed's console block for one report ('' for a quiet, unevaluated epoch)."""
    cannot = f"⚠️  Epoch {report.epoch}: Cannot evaluate ({report.reason})" if report.reason else ""
    if not report.events and (cannot or not report.evaluated):
        return cannot
    lines = [_RULE, f"POST-EPOCH EVALUATION (Epoch {report.epoch})", _RULE]
    lines += [cannot] if cannot else []
    issues = [e for e in report.events if e.severity != INFO]
    if not issues and not cannot:
        lines.append("✅ All checks passed - training progressing well")
    elif issues:
        lines.append(f"🔴 {len(issues)} issue(s) detected:")
        for i, event in enumerate(issues, 1):
            lines += ["", f"{i}. {event.message}", "   Suggestions:"]
            lines += [f"     • {s}" for s in event.suggestions]
        lines.append("")
    lines += [f"ℹ️  {e.message}" for e in report.events if e.severity == INFO]
    return "\n".join(lines + [_RULE])


def _bad_batch_event(epoch: int, raw_train: float, last: float, t0: float, values: dict) -> Event:
    return _event("bad_batch", ALERT, f"Training loss became {raw_train} in epoch 1 right after a "
                  f"healthy step loss {last:.3f} (epoch 0 mean: {t0:.3f}): one bad batch, not the "
                  "learning rate", epoch,
                  ["Check the data of the step that went non-finite (the nonfinite_loss event names "
                   "it): extreme values, empty or corrupt sequences, wrong token ids",
                   "Resume from the last finite snapshot, skipping that batch",
                   "Set on_nonfinite_loss = \"skip_step\" so such a step is not applied"],
                  {**values, "last_finite_loss": last})


def _event(kind: str, severity: str, message: str, epoch: int, suggestions, values) -> Event:
    return Event(kind, severity, message, None, epoch, tuple(suggestions), values, _SOURCE)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _rate(before: float | None, after: float | None) -> float | None:
    """Relative improvement, positive when the loss fell."""
    if before is None or after is None or before <= 0:
        return None
    return (before - after) / before


def _gap(entry: list) -> float | None:
    train, val = entry[1], entry[2]
    return None if train is None or val is None or train <= 0 else (val - train) / train


def _num(info: dict, key: str) -> float | None:
    return _finite(info.get(key))


def _lr(x: float) -> str:
    return f"{x:.1e}"


def _n(x: float) -> str:
    return str(round(float(x), 6))


def _lr_change(info: dict, factor: float) -> str:
    """The LR advice of `info`'s learning rate (the peak, and the LR now where it differs)."""
    rate = info.get("learning_rate") or learning_rate(None, _num(info, "lr"))
    return (reduce_lr if factor < 1 else increase_lr)(rate, factor)


def _schedule_advice(info: dict) -> str:
    if "scheduler" not in info:
        return "Add a learning-rate decay schedule (cosine) if the learning rate is constant"
    if info["scheduler"] in (None, "constant", "none"):
        return "Add a learning-rate decay schedule (cosine)"
    return f"Consider ReduceLROnPlateau (auto_adjust) on top of the {info['scheduler']} schedule"


def _warmup_check(info: dict) -> str:
    w = _num(info, "warmup_steps")
    return f"Check that warmup ({w:.0f} steps) is complete" if w else "Check that warmup is complete"


def _capacity_advice(info: dict) -> list[str]:
    dm, nl = _num(info, "d_model"), _num(info, "n_layers")
    wider = [w for w in _WIDTHS if dm and w > dm] or [round(dm * 1.5 / 64) * 64 if dm else 0]
    return [f"Increase d_model: {dm:.0f} → {wider[0]}" if dm
            else "Increase d_model (e.g. 512 → 768)",
            f"Add layers: {nl:.0f} → {max(int(nl) + 1, round(nl * 4 / 3))}" if nl
            else "Add layers (e.g. 6 → 8)"]


def _more_capacity(info: dict) -> str:
    """One line, for checks where more capacity is one option among several."""
    d_model, layers = _capacity_advice(info)
    return f"Increase model capacity: {d_model[9:]}, or {layers[0].lower()}{layers[1:]}"


def _longer_advice(info: dict) -> str:
    ep = _num(info, "epochs")
    return (f"Train longer: {ep:.0f} → {2 * ep:.0f} epochs" if ep
            else "Alternative: train longer (the model may need more epochs)")
