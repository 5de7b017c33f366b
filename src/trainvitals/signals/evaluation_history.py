"""The evaluations a run has made, and what they say: how fast the losses improve
(over enough steps, not merely since the previous evaluation), whether they have
stalled, how the train/val gap moves. `EpochEvaluator` keeps one `History` and asks it.
"""
from __future__ import annotations

import math

from trainvitals.signals.evaluation_advice import uniform_loss
from trainvitals.signals.evaluation_report import EpochReport, evaluation_where
from trainvitals.signals.evaluation_report import improvement as rate

__all__ = ["History", "at_epoch_end", "gap", "near_uniform", "widening"]

# an entry: [index, train, val, lr, step, host epoch]; None where unknown
I, TRAIN, VAL, LR, STEP, HOST = range(6)

GOOD_RATE = 0.05      # seed: val improvement > 5%/epoch is good, 1-5% acceptable
# A gap "widens" when it grows 5 points in one epoch: Scenario 1's stable gap drifts by
# < 2 points an epoch, Scenario 3's grows by 80-120.
WIDENING = 0.05
PLATEAU_TOL = 0.01    # seed: < 1% change of val loss per epoch over the window
# A loss still within 25% of a uniform prediction's has learned little: HF's 5e-5 from
# scratch ends 9% under it (x10 LR: 33%; 3e-3: 49%), our LM at 3e-3 41% under by step 40.
SLOW = 0.25
# Underfitting needs the loss "still high": >= 70% of the unigram entropy when that is
# known, otherwise less than 25% of the first evaluation's val loss gone.
HIGH_OF_BASELINE, HIGH_DROP = 0.70, 0.25
# With steps known, "still falling" is measured over at least this many steps (longer
# epochs: over the previous one). Measured on 10-step epochs of our tiny LM: 20 steps
# still calls a healthy run stuck; 30 does not, and finds a collapse at lr 0.3 by step
# 60 (50: step 90; 100: step 140).
PROGRESS_STEPS = 30


class History(list):
    """The evaluations so far, oldest first, each an entry as above."""

    def ref(self, pos: int) -> int | None:
        """The evaluation that entry `pos` is compared with: the previous one with a val
        loss, or, when steps are known, the latest one at least PROGRESS_STEPS steps back
        (the first if the run is younger), so close evaluations are not judged on a few steps."""
        known = [k for k in range(pos) if self[k][VAL] is not None]
        if not known:
            return None
        step = self[pos][STEP]
        if step is None or any(self[k][STEP] is None for k in known):
            return known[-1]
        back = [k for k in known if self[k][STEP] <= step - PROGRESS_STEPS]
        return back[-1] if back else known[0]

    def plateau(self, col: int, window: int) -> bool | None:
        """Whether column col (train or val) moved < 1% at each of the last `window`
        evaluations (< 1% per PROGRESS_STEPS steps for evaluations closer than that)."""
        last = self[-window:]
        if len(last) < window or any(e[col] is None for e in last):
            return None
        return all(abs(b[col] - a[col]) < PLATEAU_TOL * _span_share(a, b) * a[col] for a, b in zip(last, last[1:]))

    def slow_before(self, threshold: float) -> bool:
        """Whether the evaluation before the last improved under `threshold` too. Between
        epoch ends one pair of evaluations is not enough: they are close, and often estimates
        from a few batches (nanoGPT's `eval_iters`: 2-4% apart at 50-step spacing on healthy
        runs, where one pair under 1% warned 7 of 7 seeds)."""
        ref = self.ref(len(self) - 2) if len(self) >= 2 else None
        r = rate(self[ref][VAL], self[-2][VAL]) if ref is not None else None
        return r is not None and r < threshold

    def early_gains(self, uniform: float | None) -> tuple[float, str] | None:
        """The fastest earlier improvement, (rate, where), when one beat GOOD_RATE (over
        the steps `ref` compares); with the uniform loss known, a first val loss already
        SLOW below it counts too (from initialisation to the first evaluation)."""
        spans = [(rate(self[r][VAL], self[k][VAL]) or 0.0, k) for k in range(1, len(self) - 1)
                 for r in [self.ref(k)] if r is not None]
        best, k = max(spans, default=(0.0, 0))
        if best > GOOD_RATE:
            return best, evaluation_where(self[k][I], self[k][STEP], self[k][HOST])
        v0 = next((e for e in self if e[VAL] is not None), None)
        if uniform is not None and v0 is not None and not near_uniform(v0[VAL], {"uniform_loss": uniform}):
            return 1 - v0[VAL] / uniform, evaluation_where(v0[I], v0[STEP], v0[HOST])
        return None

    def underfitting(self, healthy: float, threshold: float, baseline_loss: float | None) -> bool:
        """Small gap, both losses improving 1-5% an evaluation (over the steps `ref`
        compares) for 2 evaluations, loss still high."""
        pos = [len(self) - 1]
        for _ in range(2):
            r = self.ref(pos[0])
            if r is None:
                return False
            pos.insert(0, r)
        last = [self[k] for k in pos]
        pairs = list(zip(last, last[1:]))
        val_rates = [rate(a[VAL], b[VAL]) for a, b in pairs]
        train_rates = [rate(a[TRAIN], b[TRAIN]) for a, b in pairs]
        gaps = [gap(e) for e in last[1:]]
        if None in val_rates + train_rates + gaps:
            return False
        val = last[-1][VAL]
        if baseline_loss is not None:
            high = val >= HIGH_OF_BASELINE * baseline_loss
        else:
            first = next(e[VAL] for e in self if e[VAL] is not None)
            high = (first - val) / first < HIGH_DROP
        return (high and all(threshold <= r <= GOOD_RATE for r in val_rates)
                and all(0 < r <= GOOD_RATE for r in train_rates)
                and all(g < healthy for g in gaps))


def widening(prev: list, cur: list, healthy: float, threshold: float) -> bool:
    """Overfitting from `prev` to `cur`: the gap is past healthy AND widening, train
    still falls, and val stalls, rises, or improves at under a quarter of train's pace."""
    g, prev_g = gap(cur), gap(prev)
    train_rate, val_rate = rate(prev[TRAIN], cur[TRAIN]), rate(prev[VAL], cur[VAL])
    return (g is not None and prev_g is not None and g > healthy and g - prev_g >= WIDENING
            and train_rate >= threshold and val_rate < max(threshold, train_rate / 4))


def near_uniform(val: float | None, info: dict) -> bool:
    u = uniform_loss(info)
    return u is not None and val is not None and val >= (1 - SLOW) * u


def at_epoch_end(report: EpochReport) -> bool:
    """An evaluation at an epoch's end (the seed's unit), not one every N steps."""
    e = report.host_epoch
    return e is None or (math.isfinite(e) and e == int(e))


def gap(entry: list) -> float | None:
    train, val = entry[TRAIN], entry[VAL]
    return None if train is None or val is None or train <= 0 else (val - train) / train


def _span_share(a: list, b: list) -> float:
    """The share of PROGRESS_STEPS that the steps from entry a to b make (1 if longer or unknown)."""
    if a[STEP] is None or b[STEP] is None:
        return 1.0
    return min(1.0, max(b[STEP] - a[STEP], 1) / PROGRESS_STEPS)
