"""When a gradient-gain excursion is an alert: the loss backs it, or the gain exploded.

An alert means the run is failing (DESIGN.md). A gain that drifts, passes its absolute
threshold or jumps while the loss keeps falling is not that: on the advice benchmark's
healthy translation twins the inner mean gain reaches 5-6 and the largest block gain
jumps 10x while the loss falls 15-30% over 25 steps (docs/detectors.md, "When a gain
excursion is an alert"). So the gain detectors (drift, absolute, both jumps) raise a
warning, and escalate it to an alert when, at the same check:

* the loss corroborates it: a non-finite loss so far, or the loss's short EMA fell
  less than `STALL` (1%) from `LOOKBACK` steps before the excursion began (the loss
  stalls or rises), or is more than `RISE` above its lowest point so far; or
* the gain is extreme: an inner mean gain >= `EXPLODED_MEAN_GAIN`, or, for a jump of
  the largest block gain, that gain >= `EXPLODED_BLOCK_GAIN` (the bars `advise` uses
  for "the LR is too high" on gains alone; a healthy byte LM's first block ends near 60,
  reached smoothly, not in a jump).

A non-finite gain is always an alert. The escalation is the lifecycle's: the condition
stays raised as a warning and is re-judged at each check, so a loss that stalls later
turns it into an alert then.

A jump of the global grad norm is one step's gradient, not a level the gains moved to: it
is backed only by a loss that responds (`LossTrend.responds`: non-finite, or its EMA risen
since just before the jump by more than `RISE` and than `RESPONSE_Z` times the EMA's own
noise), never by a loss that merely stopped falling. A converged run's loss is flat, and on
a noisy one (batch 1) its short EMA sits 10-16% above its lowest point by chance: the
Lightning demo's healthy run (docs/detection.md) got an alert from one unclipped outlier
at step 286 that way, its loss not moving.
"""
from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

__all__ = ["LossTrend", "EXPLODED_MEAN_GAIN", "EXPLODED_BLOCK_GAIN"]

_MAD_TO_SIGMA = 1.4826

EXPLODED_MEAN_GAIN = 10.0
EXPLODED_BLOCK_GAIN = 50.0
LOOKBACK = 25  # steps: a falling loss drops well over noise in this many steps in the runs we traced
RISE = 0.02  # over its lowest EMA so far: the loss went back up
# fell less than this over LOOKBACK steps: stalled (the healthy runs we traced fall 2.4-40% over 25 steps
# while a gain moves; a flat loss's EMA wanders by ~0.1%)
STALL = 0.01
_DECAY = 0.9  # per logged loss: ~10 points of memory, smooths one noisy batch away
RESPONSE_Z = 3.0  # a response is an EMA rise past 3 sigma of the EMA's noise (and past RISE)
_NOISE_POINTS = 64  # recent losses whose step-to-step differences give the noise
_KEEP = 2048  # losses kept (live, a flush feeds a few past the gradient step judged)

DEMOTED = " (the loss is still falling: a warning; an alert if the loss stalls or rises, or the gain explodes)"


