"""Every detector that reads gradient flow, composed once for the trainer and `analyze`.

Fed plain floats at each monitored step: mean gain (drift and absolute threshold),
the largest block gain (jumps), global grad norm (jumps, vanishing flow), block gains,
non-finite gradients.

What "mean gain" averages over was decided by measurement (docs/detectors.md, "Which gain"):
the first block of each stack takes the small-norm embedding as input, so its gain
climbs from ~3 to ~60 over a healthy run of our byte LM and swamps the seed's mean;
the mean over the other blocks sits near 1.0-1.3 when healthy. That inner mean is what
the drift and absolute checks watch, and the first blocks are watched by a jump test
on the largest block gain, which leaps 10-200x within a few checks at a too-high LR.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from trainvitals.events import INFO, Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import LearningRate
from trainvitals.signals.drift import MeanGainDriftDetector
from trainvitals.signals.gain_gate import EXPLODED_BLOCK_GAIN, EXPLODED_MEAN_GAIN, LossTrend
from trainvitals.signals.grad_health import GradNormJumpDetector, NonFiniteGradCheck, VanishingFlowDetector

# the gain family: a warning unless the loss backs it or the gain exploded (gain_gate.py)
_GATED = ("mean_gain_drift", "mean_gain_absolute", "max_gain_jump", "grad_norm_jump")

__all__ = ["GradientSignals", "gain_aggregates", "measured_gains", "measured_gain_columns", "inner_mean_gain", "first_block", "max_gain_jump_detector"]


@lru_cache(maxsize=4096)  # a model's few block names, asked at every monitored step
def first_block(name: str) -> bool:
    """'0', 'encoder.0', 'decoder.0': the first block of a stack."""
    return name.rsplit(".", 1)[-1] == "0"


@lru_cache(maxsize=256)  # a model's block names, the same at every monitored step
def _inner_blocks(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in names if not first_block(name))


def inner_mean_gain(gains: dict[str, float]) -> float | None:
    """Arithmetic mean of the measured gains (NaN = not measured) of blocks past the first
    of each stack; an overflowed (inf) gain makes it inf, which the absolute check alerts on."""
    # asked at every monitored step: built from C calls, the NaN filter only where the sum says one is there
    inner = list(map(gains.__getitem__, _inner_blocks(tuple(gains))))
    total = sum(inner)
    if total != total:
        inner = [g for g in inner if g == g]  # NaN != NaN
        total = sum(inner)
    if not inner:  # a one-block model: nothing else to average
        inner = [g for g in gains.values() if g == g]
        total = sum(inner)
    return total / len(inner) if inner else None


def measured_gains(gains: dict[str, float]) -> tuple[dict[str, float], float | None, float | None]:
    """The measured gains (a NaN gain, a block not measured, left out: `gains` itself where
    none is NaN, the common case, not a copy) and the two aggregates the detectors watch,
    `mean_gain` and `max_gain` (None where no gain is measured)."""
    total = sum(gains.values())
    if total != total:  # a sum is NaN when any term is
        gains = {block: g for block, g in gains.items() if g == g}  # NaN != NaN
    return (gains, inner_mean_gain(gains), max(gains.values())) if gains else (gains, None, None)


def measured_gain_columns(names: tuple[str, ...], gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`measured_gains`' mean_gain and max_gain of each row of `gains` (a column per block of
    `names`), all of them measured (no NaN): the same blocks, summed in the same order."""
    cols = [gains[:, names.index(name)] for name in _inner_blocks(names)] or list(gains.T)
    total = cols[0]
    for col in cols[1:]:
        total = total + col
    return total / len(cols), gains.max(axis=1)


def gain_aggregates(gains: dict[str, float]) -> dict[str, float | None]:
    """Every aggregate of the per-block gains that is logged or watched, from the gains
    alone, so a log written by any trainer is judged by the same numbers as a live run:
    `mean_gain` (blocks past the first), `mean_gain_all` (the seed's), `max_gain`,
    `amplification` (the product)."""
    measured, mean_gain, max_gain = measured_gains(gains)
    if not measured:
        return {"mean_gain": None, "mean_gain_all": None, "max_gain": None, "amplification": None}
    values = list(measured.values())
    return {"mean_gain": mean_gain, "mean_gain_all": sum(values) / len(values),
            "max_gain": max_gain, "amplification": math.prod(values)}


