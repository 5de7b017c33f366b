"""Step-level loss failure detectors: spikes, divergence, collapse to the unigram entropy.

All are one-sided (only a loss going up is news) and say nothing until they have
enough history. A byte LM at too high a learning rate rarely goes NaN: its loss climbs
back to the unigram entropy of the data and stays there, so a climb is a failure as
real as a NaN. Non-finite losses are ignored here; the loss monitor reports them.
"""
from __future__ import annotations

import math
from statistics import median
from typing import Any

import numpy as np

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.events import ALERT, Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import LearningRate, reduce_lr, tighten_clip, warmup_advice
from trainvitals.signals.lifecycle import Condition
from trainvitals.signals.quiet import lowest, previous_min

__all__ = ["LossDivergenceDetector", "UnigramCollapseDetector"]

_SOURCE = "divergence"
# A spike must also stand this many robust standard deviations (1.4826 x MAD) above the
# trailing median, so a loss whose ordinary batch noise spans several-fold (tiny
# batches, RL-style objectives) does not alarm on its own noise.
_SPIKE_Z = 6.0
# A spike clears after this many steps back under the bar, so a run spiking every few steps
# (the Lightning demo at a too-high LR: 9 spikes in 250 steps) gets one alert, repeats counted.
_SPIKE_CALM = 10
_MAD_TO_SD = 1.4826


def _check_int(name: str, value: Any, lo: int) -> None:
    check_type(name, value, int)
    check_range(name, value, lo)


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
    Both wait for ``min_history`` finite losses. Losses are assumed positive.
    """

    def __init__(self, spike_factor: float = 3.0, window: int = 50, min_history: int = 20,
                 climb: float = 0.2, patience: int = 20, min_rise: float = 0.0) -> None:
        check_range("spike_factor", spike_factor, 1, lo_open=True)
        _check_int("window", window, 3)
        _check_int("min_history", min_history, 3)
        if min_history > window:
            raise ConfigError(f"min_history={min_history!r}: allowed is 3 <= min_history <= "
                              f"window ({window})")
        check_range("climb", climb, 0, lo_open=True)
        _check_int("patience", patience, 1)
        check_range("spike_min_rise", min_rise, 0)
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
        self._above = 0
        self._spike = Condition("loss_spike", _SOURCE, clear_after=_SPIKE_CALM)
        self._divergence = Condition("loss_divergence", _SOURCE)

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

    def quiet_plan(self, losses: np.ndarray, steps: np.ndarray, smooth: np.ndarray):
        """`update` over finite `losses` (with their smoothed values) raises nothing
        (signals/quiet.py): a full window, nothing raised, no loss over the factor even on
        its window's lowest loss, the smoothed loss never `climb` above its minimum."""
        if self._spike.active or self._divergence.active or len(self._recent) < self.window:
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
                "divergence": self._divergence.state_dict()}

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


