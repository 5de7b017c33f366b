"""Step-level loss failure detectors: spikes, divergence, a loss creeping up as the LR rises.

All are one-sided (only a loss going up is news) and say nothing until they have
enough history. Non-finite losses are ignored here; the loss monitor reports them.
The unigram entropy's checks (collapse, stall, plateau) are in `unigram`.
"""
from __future__ import annotations

import math
from statistics import median
from typing import Any, Callable

import numpy as np

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.events import ALERT, WARNING, Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import LearningRate, fmt_lr, reduce_lr, tighten_clip, warmup_advice
from trainvitals.signals.lifecycle import Condition
from trainvitals.signals.quiet import lowest, previous_min

__all__ = ["LossDivergenceDetector"]

_SOURCE = "divergence"
# A spike must also stand this many robust standard deviations (1.4826 x MAD) above the
# trailing median, so a loss whose ordinary batch noise spans several-fold (tiny
# batches, RL-style objectives) does not alarm on its own noise.
_SPIKE_Z = 6.0
# A spike clears after this many steps back under the bar, so a run spiking every few steps
# (the Lightning demo at a too-high LR: 9 spikes in 250 steps) gets one alert, repeats counted.
_SPIKE_CALM = 10
_MAD_TO_SD = 1.4826
# loss_creep: the LR in use must have risen this much since the smoothed loss was lowest (a
# schedule still ramping up), and the rise over that minimum must stand this many SDs of the
# smoothed loss's own noise above it (the running minimum of a noisy EMA sits under its level).
_LR_ROSE = 1.1
_CREEP_Z = 5.0


def _check_int(name: str, value: Any, lo: int) -> None:
    check_type(name, value, int)
    check_range(name, value, lo)


def _lr_now(lr: float | LearningRate | None) -> float | None:
    """The LR in use, from what `update` was given (positive and finite, else None)."""
    now = lr.now if type(lr) is LearningRate else lr
    return now if type(now) is float and 0 < now < math.inf else (_finite(now) or None)


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


