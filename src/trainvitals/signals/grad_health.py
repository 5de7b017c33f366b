"""Gradient health detectors fed plain floats by the gradient monitor callback.

Jumps of the global gradient norm, gradients that vanish (globally or in a block),
and non-finite gradients. Each condition raises once, counts repeats, and emits an
``info`` event when it clears.
"""
from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any, Callable

import numpy as np

from trainvitals.errors import check_range, check_type
from trainvitals.events import ALERT, WARNING, Event
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.advice import LearningRate, reduce_lr, tighten_clip
from trainvitals.signals.gain_gate import DEMOTED
from trainvitals.signals.lifecycle import Condition
from trainvitals.signals.quiet import previous_min

__all__ = [
    "GradNormJumpDetector",
    "VanishingFlowDetector",
    "NonFiniteGradCheck",
    "nonfinite_gradient_event",
]

# Scale of a normal distribution's MAD: sigma ~ 1.4826 * MAD.
_MAD_TO_SIGMA = 1.4826


class GradNormJumpDetector:
    """Alerts when the global grad norm jumps far above its recent level (one-sided).

    The baseline is the median of log(grad_norm) over the trailing ``window`` points,
    excluding the current one, so a spike cannot hide itself. A point fires when
    ``log(g) - median > max(log(factor), z_max * sigma)`` with sigma = 1.4826 * MAD of
    the same logs and ``z_max = 6``: the factor rule (g > factor x median) decides on
    quiet series (log sd below ~0.38 for factor 10), and the MAD term raises the bar
    on series whose ordinary noise already spans a factor of ``factor``. Silent until ``min_history`` points.
    Non-finite and non-positive norms are skipped (other checks own those).

    Severity: on a run that clips (``gradient_clip`` given to ``update``), clipping bounds the
    step a jump can cause, so a jump is a warning; it becomes an alert once it has held for
    ``persistence`` checks in a row (a loss that responds raises its own alert: spike,
    divergence). Healthy runs are full of single clipped jumps (docs/detectors.md, "One outlier step").
    Without clipping a jump reaches the weights whole: an alert at once. Once raised, the
    condition clears only after ``persistence`` checks under the bar, so a burst of jumps
    a few checks apart is one event with its repeats counted, not a storm.

    With ``hold_lone`` (the grad norm's), a lone jump that would be a warning says nothing:
    one batch's gradient 19-60x its median, clipped or not answered by the loss, is what
    healthy real runs are full of (the Lightning demo's and HF run_clm.py's healthy runs,
    docs/detection.md; OLMo's isolated spikes). A second jump within ``persistence`` checks
    raises the warning; a jump the gate backs (the loss responds) is an alert at once.
    """

    source = "grad_norm_jump"
    # 6 rather than 5: a MAD from 20 points is itself noisy and often too small.
    z_max = 6.0

    def __init__(self, factor: float = 10.0, window: int = 20, min_history: int = 5, *,
                 kind: str = "grad_norm_jump", label: str = "Gradient norm", z_max: float | None = None,
                 persistence: int = DetectorConfig.jump_persistence,
                 gate: Callable[[float, int | None], bool] | None = None, hold_lone: bool = False) -> None:
        # kind/label let the same rule watch another positive series (the largest block gain)
        check_range("grad_norm_jump_factor", factor, 1.0, lo_open=True)
        check_type("grad_norm_jump_window", window, int)
        check_range("grad_norm_jump_window", window, 3)
        check_type("grad_norm_jump_min_history", min_history, int)
        check_range("grad_norm_jump_min_history", min_history, 1, window)
        self.factor = float(factor)
        self.window = window
        self.min_history = min_history
        check_type("jump_persistence", persistence, int)
        check_range("jump_persistence", persistence, 1)
        self.persistence = persistence
        self.gate = gate  # may this value raise an alert now (signals/gain_gate.py)? None: always
        self._over = 0  # consecutive checks above the bar
        self._calm = 0  # consecutive checks under it
        self.hold_lone = hold_lone
        self._since_over: int | None = None  # checks since the last one over the bar (None: none yet)
        self._lone_step: int | None = None  # the step of the last lone jump held back
        self._level: float | None = None  # the bar (log) the current jump crossed
        self._onset: float | None = None  # the median when it crossed it (the message's "before the jump")
        self._logs: deque[float] = deque(maxlen=window)
        # the lowest of `_logs`, kept as points come and go: the quiet test below reads it at
        # every step, and a min over the window each time was a third of the detector's cost
        self._floor = math.inf
        self._log_factor = math.log(self.factor)
        self.label = label
        if z_max is not None:  # 0: the factor rule alone (a smooth series, short history)
            check_range("z_max", z_max, 0)
            self.z_max = float(z_max)
        self._cond = Condition(kind, source=kind)

    def update(
        self,
        grad_norm: float,
        step: int,
        *,
        lr: float | LearningRate | None = None,
        gradient_clip: float | None = None,
    ) -> list[Event]:
        """Feed one monitored step's global grad norm (before clipping)."""
        g = float(grad_norm)
        if not 0.0 < g < math.inf:  # non-finite (NaN compares False) or non-positive
            return []
        x = math.log(g)
        events: list[Event] = []
        over = False
        # not over the factor even above the lowest point, so not above the median: skip the median
        quiet = not self._cond.active and self._logs and x - self._floor <= self._log_factor
        if not quiet and len(self._logs) >= self.min_history:
            med = statistics.median(self._logs)
            mad = statistics.median(abs(v - med) for v in self._logs)
            bar = max(math.log(self.factor), self.z_max * _MAD_TO_SIGMA * mad)
            base = math.exp(med)
            ratio = g / base
            values = {"grad_norm": g, "baseline": base, "ratio": ratio, "factor": self.factor}
            # While a jump is on, later checks are judged against the bar it crossed: the
            # jump's own points, joining the baseline, must not lower it back under.
            # (a lone jump held back holds its bar as long as a second one would be counted with it)
            held = self._cond.active or (self.hold_lone and self._since_over is not None
                                         and self._since_over < self.persistence)
            fresh = not (held and self._level is not None)
            level = med + bar if fresh else self._level
            over = x > level
            if over and fresh:
                self._onset = base
            # a jump that lasts joins the median: name the level it jumped from as well
            before = self._onset if not fresh and self._onset is not None else base
            self._level = level if over or held else None
            self._over, self._calm = (self._over + 1, 0) if over else (0, self._calm + 1)
            clipped = gradient_clip is not None and 0 < gradient_clip < math.inf
            lone = over and self.hold_lone and not held
            if over or (self._cond.active and self._calm < self.persistence):
                severity = ALERT if not clipped or self._over >= self.persistence else WARNING
                # a jump that calmed down is held, not escalated; a gated one needs the gate
                since = self._cond.started_step if self._cond.active else step if lone else self._lone_step
                demoted = severity == ALERT and over and self.gate is not None and not self.gate(g, since)
                severity = WARNING if demoted or (not over and self.gate is not None) else severity
                values.update(checks_in_a_row=self._over, clipped=clipped)
                if before != base:
                    values["median_before_jump"] = before
                if lone and severity == WARNING:
                    self._lone_step = step  # held back: said if another jump follows within `persistence` checks
                events = [] if lone and severity == WARNING else self._cond.observe(
                    True,
                    severity=severity,
                    message=(
                        f"{self.label} jumped to {g:.3g} at step {step}: "
                        f"{ratio:.1f}x its recent median {base:.3g}"
                        + (f", {g / before:.1f}x its median {before:.3g} before the jump" if before != base else "")
                        + (f", for {self._over} checks in a row" if severity == ALERT and clipped else "")
                        + (DEMOTED if demoted else
                           " (clipped; an alert if it persists or the loss responds)" if severity == WARNING else "")
                    ),
                    step=step,
                    suggestions=(
                        f"Check the batch at step {step} for extreme values",
                        reduce_lr(lr),
                        tighten_clip(gradient_clip),
                    ),
                    values=values,
                )
            else:
                self._level = self._level if held else None
                events = self._cond.observe(
                    False,
                    step=step,
                    values=values,
                    clear_message=(
                        f"{self.label} back to {g:.3g} at step {step} "
                        f"({ratio:.1f}x its recent median)"
                    ),
                )
        # Every point joins the baseline: the median shrugs off isolated spikes, and a
        # lasting shift becomes the new normal once it fills half the window.
        logs = self._logs
        gone = logs[0] if len(logs) == self.window else math.inf  # the point the deque drops
        logs.append(x)
        if x <= self._floor:
            self._floor = x
        elif gone == self._floor:  # the lowest point left the window
            self._floor = min(logs)
        self._since_over = 0 if over else None if self._since_over is None else self._since_over + 1
        return events

    def quiet_plan(self, values: np.ndarray):
        """`update` over `values` raises nothing (signals/quiet.py): nothing raised, a full
        window, each value (non-finite and non-positive ones are skipped, as `update` does)
        under the factor even above its window's lowest point. `np.log` may differ from
        `math.log` in the last bit, so a margin far above that keeps the proof sound."""
        g = values[(values > 0) & (values < math.inf)]
        if self._cond.active or len(self._logs) < self.window:
            return None
        with np.errstate(divide="ignore"):
            x = np.log(g)
        if np.any(x - previous_min(np.array(self._logs), x) > self._log_factor - 1e-9):
            return None

        def commit() -> None:
            self._logs.extend(math.log(v) for v in g[-self.window:].tolist())
            self._floor = min(self._logs)
            if self._since_over is not None:
                self._since_over += len(g)
        return commit

    def state_dict(self) -> dict[str, Any]:
        return {"logs": list(self._logs), "over": self._over, "calm": self._calm, "level": self._level,
                "since_over": self._since_over, "lone_step": self._lone_step, "onset": self._onset,
                "condition": self._cond.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._logs = deque((float(v) for v in state["logs"]), maxlen=self.window)
        self._floor = min(self._logs, default=math.inf)
        # absent from snapshots written before the persistence rule
        self._over, self._calm = int(state.get("over", 0)), int(state.get("calm", 0))
        self._level = state.get("level")
        self._since_over, self._lone_step = state.get("since_over"), state.get("lone_step")
        self._onset = state.get("onset")  # absent before it was kept
        self._cond.load_state_dict(state["condition"])


class VanishingFlowDetector:
    """Warns when gradients stop flowing: the global grad norm below ``min_grad_norm``,
    or a block's gain below ``min_gain``, for ``patience`` consecutive checks.

    Names the blocks. A block missing from a check's ``gains`` has its count reset.
    """

    source = "vanishing_flow"

    def __init__(self, min_gain: float = 0.05, min_grad_norm: float = 1e-8, patience: int = 3) -> None:
        check_range("vanishing_min_gain", min_gain, 0.0, lo_open=True)
        check_range("vanishing_min_grad_norm", min_grad_norm, 0.0, lo_open=True)
        check_type("vanishing_patience", patience, int)
        check_range("vanishing_patience", patience, 1)
        self.min_gain = float(min_gain)
        self.min_grad_norm = float(min_grad_norm)
        self.patience = patience
        self._norm_low = 0
        self._block_low: dict[str, int] = {}
        self._cond = Condition("vanishing_gradients", source=self.source)

    def update(self, step: int, grad_norm: float, gains: dict[str, float] | None = None) -> list[Event]:
        """Feed one monitored step's global grad norm and per-block gains."""
        g = float(grad_norm)
        # NaN compares False, so a non-finite value never counts as "low".
        self._norm_low = self._norm_low + 1 if g < self.min_grad_norm else 0
        gains = gains or {}
        low = self.min_gain
        for v in gains.values():
            if v < low:
                self._block_low = {
                    name: self._block_low.get(name, 0) + 1
                    for name, v in gains.items()
                    if float(v) < low
                }
                break
        else:  # the common case, every block above the line: skip building the counts
            if self._block_low:
                self._block_low = {}
        blocks = sorted(n for n, c in self._block_low.items() if c >= self.patience) if self._block_low else []
        norm_vanished = self._norm_low >= self.patience
        if not (norm_vanished or blocks or self._cond.active):
            return []  # the common case: nothing starts or clears
        values: dict[str, Any] = {"grad_norm": g, "blocks": blocks}
        if blocks:
            values["gains"] = {n: float(gains[n]) for n in blocks}
        if not (norm_vanished or blocks):
            return self._cond.observe(
                False,
                step=step,
                values=values,
                clear_message=f"Gradients flow again at step {step}",
            )
        parts = []
        if norm_vanished:
            parts.append(f"global gradient norm {g:.2e} below {self.min_grad_norm:.0e}")
        if blocks:
            shown = ", ".join(blocks[:5]) + (", ..." if len(blocks) > 5 else "")
            parts.append(f"gain below {self.min_gain:g} in {shown}")
        where = ", ".join(blocks) if blocks else "the model"
        return self._cond.observe(
            True,
            severity=WARNING,
            message=(
                f"Vanishing gradients at step {step}: {'; '.join(parts)} "
                f"for {self.patience}+ checks"
            ),
            step=step,
            suggestions=(
                f"Check that {where} is not frozen or cut from the loss (detach, no_grad)",
                "If training in float16, check the loss scaler (gradients may underflow)",
                "Check initialisation scale and normalisation (pre-LayerNorm, residuals)",
            ),
            values=values,
        )

    def quiet_plan(self, grad_norms: np.ndarray, gains: np.ndarray | None):
        """`update` over the finite `grad_norms` (with each step's block gains, a row of
        `gains`) raises nothing (signals/quiet.py): nothing raised, no norm or gain under its line."""
        fed = np.isfinite(grad_norms)
        if self._cond.active or np.any(grad_norms[fed] < self.min_grad_norm):
            return None
        if gains is not None and np.any(gains[fed] < self.min_gain):
            return None

        def commit() -> None:
            if fed.any():
                self._norm_low, self._block_low = 0, {}
        return commit

    def state_dict(self) -> dict[str, Any]:
        return {
            "norm_low": self._norm_low,
            "block_low": dict(self._block_low),
            "condition": self._cond.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._norm_low = int(state["norm_low"])
        self._block_low = {str(k): int(v) for k, v in state["block_low"].items()}
        self._cond.load_state_dict(state["condition"])


def _nonfinite_message(step: int, bad_params: list[str], total: int, shown: int = 3) -> str:
    names = ", ".join(bad_params[:shown]) + (", ..." if len(bad_params) > shown else "")
    return f"Non-finite gradients at step {step} in {len(bad_params)} of {total} parameters: {names}"


def _nonfinite_suggestions(lr: float | LearningRate | None, gradient_clip: float | None) -> tuple[str, ...]:
    return (
        reduce_lr(lr),
        tighten_clip(gradient_clip),
        "If training in float16, use bfloat16 or a dynamic loss scaler",
    )


def nonfinite_gradient_event(
    step: int,
    bad_params: list[str],
    total: int,
    *,
    lr: float | LearningRate | None = None,
    gradient_clip: float | None = None,
) -> Event:
    """One ``nonfinite_gradients`` alert naming the first few offending parameters.

    Under an AMP GradScaler, inf gradients on a skipped step are expected: call this
    only for gradients the optimizer is about to apply.
    """
    return Event(
        "nonfinite_gradients",
        ALERT,
        _nonfinite_message(step, bad_params, total),
        step,
        None,
        _nonfinite_suggestions(lr, gradient_clip),
        {"bad_params": list(bad_params[:20]), "num_bad": len(bad_params), "total": total},
        NonFiniteGradCheck.source,
    )


class NonFiniteGradCheck:
    """Lifecycle around ``nonfinite_gradient_event``: one alert per run of bad steps,
    repeats counted, an ``info`` event when the gradients are finite again."""

    source = "nonfinite_gradients"

    def __init__(self) -> None:
        self._cond = Condition("nonfinite_gradients", source=self.source)
        self.total_steps = 0  # steps with any non-finite gradient, whole run

    def update(
        self,
        step: int,
        bad_params: list[str],
        total: int,
        *,
        lr: float | LearningRate | None = None,
        gradient_clip: float | None = None,
    ) -> list[Event]:
        """Feed one step's list of parameters with non-finite gradients (may be empty)."""
        if not bad_params:
            run = self._cond.repeats + 1
            return self._cond.observe(
                False,
                step=step,
                values={"total": total},
                clear_message=(
                    f"Gradients finite again at step {step} after {run} "
                    f"check{'s' if run != 1 else ''} with non-finite gradients"
                ),
            )
        self.total_steps += 1
        ev = nonfinite_gradient_event(step, bad_params, total, lr=lr, gradient_clip=gradient_clip)
        return self._cond.observe(
            True,
            severity=ALERT,
            message=ev.message,
            step=step,
            suggestions=ev.suggestions,
            values=ev.values,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"condition": self._cond.state_dict(), "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._cond.load_state_dict(state["condition"])
        self.total_steps = int(state["total_steps"])
