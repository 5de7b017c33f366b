"""Mean gain drift detection (seed Enhancement 2, with DESIGN.md departures 4-6).

``MeanGainDriftDetector`` is the one the trainer and ``analyze`` use;
``SeedDriftBaseline`` is the seed's code, literally, kept only as a benchmark baseline.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.events import ALERT, INFO, WARNING, Event
from trainvitals.signals.advice import LearningRate, lengthen_warmup, lr_value, reduce_lr, tighten_clip
from trainvitals.signals.gain_gate import DEMOTED
from trainvitals.signals.lifecycle import Condition
from trainvitals.signals.quiet import exact_sum3, run_lengths

__all__ = ["MeanGainDriftDetector", "SeedDriftBaseline", "auto_absolute_threshold", "trimmed_mean"]


def auto_absolute_threshold(num_layers: int) -> float:
    """``1.3 ** (12 / num_layers)``: keeps end-to-end amplification at 1.3^12 ~ 23x."""
    return 1.3 ** (12.0 / num_layers)


def trimmed_mean(values: Any) -> float:
    """The mean without the largest and the smallest value (of 3 or more: the median of 3)."""
    v = sorted(values)
    if len(v) >= 3:
        v = v[1:-1]
    return math.fsum(v) / len(v)


def trimmed_means(windows: np.ndarray) -> np.ndarray:
    """`trimmed_mean` of each row, bit for bit (its `fsum` kept: exact for 3 values, else row by row)."""
    v = np.sort(windows, axis=1)
    if v.shape[1] >= 3:
        v = v[:, 1:-1]
    if v.shape[1] == 3:
        total = exact_sum3(v[:, 0], v[:, 1], v[:, 2])
    elif v.shape[1] <= 2:  # one rounding of the exact sum, as fsum's
        total = v.sum(axis=1)
    else:
        total = np.array([math.fsum(row) for row in v.tolist()])
    return total / v.shape[1]


class MeanGainDriftDetector:
    """Watches the mean per-block gradient gain, one value per monitored step.

    Two conditions, each with the raise-once / info-on-clear lifecycle:

    * ``mean_gain_drift``: the moving average (MA) of the last ``window`` gains, trimmed
      (their mean without the largest and the smallest, so one outlier gain moves it by
      nothing: docs/detectors.md, "One outlier step"), has
      risen by more than ``drift_threshold / 2`` (warning) or ``drift_threshold``
      (alert) relative to the MA ``window`` checks earlier (non-overlapping windows
      once enough history exists, the oldest MA before that). To start, the rise must
      be sustained: on each of the last ``consecutive`` checks the MA went up and the
      drift was above half the threshold. Once raised, it holds while the drift stays
      above half the threshold, and escalates to an alert past the threshold.
      The warning waits for ``settle_steps``: in their first ~55 steps the healthy runs
      we traced have the mean gain dip 5-15% below its value at initialisation and come
      back (docs/detectors.md, "Which gain"), a rise of up to 16% of the moving average that a
      warning would report as drift. Within those steps the condition is tracked as
      ever and an alert is raised once the drift has been past the full threshold for
      ``consecutive`` checks (healthy nanoGPT runs in warmup pass it for one); a warning is said
      only if the drift still holds once the MA it is measured from was itself taken at or
      after ``settle_steps`` (else a gain measured every 10th step compares with the dip
      itself), and its clearing only if it was said.
    * ``mean_gain_absolute``: the latest raw gain is above ``absolute_threshold``
      (raw, not smoothed: a jump of the gain is the earliest sign of a loss spike),
      or the gain is non-finite. It clears after ``consecutive`` finite checks at or
      below the threshold.

    After each update, ``moving_average`` and ``drift`` hold the values to log as
    ``gradient_monitor/mean_gain_ma`` and ``gradient_monitor/mean_gain_drift``.
    ``drift_threshold=math.inf`` disables the detector. It never stops training.
    """

    source = "mean_gain_drift"

    def __init__(
        self,
        drift_threshold: float = 0.1,
        absolute_threshold: float | str = 1.3,
        window: int = 5,
        num_layers: int | None = None,
        consecutive: int = 3,
        *,
        gradient_clip: float | None = None,
        warmup_steps: int | None = None,
        settle_steps: int = 0,
        gate: Callable[[float, int | None], bool] | None = None,
    ) -> None:
        check_type("mean_gain_drift_settle_steps", settle_steps, int)
        check_range("mean_gain_drift_settle_steps", settle_steps, 0)
        check_range("mean_gain_drift_threshold", drift_threshold, 0.0, lo_open=True, allow_inf=True)
        check_type("mean_gain_drift_window", window, int)
        check_range("mean_gain_drift_window", window, 2)
        check_type("mean_gain_drift_consecutive", consecutive, int)
        check_range("mean_gain_drift_consecutive", consecutive, 1)
        if num_layers is not None:
            check_type("num_layers", num_layers, int)
            check_range("num_layers", num_layers, 1)
        if isinstance(absolute_threshold, str):
            if absolute_threshold != "auto":
                raise ConfigError(
                    f"mean_gain_absolute_threshold={absolute_threshold!r}: "
                    "allowed is a number > 1 or 'auto'"
                )
            if num_layers is None:
                raise ConfigError(
                    "num_layers=None: mean_gain_absolute_threshold='auto' needs num_layers >= 1"
                )
            resolved = auto_absolute_threshold(num_layers)
        else:
            check_range(
                "mean_gain_absolute_threshold", absolute_threshold, 1.0, lo_open=True, allow_inf=True
            )
            resolved = float(absolute_threshold)
        if gradient_clip is not None:
            check_range("gradient_clip", gradient_clip, 0.0, allow_inf=True)
        if warmup_steps is not None:
            check_type("warmup_steps", warmup_steps, int)
            check_range("warmup_steps", warmup_steps, 0)

        self.drift_threshold = float(drift_threshold)
        self.absolute_threshold = resolved
        self.window = window
        self.num_layers = num_layers
        self.consecutive = consecutive
        self.gradient_clip = gradient_clip
        self.warmup_steps = warmup_steps
        self.settle_steps = settle_steps
        # may this gain raise an alert now (signals/gain_gate.py)? None: always
        self.gate = gate
        self.enabled = math.isfinite(self.drift_threshold)
        self._held = False  # a drift warning was raised inside settle_steps and not said

        self._raw: deque[float] = deque(maxlen=window)
        # window + 1 MAs: once full, the newest and the oldest average disjoint runs of
        # `window` gains, so drift compares this window's level with the one before.
        self._mas: deque[float] = deque(maxlen=window + 1)
        self._ma_steps: deque[int] = deque(maxlen=window + 1)  # the step of each MA
        self._rises = 0  # consecutive checks on which the MA went up
        self._high = 0  # consecutive checks with drift above half the threshold
        self._past = 0  # consecutive checks with drift above the threshold
        self._calm = 0  # consecutive finite checks at or below the absolute threshold
        self.count = 0  # finite gains folded in
        self.moving_average: float | None = None
        self.drift: float | None = None
        self._drift_cond = Condition("mean_gain_drift", source=self.source)
        self._abs_cond = Condition("mean_gain_absolute", source=self.source)

    def update(self, mean_gain: float, step: int, lr: float | LearningRate | None = None) -> list[Event]:
        """Feed one monitored step's mean gain; return the events it causes. `lr`, the LR
        in use (or a `LearningRate` naming the peak too), shapes the advice."""
        if not self.enabled:
            return []
        g = float(mean_gain)
        if not math.isfinite(g):
            # Kept out of the history: one NaN would poison the MA for `window` checks.
            self._calm = 0
            return self._abs_cond.observe(
                True,
                severity=ALERT,
                message=f"Mean gain is non-finite ({g}) at step {step}",
                step=step,
                suggestions=self._suggestions(step, lr),
                values={"mean_gain": g, "threshold": self.absolute_threshold, "lr": lr_value(lr)},
            )
        self.count += 1
        raw, mas = self._raw, self._mas
        raw.append(g)
        ma = trimmed_mean(raw)
        prev = mas[-1] if mas else None
        mas.append(ma)
        self._ma_steps.append(step)
        self._rises = self._rises + 1 if prev is not None and ma > prev else 0
        ref = mas[0]
        self.moving_average = ma
        d = self.drift = (ma - ref) / ref if len(mas) >= 2 and ref > 0 else None
        half = self.drift_threshold / 2
        self._high = self._high + 1 if d is not None and d > half else 0
        self._past = self._past + 1 if d is not None and d > self.drift_threshold else 0
        # `_check_drift` starts nothing without both counts (the common case: skip the call)
        drifting = self._drift_cond.active or self._high >= self.consecutive <= self._rises
        return (self._check_drift(step, lr) if drifting else []) + self._check_absolute(g, step, lr)

    def quiet_plan(self, gains: np.ndarray, steps: np.ndarray):
        """`update` over `gains` raises nothing (signals/quiet.py): nothing raised or held,
        full windows, every gain finite and under the absolute threshold, and the drift never
        both high and rising for `consecutive` checks. Its commit returns the moving average
        and the drift after each gain (NaN: none), as `update` leaves them."""
        w, n = self.window, len(gains)
        if not self.enabled:
            return lambda: (None, None)
        if (self._drift_cond.active or self._abs_cond.active or self._held or len(self._mas) <= w
                or not np.isfinite(gains).all() or np.any(gains > self.absolute_threshold)):
            return None
        raw = np.concatenate((np.array(self._raw), gains))
        ma = trimmed_means(sliding_window_view(raw, w)[1:])
        mas = np.concatenate((np.array(self._mas), ma))
        rises = run_lengths(ma > mas[w:w + n], self._rises)
        ref = mas[1:n + 1]  # the MA `window` checks before each
        drift = np.full(n, math.nan)
        np.divide(ma - ref, ref, out=drift, where=ref > 0)
        high = run_lengths(drift > self.drift_threshold / 2, self._high)
        if np.any((high >= self.consecutive) & (rises >= self.consecutive)):
            return None

        def commit() -> tuple[np.ndarray, np.ndarray]:
            self._raw.extend(raw[-w:].tolist())
            self._mas.extend(mas[-w - 1:].tolist())
            self._ma_steps.extend(steps[-w - 1:].tolist())
            self._rises, self._high = int(rises[-1]), int(high[-1])
            self._past = int(run_lengths(drift > self.drift_threshold, self._past)[-1])
            self._calm += n
            self.count += n
            self.moving_average = float(ma[-1])
            self.drift = None if math.isnan(drift[-1]) else float(drift[-1])
            return ma, drift
        return commit

    def _check_drift(self, step: int, lr: float | LearningRate | None) -> list[Event]:
        d, ma = self.drift, self.moving_average
        half = self.drift_threshold / 2
        if d is None:
            firing = False
        elif self._drift_cond.active:
            firing = d > half  # hysteresis: one MA dip must not clear and re-raise it
        else:
            # Rising MA alone happens by chance in noise, and one spike lifts the drift
            # for a whole window; requiring both over N checks rejects either alone.
            firing = self._high >= self.consecutive and self._rises >= self.consecutive
        if not (firing or self._drift_cond.active):
            return []  # the common case: nothing starts, clears or is held back
        alert = d is not None and d > self.drift_threshold and self._alert_due(step)
        demoted = alert and not self._gated(self._raw[-1], self._drift_cond.started_step)
        ref = self._mas[0]
        checks = len(self._mas) - 1
        values = {
            "from": ref,
            "to": ma,
            "relative_increase": d,
            "checks": checks,
            "threshold": self.drift_threshold,
            "mean_gain": self._raw[-1],
            "lr": lr_value(lr),
        }
        message = (f"Mean gain drift detected: {ref:.3f} → {ma:.3f} ({100 * d:.1f}% increase over {checks} checks)"
                   + (DEMOTED if demoted else "") if d is not None else "")
        if not firing:
            pct = "n/a" if d is None else f"{100 * d:+.1f}%"
            events = self._drift_cond.observe(
                False,
                step=step,
                values=values,
                clear_message=(
                    f"Mean gain drift cleared at step {step}: moving average {ma:.3f} "
                    f"({pct} over {checks} checks)"
                ),
            )
        else:
            events = self._drift_cond.observe(
                True,
                severity=ALERT if alert and not demoted else WARNING,
                message=message,
                step=step,
                suggestions=self._suggestions(step, lr),
                values=values,
            )
        return self._settle(events, step, lambda: Event(
            "mean_gain_drift", WARNING, message, step, None, tuple(self._suggestions(step, lr)), values, self.source))

    def _gated(self, gain: float, since: int | None) -> bool:
        """May `gain`, of a condition raised at step `since` (None: now), be an alert?"""
        return self.gate is None or self.gate(gain, since)

    def _alert_due(self, step: int) -> bool:
        """Inside `settle_steps` a drift past the threshold must hold for `consecutive` checks:
        healthy nanoGPT runs in warmup lift the trimmed MA 25% for one check (seed 6, step 31)."""
        return step >= self.settle_steps or self._past >= self.consecutive

    def _settle(self, events: list[Event], step: int, warning_now) -> list[Event]:
        """Hold back a drift warning raised inside `settle_steps`, or measured from an MA taken
        inside them (and its clearing); say it, as of now, at the first check past both if the
        condition still holds as a warning."""
        out = []
        settled = step >= self.settle_steps and self._ma_steps[0] >= self.settle_steps
        for e in events:
            if e.severity == WARNING and not settled:
                self._held = True
            elif e.severity == INFO and self._held:
                self._held = False  # cleared inside the transient: nothing was said
            else:
                self._held = self._held and e.severity != ALERT
                out.append(e)
        if self._held and settled and self._drift_cond.active_severity == WARNING:
            out.append(warning_now())
            self._held = False
        return out

    def _check_absolute(self, g: float, step: int, lr: float | LearningRate | None) -> list[Event]:
        thr = self.absolute_threshold
        over = g > thr
        self._calm = 0 if over else self._calm + 1
        # Clearing needs `consecutive` calm checks, so a gain hovering at the threshold
        # gives one alert, not one per crossing.
        firing = over or (self._abs_cond.active and self._calm < self.consecutive)
        if not (firing or self._abs_cond.active):
            return []  # the common case: nothing starts or clears
        values: dict[str, Any] = {"mean_gain": g, "threshold": thr, "lr": lr_value(lr)}
        depth = ""
        if self.num_layers is not None:
            values["num_layers"] = self.num_layers
            values["end_to_end_gain"] = g**self.num_layers
            depth = f" (×{g ** self.num_layers:.1f} end to end over {self.num_layers} layers)"
        if not firing:
            return self._abs_cond.observe(
                False,
                step=step,
                values=values,
                clear_message=(
                    f"Mean gain back under absolute threshold {thr:.2f} at step {step}: "
                    f"{g:.3f} for {self._calm} checks"
                ),
            )
        demoted = not self._gated(g, self._abs_cond.started_step)
        return self._abs_cond.observe(
            True,
            severity=ALERT if over and not demoted else WARNING,
            message=f"Mean gain {g:.3f} exceeds absolute threshold {thr:.2f}{depth}" + (DEMOTED if demoted else ""),
            step=step,
            suggestions=self._suggestions(step, lr),
            values=values,
        )

    def _suggestions(self, step: int, lr: float | LearningRate | None) -> list[str]:
        out = [reduce_lr(lr), tighten_clip(self.gradient_clip)]
        w = self.warmup_steps
        if w is None:
            out.append(lengthen_warmup(None))
        elif step < w:
            # The seed's diagnosis for a gain rising during warmup: warmup too steep.
            out.insert(0, lengthen_warmup(w))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "raw": list(self._raw),
            "mas": list(self._mas),
            "ma_steps": list(self._ma_steps),
            "rises": self._rises,
            "high": self._high,
            "past": self._past,
            "calm": self._calm,
            "count": self.count,
            "moving_average": self.moving_average,
            "drift": self.drift,
            "drift_condition": self._drift_cond.state_dict(),
            "absolute_condition": self._abs_cond.state_dict(),
            "held": self._held,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._raw = deque((float(x) for x in state["raw"]), maxlen=self.window)
        self._mas = deque((float(x) for x in state["mas"]), maxlen=self.window + 1)
        # absent from snapshots written before: the MAs taken as if at step 0
        self._ma_steps = deque(state.get("ma_steps", [0] * len(self._mas)), maxlen=self.window + 1)
        self._rises = int(state["rises"])
        self._high = int(state["high"])
        self._past = int(state.get("past", 0))
        self._calm = int(state["calm"])
        self.count = int(state["count"])
        self.moving_average = state["moving_average"]
        self.drift = state["drift"]
        self._drift_cond.load_state_dict(state["drift_condition"])
        self._abs_cond.load_state_dict(state["absolute_condition"])
        self._held = bool(state.get("held", False))  # absent from snapshots written before settle_steps


class SeedDriftBaseline:
    """The seed's ``_check_mean_gain_drift``, literally: a benchmark baseline only.

    Raw points in a deque of 10; after 3 values, an alert when the current gain is
    above 1.3, else when it is more than 10% above the oldest point in the deque. It
    has no lifecycle: it returns an event on every check where its condition holds,
    as the seed printed one. A NaN gain is silently appended, as in the seed.
    """

    source = "seed_baseline"

    def __init__(
        self,
        drift_threshold: float = 0.1,
        absolute_threshold: float = 1.3,
        maxlen: int = 10,
        *,
        gradient_clip: float | None = None,
    ) -> None:
        self.drift_threshold = drift_threshold
        self.absolute_threshold = absolute_threshold
        self.gradient_clip = gradient_clip
        self._history: deque[float] = deque(maxlen=maxlen)

    def update(self, mean_gain: float, step: int, lr: float | None = None) -> list[Event]:
        current = float(mean_gain)
        self._history.append(current)
        if len(self._history) < 3:
            return []
        suggestions = ["Reduce LR by 0.5x"]
        if self.gradient_clip is not None:
            clip = self.gradient_clip
            suggestions.append(f"Increase gradient_clip: {clip} → {clip * 0.7:.2f}")
        if current > self.absolute_threshold:
            return [Event(
                "mean_gain_absolute", ALERT,
                f"Mean gain {current:.3f} exceeds absolute threshold {self.absolute_threshold}",
                step, None, tuple(suggestions),
                {"mean_gain": current, "threshold": self.absolute_threshold, "lr": lr},
                self.source,
            )]
        oldest = self._history[0]
        relative_increase = (current - oldest) / oldest
        if relative_increase > self.drift_threshold:
            return [Event(
                "mean_gain_drift", ALERT,
                f"Mean gain drift detected: {oldest:.3f} → {current:.3f} "
                f"({100 * relative_increase:.1f}% increase over {len(self._history)} checks)",
                step, None, tuple(suggestions),
                {"from": oldest, "to": current, "relative_increase": relative_increase,
                 "checks": len(self._history), "lr": lr},
                self.source,
            )]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self._history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._history = deque((float(x) for x in state["history"]), maxlen=self._history.maxlen)
