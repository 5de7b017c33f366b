"""The unigram entropy's checks: a model that fell back to predicting token frequencies
(collapse), one that never learned past them (stall), and early signs of the latter (plateau).

A byte LM at too high a learning rate rarely goes NaN: its loss climbs back to the unigram
entropy of the data, or never gets below it, and stays there, a failure as real as a NaN.
"""
from __future__ import annotations

from typing import Any

from trainvitals.errors import check_range
from trainvitals.events import ALERT, WARNING, Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import LearningRate, reduce_lr, tighten_clip, warmup_advice
from trainvitals.signals.divergence import _check_int, _finite
from trainvitals.signals.lifecycle import Condition

__all__ = ["UnigramCollapseDetector"]

_SOURCE = "divergence"  # the source these events have always named
# unigram_plateau: the smoothed loss's fall is measured over this many steps at the band, first
# once it has been there twice as long (its 100-step lag still carries the descent before that).
_PLATEAU_WINDOW = 50


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
    Sooner, ``unigram_plateau`` (warning): 100 steps into such a stay, and every 50 after, the
    smoothed loss fell less than ``plateau_fall`` x the baseline over the last 50 steps. A
    healthy run falls through the band (3.2% of the entropy per 50 steps and more on the runs it
    was set on); a stalled one sits flat at it (under 1.7%). Off (0) by default: a held-out
    healthy run_clm run fell 1.8% there (docs/detectors.md).
    """

    def __init__(self, baseline_loss: float, tolerance: float = 0.05, min_drop: float = 0.15,
                 patience: int = 20, stall_steps: int = DetectorConfig.unigram_stall_steps,
                 plateau_fall: float = DetectorConfig.unigram_plateau_fall) -> None:
        check_range("baseline_loss", baseline_loss, 0, lo_open=True)
        check_range("min_drop", min_drop, 0, 1, lo_open=True, hi_open=True)
        check_range("tolerance", tolerance, 0, min_drop, hi_open=True)  # else armed = collapsed
        _check_int("patience", patience, 1)
        _check_int("unigram_stall_steps", stall_steps, 1)
        check_range("unigram_plateau_fall", plateau_fall, 0, 1, hi_open=True)
        self.plateau_fall = float(plateau_fall)
        self.baseline_loss, self.tolerance = float(baseline_loss), float(tolerance)
        self.min_drop, self.patience, self.stall_steps = float(min_drop), patience, stall_steps
        self._best: float | None = None
        self._best_step: int | None = None
        self._near = 0
        self._reached: int | None = None  # the step the smoothed loss came down to the band (stall)
        self._at_band = 0  # steps since, without going below it
        self._mark: float | None = None  # the smoothed loss _PLATEAU_WINDOW steps ago at the band
        self._collapse = Condition("unigram_collapse", _SOURCE)
        self._stall = Condition("unigram_stall", _SOURCE)
        self._plateau = Condition("unigram_plateau", _SOURCE)

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
        events = (self._check_plateau(x, step, lr, clip)
                  if self.plateau_fall and (self._at_band % _PLATEAU_WINDOW == 0 or self._plateau.active) else [])
        # once raised, it holds until the loss is well below the band (the collapse's clear line)
        firing = self._at_band >= self.stall_steps or (self._stall.active and x >= (1 - 2 * tol) * b)
        if self._stall.settled(firing):
            return events + self._stall.observe(firing) if events else self._stall.observe(firing)
        return events + self._stall.observe(
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

    def _check_plateau(self, x: float, step: int, lr, clip) -> list[Event]:
        """At every `_PLATEAU_WINDOW`-th step at the band (and while raised: it clears as the
        loss leaves the band), whether the last window's fall was under `plateau_fall`."""
        n, b = self._at_band, self.baseline_loss
        if n == 0:  # below the band: a new stay starts from scratch
            self._mark = None
            return self._plateau.observe(False, step=step, clear_message=(
                f"unigram_plateau cleared: smoothed loss {x:.4g} is below the unigram entropy {b:.4g} x "
                f"{1 - self.tolerance:.2f}")) if self._plateau.active else []
        if n % _PLATEAU_WINDOW:
            return []
        was, self._mark = self._mark, x
        if was is None or n < 2 * _PLATEAU_WINDOW:
            return []
        fall = (was - x) / b
        firing = fall < self.plateau_fall or self._plateau.active
        if self._plateau.settled(firing):
            return self._plateau.observe(firing, severity=WARNING)  # a warning held is no escalation
        return self._plateau.observe(
            True, severity=WARNING, step=step,
            message=(f"Flat at the unigram entropy at step {step}: smoothed loss {x:.4g} has sat within "
                     f"{100 * self.tolerance:.0f}% of {b:.4g} (the unigram entropy) for {n} steps and fell {100 * fall:.1f}% of it in the last {_PLATEAU_WINDOW} "
                     f"(a run that learns falls through it): it may be stuck predicting token frequencies"),
            suggestions=(reduce_lr(lr), warmup_advice(lr), tighten_clip(clip)),
            values={"loss_ema": x, "baseline_loss": b, "reached_step": self._reached, "steps_at_baseline": n,
                    "fall": fall, "window": _PLATEAU_WINDOW})

    def state_dict(self) -> dict[str, Any]:
        return {"best": self._best, "best_step": self._best_step, "near": self._near,
                "reached": self._reached, "at_band": self._at_band, "mark": self._mark,
                "collapse": self._collapse.state_dict(), "stall": self._stall.state_dict(),
                "plateau": self._plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._best, self._best_step = state["best"], state["best_step"]
        self._near = int(state["near"])
        self._reached, self._at_band = state.get("reached"), int(state.get("at_band", 0))  # absent before the stall
        self._collapse.load_state_dict(state["collapse"])
        if state.get("stall"):
            self._stall.load_state_dict(state["stall"])
        self._mark = state.get("mark")  # absent before the plateau warning
        if state.get("plateau"):
            self._plateau.load_state_dict(state["plateau"])