def max_gain_jump_detector(factor: float, persistence: int = DetectorConfig.jump_persistence) -> GradNormJumpDetector:
    """The jump test on the largest block gain. At a too-high LR the first block's gain
    leaps 10-200x within a few checks (3.3 -> 203 by step 7 at lr 1.0, -> 576 by step 13 at lr 0.3);
    in healthy runs it grows smoothly, ~2x in 40 steps. So: the factor rule alone (no MAD
    guard, which a 2-point history makes huge), from the second check on."""
    return GradNormJumpDetector(factor, min_history=1, kind="max_gain_jump", label="Largest block gain", z_max=0.0,
                                persistence=persistence)


class GradientSignals:
    """`config`'s thresholds (defaults: `DetectorConfig()`) for a model of `num_layers`
    blocks; `gradient_clip` and `warmup_steps` are the run's, named in advice."""

    def __init__(self, config: DetectorConfig | None = None, num_layers: int | None = None, *,
                 gradient_clip: float | None = None, warmup_steps: int | None = None) -> None:
        c = config if config is not None else DetectorConfig()
        # a gain excursion is an alert only when the loss backs it or the gain exploded (gain_gate.py)
        self.loss_trend = LossTrend()
        self._step, self._mean_gain, self._max_gain = 0, None, None
        self._names: Any = ()  # the latest block names given (their gains' dict): `_inner` reads them
        self.drift = MeanGainDriftDetector(c.mean_gain_drift_threshold, c.mean_gain_absolute_threshold,
                                           c.mean_gain_drift_window, num_layers, c.mean_gain_drift_consecutive,
                                           gradient_clip=gradient_clip, warmup_steps=warmup_steps,
                                           settle_steps=c.mean_gain_drift_settle_steps,
                                           gate=lambda g, since: self._exploded(g) or self._backed(since))
        # one step's gradient: backed only by a loss that responds to it, not one that stopped
        # falling; a lone jump is held back (grad_health.py)
        self.jump = GradNormJumpDetector(c.grad_norm_jump_factor, persistence=c.jump_persistence,
                                         gate=lambda _, since: self._exploded() or
                                         self.loss_trend.responds(self._step, since), hold_lone=True)
        self.max_gain_jump = max_gain_jump_detector(c.max_gain_jump_factor, c.jump_persistence)
        self.max_gain_jump.gate = lambda g, since: g >= EXPLODED_BLOCK_GAIN or self._exploded() or \
            self._backed(since)
        self.vanishing = VanishingFlowDetector()
        self.nonfinite = NonFiniteGradCheck()
        self.gradient_clip = gradient_clip
        # `observe_loss(step, loss)`: feed a step's training loss, in step order, before the
        # gradients of later steps (the trend's own method: a replay calls it at every step)
        self.observe_loss = self.loss_trend.observe

    def _exploded(self, mean_gain: float | None = None) -> bool:
        """The mean gain (default: this check's) is non-finite or past the exploded bar: the
        mean-gain bar where it averages inner blocks, the block bar where every stack has one
        block (it then averages first blocks, which climb to ~60 in healthy runs); or, in the
        first `LOOKBACK` steps, the largest block gain is past the block bar."""
        g = self._mean_gain if mean_gain is None else mean_gain
        bar = EXPLODED_MEAN_GAIN if self._inner else EXPLODED_BLOCK_GAIN
        if g is not None and (not math.isfinite(g) or g >= bar):
            return True
        # before the loss can show a trend, a block gain past the block bar (healthy first blocks
        # start near 3 and climb over hundreds of steps: an initialisation 50x too large starts at 171)
        m = self._max_gain
        return m is not None and m >= EXPLODED_BLOCK_GAIN and self.loss_trend.young(self._step)

    @property
    def _inner(self) -> bool:
        """The mean gain averages blocks past the first of a stack (True before any gain is known).
        Asked only when a gain event is judged, so it is worked out then, not at every step."""
        return not self._names or any(not first_block(name) for name in self._names)

    def _backed(self, since: int | None) -> bool:
        return self.loss_trend.corroborates(self._step, since)

    def _mark(self, events: list[Event], max_gain: float | None) -> list[Event]:
        """Say on each gain event whether the gain exploded (what `advise` reads as "the LR
        is too high" without a loss symptom)."""
        for e in events:
            if e.kind in _GATED and e.severity != INFO:
                e.values["exploded"] = self._exploded() or (
                    e.kind == "max_gain_jump" and max_gain is not None and max_gain >= EXPLODED_BLOCK_GAIN)
        return events

    def update(self, step: int, mean_gain: float | None = None, grad_norm: float | None = None,
               gains: dict[str, float] | None = None, lr: float | LearningRate | None = None,
               nonfinite_params: list[str] | None = None, total_params: int = 0,
               max_gain: float | None = None) -> list[Event]:
        # a replay calls this millions of times: each detector's list is added only when it holds events
        self._step, self._mean_gain, self._max_gain = step, mean_gain, max_gain
        if gains:
            self._names = gains.keys()  # a view of the caller's dict, whose names stay; not copied each step
        events = (self.nonfinite.update(step, nonfinite_params, total_params, lr=lr, gradient_clip=self.gradient_clip)
                  if nonfinite_params is not None else [])
        if mean_gain is not None:
            found = self.drift.update(mean_gain, step, lr)
            if found:
                events += found
        if max_gain is not None:
            found = self.max_gain_jump.update(max_gain, step, lr=lr, gradient_clip=self.gradient_clip)
            if found:
                events += found
        if grad_norm is not None:
            found = self.jump.update(grad_norm, step, lr=lr, gradient_clip=self.gradient_clip)
            if found:
                events += found
            if -math.inf < grad_norm < math.inf:
                found = self.vanishing.update(step, grad_norm, gains)
                if found:
                    events += found
        return self._mark(events, max_gain) if events else events

    def skip(self, steps: np.ndarray, mean_gain: np.ndarray | None, grad_norm: np.ndarray | None,
             max_gain: np.ndarray | None, gains: np.ndarray | None = None, names: tuple[str, ...] = ()):
        """`update` over a block of steps (no non-finite parameter lists) when every detector
        proves it raises nothing there (signals/quiet.py): the state moved as those calls would
        have, and (moving average, drift) after each step returned (None, None where the drift
        check is off); else None, nothing changed (feed them to `update`)."""
        plans = []
        if mean_gain is not None:
            plans.append(self.drift.quiet_plan(mean_gain, steps))
        if max_gain is not None:
            plans.append(self.max_gain_jump.quiet_plan(max_gain))
        if grad_norm is not None:
            plans += [self.jump.quiet_plan(grad_norm), self.vanishing.quiet_plan(grad_norm, gains)]
        if None in plans:
            return None
        done = [commit() for commit in plans]
        self._step = int(steps[-1])
        self._mean_gain = None if mean_gain is None else float(mean_gain[-1])
        self._max_gain = None if max_gain is None else float(max_gain[-1])
        if names:
            self._names = names
        return done[0] if mean_gain is not None else (None, None)

    @property
    def moving_average(self) -> float | None:
        return self.drift.moving_average

    @property
    def mean_gain_drift(self) -> float | None:
        return self.drift.drift

    def state_dict(self) -> dict[str, Any]:
        return {"drift": self.drift.state_dict(), "jump": self.jump.state_dict(),
                "max_gain_jump": self.max_gain_jump.state_dict(),
                "vanishing": self.vanishing.state_dict(), "nonfinite": self.nonfinite.state_dict(),
                "loss_trend": self.loss_trend.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drift.load_state_dict(state["drift"])
        self.jump.load_state_dict(state["jump"])
        self.max_gain_jump.load_state_dict(state["max_gain_jump"])
        self.vanishing.load_state_dict(state["vanishing"])
        self.nonfinite.load_state_dict(state["nonfinite"])
        if "loss_trend" in state:  # absent from snapshots written before the gain gate
            self.loss_trend.load_state_dict(state["loss_trend"])