class UnigramCollapseDetector:
    """Raise ``unigram_collapse`` (alert) when a model that had learned falls back to
    predicting token frequencies, and ``unigram_stall`` (alert) when one never learns
    past them.

    Armed once the smoothed loss has been more than ``min_drop`` (relative) below
    ``baseline_loss``, the unigram entropy of the training tokens in nats; fires when
    the smoothed loss then stays within ``tolerance`` of the baseline, or above it, for
    ``patience`` steps. Clears when it is back under (1 - 2 x tolerance) x baseline.
    A run that starts at the baseline and falls is never armed until it has learned.

    Before it is armed, a smoothed loss that has come down to within ``tolerance`` of
    the baseline and not gone below it for ``stall_steps`` steps is a stall: a healthy
    run passes through that band (at most 104 steps on the detection benchmark's tune
    half, LR ramps over 600 and 1200 steps included), a run at too high an LR sits in it for good.
    """

    def __init__(self, baseline_loss: float, tolerance: float = 0.05, min_drop: float = 0.15,
                 patience: int = 20, stall_steps: int = DetectorConfig.unigram_stall_steps) -> None:
        check_range("baseline_loss", baseline_loss, 0, lo_open=True)
        check_range("min_drop", min_drop, 0, 1, lo_open=True, hi_open=True)
        check_range("tolerance", tolerance, 0, min_drop, hi_open=True)  # else armed = collapsed
        _check_int("patience", patience, 1)
        _check_int("unigram_stall_steps", stall_steps, 1)
        self.baseline_loss, self.tolerance = float(baseline_loss), float(tolerance)
        self.min_drop, self.patience, self.stall_steps = float(min_drop), patience, stall_steps
        self._best: float | None = None
        self._best_step: int | None = None
        self._near = 0
        self._reached: int | None = None  # the step the smoothed loss came down to the band (stall)
        self._at_band = 0  # steps since, without going below it
        self._collapse = Condition("unigram_collapse", _SOURCE)
        self._stall = Condition("unigram_stall", _SOURCE)

    def update(self, loss_ema: float, step: int, *, lr: float | LearningRate | None = None,
               gradient_clip: float | None = None) -> list[Event]:
        """Feed the smoothed loss of one step; return the events it causes (`lr` and
        `gradient_clip` as in `LossDivergenceDetector.update`)."""
        x = _finite(loss_ema)
        if x is None:
            return []
        b = self.baseline_loss
        if self._best is None or x < self._best:
            self._best, self._best_step = x, step
        if self._best >= (1 - self.min_drop) * b:  # not armed: not yet learned beyond token frequencies
            return self._check_stall(x, step, lr, gradient_clip)
        events = self._check_stall(x, step, lr, gradient_clip) if self._stall.active else []
        if x >= (1 - self.tolerance) * b:
            self._near += 1
        elif x < (1 - 2 * self.tolerance) * b:
            self._near = 0
        firing = self._near >= self.patience or (self._collapse.active and self._near > 0)
        if firing == self._collapse.active:
            return events + (self._collapse.observe(True) if firing else [])
        return events + self._collapse.observe(
            firing, severity=ALERT, step=step,
            message=(f"Unigram collapse at step {step}: smoothed loss {x:.4g} is back at the "
                     f"unigram entropy {b:.4g} after reaching {self._best:.4g} (step "
                     f"{self._best_step}): the model collapsed to predicting token frequencies"),
            suggestions=(reduce_lr(lr) + (", and resume from a snapshot taken before the "
                                          f"collapse (best loss at step {self._best_step})"),
                         warmup_advice(lr), tighten_clip(gradient_clip)),
            values={"loss_ema": x, "baseline_loss": b, "best_loss": self._best,
                    "best_step": self._best_step, "steps_near_baseline": self._near},
            clear_message=f"unigram_collapse cleared: smoothed loss {x:.4g} is well below the "
                          f"unigram entropy {b:.4g} again")

    def _check_stall(self, x: float, step: int, lr, clip) -> list[Event]:
        b, tol = self.baseline_loss, self.tolerance
        if self._reached is None and x <= (1 + tol) * b:
            self._reached = step
        if self._reached is None:
            return []
        self._at_band = self._at_band + 1 if x >= (1 - tol) * b else 0
        # once raised, it holds until the loss is well below the band (the collapse's clear line)
        firing = self._at_band >= self.stall_steps or (self._stall.active and x >= (1 - 2 * tol) * b)
        if self._stall.settled(firing):
            return self._stall.observe(firing)
        return self._stall.observe(
            firing, severity=ALERT, step=step,
            message=(f"Stalled at the unigram entropy at step {step}: smoothed loss {x:.4g} has not gone "
                     f"below {b:.4g} (the unigram entropy) x {1 - tol:.2f} for {self._at_band} steps since "
                     f"it came down to it (step {self._reached}): the model predicts token frequencies "
                     "and learns nothing more"),
            suggestions=(reduce_lr(lr), warmup_advice(lr), tighten_clip(clip)),
            values={"loss_ema": x, "baseline_loss": b, "reached_step": self._reached,
                    "steps_at_baseline": self._at_band},
            clear_message=f"unigram_stall cleared: smoothed loss {x:.4g} is well below the unigram "
                          f"entropy {b:.4g}")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._best, "best_step": self._best_step, "near": self._near,
                "reached": self._reached, "at_band": self._at_band,
                "collapse": self._collapse.state_dict(), "stall": self._stall.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._best, self._best_step = state["best"], state["best_step"]
        self._near = int(state["near"])
        self._reached, self._at_band = state.get("reached"), int(state.get("at_band", 0))  # absent before the stall
        self._collapse.load_state_dict(state["collapse"])
        if state.get("stall"):
            self._stall.load_state_dict(state["stall"])
