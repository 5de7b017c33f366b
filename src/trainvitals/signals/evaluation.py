"""Post-epoch evaluation: the seed's Enhancement 3 checks as a pure signal, at every evaluation.

An evaluation is whatever validation a run makes: an epoch end (our `Trainer`), HF
`eval_steps`, nanoGPT's `eval_interval`, Lightning's `val_check_interval`.
``EpochEvaluator.update`` takes one: the mean train loss of the steps since the previous
evaluation and the validation loss. It returns an ``EpochReport``: the ``evaluation/*``
metrics, and the findings (slow improvement, overfitting, plateau, underfitting, a
validation loss well above its best). Every check runs at every evaluation; a finding is
raised when it starts and not again while it persists (``Condition``); on the evaluations
``evaluation_epochs`` names (0-based, as epochs) the full report restates every finding
that holds. The learning-rate check compares the first two evaluations.
``PlateauLRPolicy`` turns reports into LR cuts and early stops.

Given the step of each evaluation and the warmup, progress is judged by steps and LR
phase rather than by counting evaluations (they may be far shorter than the warmup, or
a few steps apart): while the LR still ramps up, nothing is said about slow progress
(``lr_too_low``, ``no_learning``, the diagnosis), only a rising loss; a rate of
improvement compares with the latest evaluation ``PROGRESS_STEPS`` (30) or more steps back,
not merely the previous one; the plateau's "< 1% a check" is scaled to checks closer
than that; slow improvement, plateau and underfitting are left to the schedule while the
LR in use rises (a warmup the run did not name) or once it has decayed to half its peak,
unless the loss is still near a uniform prediction's. Given the last finite step loss before a non-finite train loss, a loss that
was healthy just before blames the batch (``bad_batch``), not the learning rate.
"""
from __future__ import annotations

import math
from typing import Any

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.events import ALERT, WARNING, Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import learning_rate
from trainvitals.signals.evaluation_advice import (
    LR_CUT_HARD, LR_RAISE_FAR, capacity_advice, longer_advice, lr_change, more_capacity, no_learning_advice, num,
    regularization_advice, schedule_advice, stop_early, tighten, uniform_loss, warmup_check)
from trainvitals.signals.evaluation_history import (GOOD_RATE, HOST, PLATEAU_TOL, SLOW, STEP, TRAIN, VAL, History,
                                                   I, at_epoch_end, near_uniform, widening)
from trainvitals.signals.evaluation_history import gap as _gap
from trainvitals.signals.evaluation_lr import check_lr
from trainvitals.signals.evaluation_report import EpochReport, evaluation_where, format_report
from trainvitals.signals.evaluation_report import finite as _finite
from trainvitals.signals.evaluation_report import improvement as _rate
from trainvitals.signals.evaluation_report import report_event as _event
from trainvitals.signals.lifecycle import Condition

__all__ = ["EpochReport", "EpochEvaluator", "format_report"]

_SOURCE = "evaluation"
_HEALTHY_GAP = 0.10    # seed: gap < 10% healthy; mild up to gap_threshold, severe above
_NO_LEARNING_FRAC = 0.98  # val within 2% of the unigram entropy (or above): nothing learned
# A loss within 5% of its start never left it: at lr 1e-5 our LM and translation runs move
# 1.5% in 160 steps (5.545 -> 5.46), where lr 3e-3 reaches 2.55.
_START_BAND = 0.05
_LR_CUT = 0.5           # seed: "Reduce learning rate by 0.5x"
# A finding ends after this many evaluations without it: on evaluations every 10 steps,
# overfitting and slow improvement came and went with the noise of one evaluation.
_CLEAR_AFTER = 3
_FINDINGS = ("slow_improvement", "overfitting", "plateau", "underfitting")
# A schedule that has brought the LR in use to half its peak or less is annealing: a loss that
# improves slowly or plateaus then is what the decay does, not a finding. HF run_clm.py's healthy
# cosine runs were warned of plateau, slow improvement and underfitting at steps 600-800 of 800
# (LR at 0-15% of its peak), nanoGPT's of underfitting at step 200 of 300 (36%); docs/detection.md.
_ANNEALED = 0.5