class LossDivergenceDetector:
    """Raise ``loss_spike`` and ``loss_divergence`` (alerts) from the per-step loss.

    loss_spike: the loss is more than ``spike_factor`` times the median of the previous
    ``window`` losses (the current one excluded), more than 6 robust SDs above it, and
    above it by more than ``min_rise`` times the run's starting loss (the median of its
    first ``min_history`` losses): a loss memorised down to 0.05 that jumps to 0.3 is 6x
    its median but a rise of a few percent of the loss scale, not a failing run.
    loss_divergence: the smoothed loss (the caller's ``ema``, else an internal EMA with
    a lag of about window/2 steps) has been more than ``climb`` above its running
    minimum for ``patience`` steps, counted until it is back under half that climb
    (which also clears the alert), so a loss wavering at the line still adds up.
    loss_creep (warning): the smoothed loss has been more than ``creep`` above its running
    minimum, and more than 3 SDs of its noise, for ``creep_patience`` steps in which the LR
    in use was over 1.1x the LR at that minimum: the schedule is raising the LR past what the
    model tolerates (where an LR range test stops), the precursor of a divergence or of a
    collapse to the unigram entropy hundreds of steps later. Clears with the divergence's
    hysteresis (back under half the rise). ``ema_alpha`` is the caller's EMA decay (its noise).
    All wait for ``min_history`` finite losses. Losses are assumed positive.
    """

    def __init__(self, spike_factor: float = 3.0, window: int = 50, min_history: int = 20,
                 climb: float = 0.2, patience: int = 20, min_rise: float = 0.0,
                 creep: float = DetectorConfig.loss_creep_rise, creep_patience: int = DetectorConfig.loss_creep_patience,
                 ema_alpha: float = DetectorConfig.ema_alpha) -> None:
        check_range("spike_factor", spike_factor, 1, lo_open=True)
        _check_int("window", window, 3)
        _check_int("min_history", min_history, 3)
        if min_history > window:
            raise ConfigError(f"min_history={min_history!r}: allowed is 3 <= min_history <= "
                              f"window ({window})")
        check_range("climb", climb, 0, lo_open=True)
        _check_int("patience", patience, 1)
        check_range("spike_min_rise", min_rise, 0)
        check_range("loss_creep_rise", creep, 0, lo_open=True, allow_inf=True)
        _check_int("loss_creep_patience", creep_patience, 1)
        check_range("ema_alpha", ema_alpha, 0, 1, lo_open=True, hi_open=True)
        self.creep, self.creep_patience = float(creep), creep_patience
        self._ema_noise = math.sqrt((1 - ema_alpha) / (1 + ema_alpha))  # the EMA's SD per SD of the loss
        self._memory = round(1 / (1 - ema_alpha))  # steps the EMA averages over
        self.min_rise, self._scale = float(min_rise), None  # the starting loss, once min_history are seen
        self.spike_factor, self.window, self.min_history = float(spike_factor), window, min_history
        self.climb, self.patience = float(climb), patience
        self._alpha = 1 - 2 / (window + 1)  # the EMA whose lag matches a window/2 median
        self._recent: list[float] = []
        self._floor = math.inf  # the lowest of `_recent`, kept as losses come and go (read at every step)
        self._seen = 0
        self._ema_raw = 0.0
        self._ema_n = 0
        self._min: float | None = None
        self._min_step: int | None = None
        self._cmin = math.inf  # the creep's minimum: the smoothed loss's, from step `_memory` on
        self._creep_line = math.inf  # (1 + creep) x that minimum
        self._cmin_step: int | None = None
        self._min_lr: float | None = None  # the LR in use there
        self._above = 0
        self._creeping = 0  # steps over the creep line with the LR risen
        self._spike = Condition("loss_spike", _SOURCE, clear_after=_SPIKE_CALM)
        self._divergence = Condition("loss_divergence", _SOURCE)
        self._creep = Condition("loss_creep", _SOURCE)

    def update(self, loss: float, step: int, ema: float | None = None, *,
               lr: float | LearningRate | None = None, gradient_clip: float | None = None) -> list[Event]:
        """Feed one optimizer step's loss; return the events it causes. `lr` and
        `gradient_clip` (the run's) are named in the advice."""
        # a plain finite float, the common case, skips `_finite`'s checks
        x = loss if type(loss) is float and -math.inf < loss < math.inf else _finite(loss)
        if x is None:
            return []
        events = self._check_spike(x, step, lr, gradient_clip)
        recent = self._recent
        recent.append(x)
        gone = recent.pop(0) if len(recent) > self.window else math.inf
        if x <= self._floor:
            self._floor = x
        elif gone == self._floor:  # the lowest loss left the window
            self._floor = min(recent)
        self._seen += 1
        if self._seen == self.min_history:
            self._scale = median(self._recent)
        self._ema_raw = self._alpha * self._ema_raw + (1 - self._alpha) * x
        self._ema_n += 1
        smooth = ema if type(ema) is float and -math.inf < ema < math.inf else _finite(ema)
        if smooth is None:  # debiased, as TensorBoard smooths: exact from the first step
            smooth = self._ema_raw / (1 - self._alpha ** self._ema_n)
        if self._seen >= self.min_history:
            events += self._check_divergence(smooth, step, lr, gradient_clip)
        return events

    def quiet_plan(self, losses: np.ndarray, steps: np.ndarray, smooth: np.ndarray,
                   lr_at: Callable[[int], float | LearningRate | None]):
        """`update` over finite `losses` (with their smoothed values) raises nothing
        (signals/quiet.py): a full window, nothing raised, no loss over the factor even on
        its window's lowest loss, the smoothed loss never `climb` above its minimum nor over
        the creep's line. `lr_at(i)`: the `lr` the i-th `update` would be given."""
        if (self._spike.active or self._divergence.active or self._creep.active or self._creeping
                or len(self._recent) < self.window):
            return None
        # the creep's minimum as `_check_divergence` keeps it: from the `_memory`-th loss on
        counted = np.where(self._seen + 1 + np.arange(len(smooth)) >= self._memory, smooth, math.inf)
        creep_min = np.minimum.accumulate(np.concatenate(([self._cmin], counted)))[1:]
        if np.any(smooth > (1 + self.creep) * creep_min):
            return None
        if np.any(losses > self.spike_factor * previous_min(np.array(self._recent), losses)):
            return None
        low = np.minimum.accumulate(np.concatenate(([self._min], smooth)))[1:]
        ratio = np.ones(len(smooth))
        np.divide(smooth, low, out=ratio, where=low > 0)
        if np.any(ratio > 1 + self.climb):
            return None

        def commit() -> None:
            xs = losses.tolist()
            self._recent = (self._recent + xs)[-self.window:]
            self._floor = min(self._recent)
            self._seen += len(xs)
            a, c, raw = self._alpha, 1 - self._alpha, self._ema_raw
            for x in xs:
                raw = a * raw + c * x
            self._ema_raw, self._ema_n = raw, self._ema_n + len(xs)
            self._min, self._min_step = lowest(self._min, self._min_step, smooth, steps)
            k = int(np.argmin(counted))  # the first of the lowest, as `smooth < self._cmin` step by step
            if counted[k] < self._cmin:
                self._cmin, self._cmin_step, self._min_lr = float(counted[k]), int(steps[k]), _lr_now(lr_at(k))
                self._creep_line = (1 + self.creep) * self._cmin
            if np.any(ratio < 1 + self.climb / 2):
                self._above = 0
        return commit

    def _check_spike(self, x: float, step: int, lr, clip) -> list[Event]:
        if len(self._recent) < self.min_history:
            return []
        if not self._spike.active and x <= self.spike_factor * self._floor:
            return []  # not over the factor even on the lowest loss, so not on the median: skip it
        # The baseline excludes x, so a spike cannot hide itself by raising it.
        base = median(self._recent)
        if base <= 0:
            return []
        firing, z = False, 0.0
        if x > self.spike_factor * base and x - base > self.min_rise * (self._scale or 0.0):
            # the MAD only when needed: this runs every step
            sd = _MAD_TO_SD * median(abs(v - base) for v in self._recent)
            z = (x - base) / sd if sd > 0 else math.inf
            firing = z > _SPIKE_Z
        if self._spike.settled(firing):  # nothing starts or clears: skip the wording
            return self._spike.observe(firing)
        return self._spike.observe(
            firing, severity=ALERT, step=step,
            message=(f"Loss spike at step {step}: {x:.4g} is {x / base:.1f}x the median "
                     f"{base:.4g} of the last {len(self._recent)} steps"),
            suggestions=(reduce_lr(lr), tighten_clip(clip),
                         "Look for a bad batch (corrupt or extremely long sequences)"),
            values={"loss": x, "baseline": base, "ratio": x / base, "robust_z": z},
            clear_message=f"loss_spike cleared: loss {x:.4g} is back near its median {base:.4g}")

    def _check_divergence(self, smooth: float, step: int, lr, clip) -> list[Event]:
        if self._min is None or smooth < self._min:
            self._min, self._min_step = smooth, step
        ratio = smooth / self._min if self._min > 0 else 1.0
        # the creep's minimum once the EMA has its full memory: a debiased EMA's first lows are noise
        if smooth < self._cmin and self._seen >= self._memory:
            self._cmin, self._cmin_step, self._min_lr = smooth, step, _lr_now(lr)
            self._creep_line = (1 + self.creep) * smooth
        if smooth > self._creep_line or self._creeping:  # else nothing to count or clear: skip it
            found = self._check_creep(smooth, smooth / self._cmin, step, lr)
            if found:
                return found + self._check_climb(smooth, ratio, step, lr, clip)
        return self._check_climb(smooth, ratio, step, lr, clip)

    def _check_creep(self, smooth: float, ratio: float, step: int, lr) -> list[Event]:
        now, was, low = _lr_now(lr), self._min_lr, self._cmin
        if ratio > 1 + self.creep and now is not None and was is not None and now > _LR_ROSE * was:
            self._creeping += 1
        elif ratio < 1 + self.creep / 2:
            self._creeping = 0
        held = self._creeping >= self.creep_patience
        # the noise only when it decides, and once per `creep_patience` steps while it says no
        firing = (self._creep.active and self._creeping > 0) or (
            held and (self._creeping - self.creep_patience) % self.creep_patience == 0
            and smooth - low > _CREEP_Z * self._ema_noise * self._loss_sd())
        if self._creep.settled(firing):
            return self._creep.observe(firing, severity=WARNING)  # a warning held is no escalation
        values = {"smoothed_loss": smooth, "running_min": low, "min_step": self._cmin_step,
                  "ratio": ratio, "lr": now, "lr_at_min": was, "steps_above": self._creeping}
        base = (lr.peak if type(lr) is LearningRate and lr.peak else None) or now
        return self._creep.observe(
            firing, severity=WARNING, step=step,
            message=(f"Loss creeping up at step {step}: smoothed loss {smooth:.4g} is {100 * (ratio - 1):.1f}% "
                     f"above its minimum {low:.4g} (step {self._cmin_step}) while the learning rate rose "
                     f"from {fmt_lr(was)} to {fmt_lr(now)}: the schedule is taking it past what the model "
                     "tolerates" if firing else ""),
            # the peak down to where the loss was lowest (a longer warmup only gets there later)
            suggestions=(reduce_lr(lr, was / base) if base and was and was < base else reduce_lr(lr),),
            values=values,
            clear_message=f"loss_creep cleared: smoothed loss {smooth:.4g} is back near its minimum {low:.4g}")

    def _loss_sd(self) -> float:
        """SD of the per-step loss around its level, from the recent steps' differences (robust)."""
        r = self._recent  # E|x_t - x_t-1| = 2 sd / sqrt(pi) for independent normal noise: the mean, steadier than a median
        return sum(abs(b - a) for a, b in zip(r, r[1:])) / (len(r) - 1) * math.sqrt(math.pi) / 2 if len(r) > 1 else 0.0

    def _check_climb(self, smooth: float, ratio: float, step: int, lr, clip) -> list[Event]:
        if ratio > 1 + self.climb:
            self._above += 1
        elif ratio < 1 + self.climb / 2:  # hysteresis: a loss hovering at the line won't flap
            self._above = 0
        # Once raised, it holds until the loss is back under the hysteresis line.
        firing = self._above >= self.patience or (self._divergence.active and self._above > 0)
        if firing == self._divergence.active:
            return self._divergence.observe(True) if firing else []
        return self._divergence.observe(
            firing, severity=ALERT, step=step,
            message=(f"Loss divergence at step {step}: smoothed loss {smooth:.4g} has stayed "
                     f"{100 * (ratio - 1):.0f}% above its minimum {self._min:.4g} (step "
                     f"{self._min_step}) for {self._above} steps"),
            suggestions=(reduce_lr(lr) + (", and resume from a snapshot taken before step "
                                          f"{self._min_step}"), warmup_advice(lr), tighten_clip(clip)),
            values={"smoothed_loss": smooth, "running_min": self._min, "min_step": self._min_step,
                    "ratio": ratio, "steps_above": self._above},
            clear_message=f"loss_divergence cleared: smoothed loss {smooth:.4g} is back near "
                          f"its minimum {self._min:.4g}")

    def state_dict(self) -> dict[str, Any]:
        return {"recent": list(self._recent), "seen": self._seen, "ema_raw": self._ema_raw,
                "ema_n": self._ema_n, "min": self._min, "min_step": self._min_step,
                "above": self._above, "scale": self._scale, "spike": self._spike.state_dict(),
                "divergence": self._divergence.state_dict(), "min_lr": self._min_lr,
                "creep_min": self._cmin if self._cmin < math.inf else None, "creep_min_step": self._cmin_step,
                "creeping": self._creeping, "creep": self._creep.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._recent = [float(v) for v in state["recent"]][-self.window:]
        self._floor = min(self._recent, default=math.inf)
        self._seen, self._ema_n = int(state["seen"]), int(state["ema_n"])
        self._ema_raw = float(state["ema_raw"])
        self._min, self._min_step = state["min"], state["min_step"]
        self._above = int(state["above"])
        self._scale = state.get("scale")  # absent from snapshots written before min_rise
        self._spike.load_state_dict(state["spike"])
        if "absent" not in state["spike"] and self._spike.active:  # a snapshot from before clear_after
            self._spike.absent = int(state.get("calm", 0))
        self._divergence.load_state_dict(state["divergence"])
        # absent before the creep
        self._min_lr, self._creeping = state.get("min_lr"), int(state.get("creeping", 0))
        low = state.get("creep_min")
        self._cmin, self._cmin_step = (math.inf if low is None else float(low)), state.get("creep_min_step")
        self._creep_line = (1 + self.creep) * self._cmin
        if state.get("creep"):
            self._creep.load_state_dict(state["creep"])