class LossTrend:
    """The step losses, as a short EMA, and whether they back a gain excursion at a step.
    Fed in step order; `corroborates(step)` reads only losses logged at or before `step`,
    so the live monitor (which feeds a flush's losses before its gradients) and a replay
    (which feeds them up to each gradient step) judge alike."""

    def __init__(self) -> None:
        self._steps: deque[int] = deque(maxlen=_KEEP)
        self._emas: deque[tuple[float, float]] = deque(maxlen=_KEEP)  # (EMA, lowest EMA so far)
        self._ema: float | None = None
        self._low = math.inf
        self._nonfinite_step: int | None = None
        self._first: tuple[int, float] | None = None  # (step, loss) of the first finite loss
        self._recent: deque[float] = deque(maxlen=_NOISE_POINTS)  # raw losses, for their noise

    def observe(self, step: int, loss: float) -> None:
        self.observe_many((step,), (loss,))

    def observe_many(self, steps, losses) -> None:
        """`observe` each (step, loss) in turn (one loop: a replay feeds millions)."""
        last = self._steps[-1] if self._steps else None
        ema, low, first = self._ema, self._low, self._first
        keep_step, keep_ema, keep_loss = self._steps.append, self._emas.append, self._recent.append
        for step, loss in zip(steps, losses):
            if last is not None and step <= last:
                continue  # a step fed twice (a resumed run's overlap): keep the first
            if not -math.inf < loss < math.inf:
                if self._nonfinite_step is None:
                    self._nonfinite_step = step
                continue
            if first is None:
                first = (step, loss)
            ema = loss if ema is None else _DECAY * ema + (1 - _DECAY) * loss
            if ema < low:
                low = ema
            last = step
            keep_step(step)
            keep_ema((ema, low))
            keep_loss(loss)
        self._ema, self._low, self._first = ema, low, first

    def young(self, step: int) -> bool:
        """Too early for the loss to show a trend: under `LOOKBACK` steps since its first value."""
        return self._first is None or step - self._first[0] < LOOKBACK

    def _at(self, step: int) -> tuple[float, float] | None:
        i = bisect.bisect_right(self._steps, step) - 1
        return self._emas[i] if i >= 0 else None

    def corroborates(self, step: int, since: int | None = None) -> bool:
        """The loss stalls, rises or went non-finite, by `step`, for an excursion that began
        at `since` (default: now): stalls means under `STALL` lower than `LOOKBACK` steps
        before the excursion began, so a gain that moved to a new level long ago is not escalated by
        the loss flattening at the end of a schedule."""
        if self._nonfinite_step is not None and self._nonfinite_step <= step:
            return True
        now = self._at(step)
        if now is None:
            return True  # no loss known (a log of gains only): nothing to weigh, the detector's own rule stands
        ema, low = now
        if ema > low * (1 + RISE):
            return True
        before = self._at(min(step, since if since is not None else step) - LOOKBACK)
        if before is None and self._first is not None and step - self._first[0] >= LOOKBACK:
            before = (self._first[1], self._first[1])  # an excursion from the start: from the first loss
        return before is not None and ema > before[0] * (1 - STALL)

    def responds(self, step: int, since: int | None = None) -> bool:
        """The loss responded, by `step`, to an excursion that began at `since` (default: now):
        it went non-finite, or its EMA rose from its value just before `since` by more than
        `RISE` and more than `RESPONSE_Z` standard deviations of the EMA's noise (from the
        step-to-step differences of the recent losses, robustly). A flat loss is no response."""
        if self._nonfinite_step is not None and self._nonfinite_step <= step:
            return True
        now = self._at(step)
        if now is None:
            return True  # no loss known: the detector's own rule stands, as in `corroborates`
        before = self._at((since if since is not None else step) - 1)
        if before is None:
            return False  # nothing before the excursion to rise from
        return now[0] - before[0] > max(RISE * abs(before[0]), RESPONSE_Z * self._ema_noise())

    def _ema_noise(self) -> float:
        """Standard deviation of the EMA around the loss's level: the per-step noise sigma
        (1.4826 x the median absolute step-to-step difference / sqrt 2) x sqrt((1-d)/(1+d))."""
        xs = list(self._recent)
        diffs = [abs(b - a) for a, b in zip(xs, xs[1:])]
        if not diffs:
            return 0.0
        diffs.sort()
        sigma = _MAD_TO_SIGMA * diffs[len(diffs) // 2] / math.sqrt(2)
        return sigma * math.sqrt((1 - _DECAY) / (1 + _DECAY))

    def state_dict(self) -> dict[str, Any]:
        return {"steps": list(self._steps), "emas": [list(e) for e in self._emas], "ema": self._ema,
                "low": self._low if math.isfinite(self._low) else None, "nonfinite_step": self._nonfinite_step,
                "first": list(self._first) if self._first else None, "recent": list(self._recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._steps = deque((int(s) for s in state["steps"]), maxlen=_KEEP)
        self._emas = deque((tuple(e) for e in state["emas"]), maxlen=_KEEP)
        self._ema = state["ema"]
        self._low = state["low"] if state["low"] is not None else math.inf
        self._nonfinite_step = state["nonfinite_step"]
        self._first = tuple(state["first"]) if state.get("first") else None
        self._recent = deque((float(x) for x in state.get("recent", ())), maxlen=_NOISE_POINTS)  # absent from older snapshots