class EpochEvaluator:
    """The seed's post-epoch checks; call ``update`` at every evaluation (0-based)."""

    def __init__(self, evaluation_epochs=(2, 3), improvement_threshold: float = 0.01,
                 gap_threshold: float = 0.3, plateau_window: int = 3,
                 baseline_loss: float | None = None, val_loss_rise: float = DetectorConfig.val_loss_rise,
                 val_loss_rise_patience: int = DetectorConfig.val_loss_rise_patience) -> None:
        epochs = tuple(evaluation_epochs) if hasattr(evaluation_epochs, "__iter__") else (None,)
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in epochs):
            raise ConfigError(f"evaluation_epochs={evaluation_epochs!r}: expected epoch "
                              "numbers >= 0 (epochs are 0-based)")
        check_range("improvement_threshold", improvement_threshold, 0, 1,
                    lo_open=True, hi_open=True)
        check_range("gap_threshold", gap_threshold, 0, lo_open=True)
        check_type("plateau_window", plateau_window, int)
        check_range("plateau_window", plateau_window, 2)  # one epoch has no change to measure
        check_range("val_loss_rise", val_loss_rise, 0, lo_open=True)
        check_type("val_loss_rise_patience", val_loss_rise_patience, int)
        check_range("val_loss_rise_patience", val_loss_rise_patience, 1)
        if baseline_loss is not None:
            check_range("baseline_loss", baseline_loss, 0, lo_open=True)
        self.evaluation_epochs = epochs
        self.improvement_threshold = float(improvement_threshold)
        self.gap_threshold = float(gap_threshold)
        self.plateau_window = plateau_window
        self.baseline_loss = baseline_loss
        self.val_loss_rise, self.val_loss_rise_patience = float(val_loss_rise), val_loss_rise_patience
        self._history = History()
        self._no_learning = Condition("no_learning", _SOURCE)
        self._findings = {k: Condition(k, _SOURCE) for k in _FINDINGS + ("val_loss_above_best",)}
        self._above_best = 0  # evaluations in a row with the val loss well above its best
        self._not_held: dict[str, int] = {}  # evaluations in a row each finding has not held
        self._lr_top: float | None = None  # the highest LR known so far: the peak set, or seen in use
        self._lr_last: float | None = None  # the schedule's LR at the previous evaluation
        self._lr_rising = self._lr_annealed = False  # at this evaluation: above the last; at half the top or less

    def update(self, epoch: int, train_loss: float, val_loss: float | None,
               lr: float | None = None, run_info: dict | None = None, *, step: int | None = None,
               warmup_steps: int | None = None, last_finite_loss: float | None = None,
               lr_now: float | None = None, host_epoch: float | None = None,
               lr_scale: float = 1.0) -> EpochReport:
        """Record one evaluation; return its metrics and findings.

        ``epoch`` is the evaluation's 0-based number (the epoch, where evaluations are
        epoch ends); ``host_epoch``, the host's epoch at an evaluation that is not an
        epoch end (HF's fractional one, Lightning's; NaN for a host without epochs),
        names it (None: epoch `epoch` ended).
        ``lr`` (else ``run_info["lr"]``) is the peak LR advice names; ``lr_now``, the LR
        in use at ``step``, is named beside it where the two differ.
        Optional, for judging by steps (module doc): ``step``, the optimizer step of the
        evaluation; ``warmup_steps``, the run's linear warmup; ``last_finite_loss``,
        for a non-finite train loss, the last finite step loss before its first
        non-finite one. None leaves the rules counting evaluations.
        ``lr_scale``: the product of the LR cuts the monitor has made (auto_adjust, a
        rollback), so the schedule's own decay is told from them.
        """
        train, val = _finite(train_loss), _finite(val_loss)
        # HF's float epoch, as read back from a log (float32); NaN: a host without epochs
        host = None if host_epoch is None else round(float(host_epoch), 2)
        # An evaluation seen again (resumed from an earlier snapshot) replaces what followed it.
        while self._history and self._history[-1][I] >= epoch:
            self._history.pop()
        self._history.append([epoch, train, val, _finite(lr), step, host])
        info = dict(run_info or {})
        if "lr" not in info and _finite(lr) is not None:
            info["lr"] = lr
        if warmup_steps is not None:
            info.setdefault("warmup_steps", warmup_steps)
        warming = step is not None and bool(warmup_steps) and step <= warmup_steps
        info["learning_rate"] = learning_rate(_finite(lr_now), num(info, "lr"), step, warmup_steps)
        # the schedule's LR: the one in use, the monitor's cuts taken out
        sched = _finite(lr_now) / lr_scale if _finite(lr_now) is not None and lr_scale > 0 else None
        peak = num(info, "lr")
        tops = [x for x in (self._lr_top, sched, peak / lr_scale if peak and lr_scale > 0 else None) if x]
        self._lr_top = max(tops) if tops else None
        self._lr_rising = sched is not None and self._lr_last is not None and sched > self._lr_last
        self._lr_last = sched if sched is not None else self._lr_last
        self._lr_annealed = sched is not None and self._lr_top is not None and sched <= _ANNEALED * self._lr_top
        info["lr_rising"] = self._lr_rising
        evaluated = epoch in self.evaluation_epochs
        report = EpochReport(epoch, evaluated, metrics=self._metrics(), train_loss=train, val_loss=val,
                             step=step, host_epoch=host)
        lr_events = self._check_lr(report, train_loss, info, _finite(last_finite_loss))
        report.events += lr_events
        if not warming:  # a slow start at a ramping LR is what warmup does
            report.events += self._check_no_learning(report, val, info)
        report.events += self._check_above_best(report, info)
        if evaluated and val is None:
            report.reason = "no validation loss"
        elif evaluated and warming:
            report.reason = f"the learning rate is still warming up (step {step} of {warmup_steps})"
        if val is not None and not warming:
            report.events += self._diagnose(report, info, explained=bool(lr_events))
        return report

    def _metrics(self) -> dict[str, float]:
        h = self._history
        ref = self._history.ref(len(h) - 1)
        found = {"improvement_rate": _rate(h[ref][VAL], h[-1][VAL]) if ref is not None else None,
                 "train_val_gap": _gap(h[-1]), "plateau_detected": self._history.plateau(VAL, self.plateau_window)}
        return {k: float(v) for k, v in found.items() if v is not None}

    # --- checks that run whatever evaluation_epochs says -------------------------------
    def _check_lr(self, report: EpochReport, raw_train: float, info: dict,
                  last_finite: float | None = None) -> list[Event]:
        h = self._history
        if report.epoch != 1 or len(h) < 2 or h[-2][I] != 0 or h[-2][TRAIN] is None:
            return []
        return check_lr(h[-2][TRAIN], raw_train, report, info, self.improvement_threshold, last_finite)

    def _check_no_learning(self, report: EpochReport, val: float | None, info: dict) -> list[Event]:
        """An alert: the val loss at the unigram entropy (`baseline_loss`) and not falling
        fast, or at or above a uniform prediction's loss. Its advice follows the loss's
        path: a loss that never left its starting level had too low a learning rate; one
        that fell and came back up, or sits above a uniform prediction, collapsed."""
        b, u = self.baseline_loss, uniform_loss(info)
        if (b is None and u is None) or report.epoch < 1 or val is None:
            return []
        h = self._history
        # Still falling fast (> 5%/epoch) is a run on its way down, not one that is stuck.
        ref = self._history.ref(len(h) - 1)
        rate = _rate(h[ref][VAL], val) if ref is not None else None
        falling = rate is not None and rate > GOOD_RATE
        # A training loss well under the baseline means the model did learn: a val loss up
        # at the baseline then is memorization (overfitting, diagnosed below), not no learning.
        train = h[-1][TRAIN]
        learned_train = b is not None and train is not None and train < _NO_LEARNING_FRAC * b
        at_baseline = b is not None and val >= _NO_LEARNING_FRAC * b and not falling and not learned_train
        above = u is not None and val >= u
        firing = at_baseline or above  # worse than no model at all, falling or not
        start = u if u is not None else h[0][TRAIN] or h[0][VAL]
        seen = [x for e in h for x in (e[TRAIN], e[VAL]) if x is not None]
        never_left = start is not None and all(abs(x - start) <= _START_BAND * start for x in seen)
        lowest = min(e[VAL] for e in h if e[VAL] is not None)
        came_back = lowest < _NO_LEARNING_FRAC * val
        cause = ("too_low" if never_left else "above_uniform" if above else "came_back" if came_back
                 else "stalled" if self._history.early_gains(u) else "slow")
        msg, sugg = no_learning_advice(info, cause, val, b, u, start, lowest)
        values = {"val_loss": val, "baseline_loss": b, "uniform_loss": u, "start_loss": start}
        below = "the unigram entropy" if b is not None else "a uniform prediction's loss"
        return self._observe(self._no_learning, firing, report, ALERT, msg, sugg, values,
                             f"no_learning cleared: val loss {val:.3f} is below {below}")

    def _check_above_best(self, report: EpochReport, info: dict) -> list[Event]:
        """A val loss `val_loss_rise` above its best for `val_loss_rise_patience`
        evaluations in a row: the run is getting worse, whatever the reason (an alert)."""
        h = self._history
        earlier = [e for e in h[:-1] if e[VAL] is not None]
        val = h[-1][VAL]
        if val is None or not earlier:
            return []
        best = min(earlier, key=lambda e: e[VAL])
        above = val > best[VAL] * (1 + self.val_loss_rise)
        self._above_best = self._above_best + 1 if above else 0
        cond = self._findings["val_loss_above_best"]
        # once raised, it holds while the val loss stays above (a dip below starts no new count)
        firing = above and (cond.active or self._above_best >= self.val_loss_rise_patience)
        where = evaluation_where(best[I], best[STEP], best[HOST])
        rise = val / best[VAL] - 1 if best[VAL] > 0 else math.inf
        msg = (f"Validation loss {val:.3f} is {100 * rise:.0f}% above its best ({best[VAL]:.3f} at {where}) "
               f"for {self._above_best} evaluations in a row (threshold: {100 * self.val_loss_rise:.0f}% "
               f"for {self.val_loss_rise_patience}): the run is getting worse")
        sugg = [stop_early(where, best[VAL])]
        train_fell = _rate(best[TRAIN], h[-1][TRAIN])
        if train_fell is not None and train_fell > 0:  # train still improves: memorization
            msg += f"; the training loss fell {best[TRAIN]:.3f} → {h[-1][TRAIN]:.3f} meanwhile (overfitting)"
            sugg += regularization_advice(info, False, None)[:3]
        else:
            sugg += [lr_change(info, LR_CUT_HARD), tighten(info)]
        values = {"val_loss": val, "best_val_loss": best[VAL], "best_step": best[STEP],
                  "evaluations_above": self._above_best, "rise": rise}
        return self._observe(cond, firing, report, ALERT, msg, sugg, values,
                             f"val_loss_above_best cleared: val loss {val:.3f} is within "
                             f"{100 * self.val_loss_rise:.0f}% of its best {best[VAL]:.3f}")

    def _observe(self, cond: Condition, firing: bool, report: EpochReport, severity: str, msg: str,
                 sugg: list[str], values: dict, clear: str) -> list[Event]:
        """One event when the condition starts, none while it holds, info when it has not
        held for _CLEAR_AFTER evaluations (one noisy evaluation does not end a finding, nor
        start it again); a full report (an evaluation `evaluation_epochs` names) restates
        what holds."""
        quiet = 0 if firing else self._not_held.get(cond.kind, 0) + 1
        self._not_held[cond.kind] = quiet
        if cond.active and 0 < quiet < _CLEAR_AFTER and cond.kind in self._findings:
            return []
        events = cond.observe(firing, severity=severity, message=msg, step=report.step,
                              epoch=report.event_epoch, suggestions=sugg, values=values, clear_message=clear)
        if firing and not events and report.evaluated:
            events = [_event(cond.kind, cond.active_severity or severity, msg, report, sugg, values)]
        return events

    # --- the diagnosis: at every evaluation with a val loss ----------------------------
    def _diagnose(self, report: EpochReport, info: dict, explained: bool = False) -> list[Event]:
        """`explained`: an LR finding of this evaluation already accounts for a stall."""
        h, thr = self._history, self.improvement_threshold
        ref = self._history.ref(len(h) - 1)
        cur, prev = h[-1], (h[ref] if ref is not None else [None] * 6)
        val_rate, train_rate = _rate(prev[VAL], cur[VAL]), _rate(prev[TRAIN], cur[TRAIN])
        gap, prev_gap = _gap(cur), _gap(prev)
        values = {"val_loss": cur[VAL], "train_loss": cur[TRAIN], "improvement_rate": val_rate,
                  "train_improvement_rate": train_rate, "train_val_gap": gap}
        if _finite(report.host_epoch) is not None:
            values["epoch"] = report.host_epoch
        healthy = min(_HEALTHY_GAP, self.gap_threshold)
        small_gap = gap is None or gap <= healthy
        # Overfitting (`_widening`). A large gap that holds steady while both losses stall
        # (the seed's Scenario 1) is not overfitting.
        overfit = widening(prev, cur, healthy, thr)
        best = min((e for e in h[:-1] if e[VAL] is not None), key=lambda e: e[VAL], default=None)
        if not overfit and best is not None and cur[VAL] >= best[VAL] * (1 + thr) and widening(best, cur, healthy, thr):
            # val back above its best while train fell since: measured from there, whatever the
            # evaluations' spacing (with evaluations every 5 steps, the span `_ref` compares
            # reaches back into the first fast descent and hides the turn)
            overfit, prev, prev_gap = True, best, _gap(best)
        quiet = overfit or explained or self._no_learning.active  # they explain a stalling val loss
        # The LR is ruled out before capacity is named: a loss still near a uniform
        # prediction's that never fell fast had too low an LR; one that fell fast and then
        # stalled may overstep; only one that fell steadily is the model's limit. A loss
        # falling slowly from its start is never told to cut.
        gains = self._history.early_gains(uniform_loss(info))
        low = gains is None and near_uniform(cur[VAL], info)
        # the rate findings below are left to the schedule while it raises the LR (a warmup the
        # run did not name: what warmup does, as above) and once it has annealed it, unless the
        # loss never left a uniform prediction's: a decay explains a slowing run that learned,
        # not one that never did (HF's default linear decay has halved the LR by mid-run; a
        # GPT-2 from scratch at its default 5e-5 would be told nothing is wrong)
        annealed = self._lr_rising or (self._lr_annealed and not low)
        first = (lr_change(info, LR_RAISE_FAR),) if low else (lr_change(info, _LR_CUT),) if gains else ()
        why = (f"; the val loss is still within {100 * SLOW:.0f}% of a uniform prediction's loss "
               f"({uniform_loss(info):.3f}) and never fell fast: the learning rate is too low" if low else
               f"; down from {100 * gains[0]:.1f}% at {gains[1]}: rapid early gains, then a stall, suggest the "
               "learning rate now oversteps" if gains else "")
        found: dict[str, tuple[str, list[str]]] = {}
        if val_rate is not None and val_rate < thr and not (quiet or annealed) and \
                (at_epoch_end(report) or self._history.slow_before(thr)):
            msg = f"Slow validation improvement: {100 * val_rate:.1f}% (threshold: {100 * thr:.1f}%){why}"
            if not small_gap:
                msg += (f"; the train/val gap ({100 * gap:.1f}%) is large but stable and train "
                        "loss stalls too: not overfitting")
            found["slow_improvement"] = (msg, [*first, schedule_advice(info), warmup_check(info)]
                                         + ([more_capacity(info)] if small_gap and not low else []))
        if overfit:
            severe = gap > self.gap_threshold
            msg = (f"Overfitting: train/val gap widened {100 * prev_gap:.1f}% → {100 * gap:.1f}% "
                   f"({'severe' if severe else 'mild'}, threshold: {100 * self.gap_threshold:.1f}%);"
                   f" val loss {prev[VAL]:.3f} → {cur[VAL]:.3f} while train loss {prev[TRAIN]:.3f} → "
                   f"{cur[TRAIN]:.3f}")
            at_best = None if best is None or best[VAL] >= cur[VAL] else \
                (evaluation_where(best[I], best[STEP], best[HOST]), best[VAL])
            found["overfitting"] = (msg, regularization_advice(info, severe, at_best))
        if self._history.plateau(VAL, self.plateau_window) and not (quiet or annealed):
            sugg = [*first, schedule_advice(info), "Consider early stopping if this persists"]
            if self._history.plateau(TRAIN, self.plateau_window) and small_gap and not low:  # both losses flat and no gap: out of room
                sugg.append(more_capacity(info))
            unit = "epochs" if report.host_epoch is None else "evaluations"
            found["plateau"] = (f"Loss plateau detected (< {100 * PLATEAU_TOL:.0f}% change for "
                                f"{self.plateau_window} {unit}){why}", sugg)
        if not (quiet or annealed) and self._history.underfitting(healthy, thr, self.baseline_loss):
            found["underfitting"] = (
                f"Underfitting: train and val losses both falling slowly (val {100 * val_rate:.1f}%, train "
                f"{100 * train_rate:.1f}% since {evaluation_where(prev[I], prev[STEP], prev[HOST])}) "
                f"with a small gap ({100 * gap:.1f}%)" + (why + (", not the model's capacity" if low else
                                                                 ": rule it out before adding capacity")
                                                          if first else ": model capacity looks limited"),
                [*first] + ([] if low else capacity_advice(info)) + [longer_advice(info)])
        events = []
        for kind in _FINDINGS:
            msg, sugg = found.get(kind, ("", []))
            events += self._observe(self._findings[kind], kind in found, report, WARNING, msg, sugg, values,
                                    f"{kind} cleared at {report.where}")
        return events

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(e) for e in self._history],
                "no_learning": self._no_learning.state_dict(), "above_best": self._above_best,
                "not_held": dict(self._not_held), "lr_top": self._lr_top, "lr_last": self._lr_last,
                "lr_rising": self._lr_rising, "lr_annealed": self._lr_annealed,
                "findings": {k: c.state_dict() for k, c in self._findings.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._history = History((list(e) + [None, None])[:6] for e in state["history"])  # older: no step, epoch
        self._no_learning.load_state_dict(state["no_learning"])
        self._above_best = state.get("above_best", 0)
        self._not_held = dict(state.get("not_held", {}))
        self._lr_top, self._lr_last = state.get("lr_top"), state.get("lr_last")  # absent from older snapshots
        self._lr_rising, self._lr_annealed = bool(state.get("lr_rising")), bool(state.get("lr_annealed"))
        for k, c in self._findings.items():
            if k in state.get("findings", {}):
                c.load_state_dict(state["findings"][k])
