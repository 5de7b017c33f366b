"""Read a benchmark run's logs, find where it failed, and replay each detector over it.

Every detector here is the library's own class (`trainvitals.signals`), fed the logged
series the way the trainer feeds it live; only the signal fed in differs between the
gain columns (which per-block gains are combined, and how).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Callable

from trainvitals.analyze.readers import read_run
from trainvitals.events import ALERT, Event
from trainvitals.signals.divergence import LossDivergenceDetector, UnigramCollapseDetector
from trainvitals.signals.drift import MeanGainDriftDetector, SeedDriftBaseline
from trainvitals.signals.ema import LossEMA
from trainvitals.signals.evaluation import EpochEvaluator
from trainvitals.signals.frozen import FrozenParamsDetector
from trainvitals.signals.grad_health import GradNormJumpDetector, NonFiniteGradCheck
from trainvitals.signals.nonfinite import NonFiniteLossCheck

__all__ = ["Run", "load_run", "failure_step", "DETECTORS", "first_alert", "gain_signal"]

_GAIN = "gradient_monitor/gain/"
_RATIO = "weight_monitor/update_ratio/"


@dataclass
class Run:
    name: str
    mode: str
    split: str
    n_layers: int
    unigram_entropy: float
    losses: list[tuple[int, float]]
    gains: dict[int, list[float]]  # step -> gains in block order
    grad_norm: dict[int, float]
    lr: dict[int, float]
    epochs: list[tuple[int, float, float | None]]  # (step, train, val)
    unchanged: dict[int, list[str]]  # step -> parameters whose update was exactly 0
    n_params: int
    info: dict[str, Any] = field(default_factory=dict)
    live: list[Event] = field(default_factory=list)  # what the trainer emitted, with its defaults

    @property
    def healthy(self) -> bool:
        return self.mode == "healthy"


def load_run(logdir: Path) -> Run:
    info = json.loads((logdir / "spec.json").read_text())
    spec = info["spec"]
    log = read_run(logdir)
    s = log.series
    blocks = sorted((t[len(_GAIN):] for t in s if t.startswith(_GAIN)), key=_block_key)
    per_block = [dict(s[_GAIN + b]) for b in blocks]
    steps = sorted(set().union(*per_block)) if per_block else []
    gains = {st: [b.get(st, math.nan) for b in per_block] for st in steps}
    ratios = {t[len(_RATIO):]: dict(v) for t, v in s.items() if t.startswith(_RATIO)}
    unchanged: dict[int, list[str]] = {}
    for name, pts in ratios.items():
        for st, v in pts.items():
            unchanged.setdefault(st, [])
            if v == 0.0:
                unchanged[st].append(name)
    val = dict(s.get("val/loss", []))
    epochs = [(st, v, val.get(st)) for st, v in s.get("train/epoch_loss", [])]
    return Run(spec["name"], spec["mode"], spec["split"], len(blocks), info["unigram_entropy"],
               list(s.get("train/step_loss", [])), gains, dict(s.get("gradient_monitor/grad_norm", [])),
               dict(s.get("train/lr", [])), epochs, unchanged, len(ratios), info,
               [Event.from_dict(d) for d in log.events])


def _block_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))


# --- ground truth ------------------------------------------------------------------------
SPIKE_OVER_EMA = 3.0  # a loss above 3x its EMA
CLIMB = 0.2  # the EMA 20% above its running minimum ...
STAY = 50  # ... for 50 steps, or to the end of the run


def failure_step(run: Run) -> tuple[int | None, str]:
    """The first step where the loss shows the failure, and which rule saw it."""
    ema = LossEMA(0.99, "debiased")
    lo = math.inf
    above_since: int | None = None
    for step, loss in run.losses:
        if not math.isfinite(loss):
            return step, "non-finite loss"
        prev = ema.value
        if prev is not None and loss > SPIKE_OVER_EMA * prev:
            return step, "loss > 3x EMA"
        e = ema.update(loss)
        lo = min(lo, e)
        if e > (1 + CLIMB) * lo:
            above_since = step if above_since is None else above_since
            if step - above_since >= STAY:
                return above_since, "EMA +20% over its minimum"
        else:
            above_since = None
    if above_since is not None:  # above the line until the run ended
        return above_since, "EMA +20% over its minimum"
    return None, ""


# --- signals fed to the gain detectors ------------------------------------------------------
def gain_signal(gains: list[float], how: str) -> float:
    """One number per monitored step from the block gains."""
    g = [x for x in gains if math.isfinite(x)]
    if len(g) != len(gains) or not g:
        return math.nan
    if how == "mean":  # the seed's: arithmetic mean over every block
        return sum(g) / len(g)
    if how == "mean_past_first":
        rest = g[1:] or g
        return sum(rest) / len(rest)
    if how == "geomean_past_first":
        rest = g[1:] or g
        return math.exp(sum(math.log(x) for x in rest) / len(rest))
    if how == "max":
        return max(g)
    if how == "amplification":
        return math.prod(g)
    raise ValueError(how)


# --- detectors -------------------------------------------------------------------------------
Detector = Callable[[Run, dict], list[Event]]


def _loss_events(run: Run, p: dict, which: str) -> list[Event]:
    ema = LossEMA(0.99, "debiased")
    nonfinite = NonFiniteLossCheck()
    div = LossDivergenceDetector(**p.get("divergence", {}))
    collapse = UnigramCollapseDetector(run.unigram_entropy, **p.get("collapse", {}))
    out: list[Event] = []
    for step, loss in run.losses:
        if which == "nonfinite_loss":
            out += nonfinite.update(loss, step)
            continue
        if not math.isfinite(loss):
            continue
        smooth = ema.update(loss)
        if which in ("loss_spike", "loss_divergence"):
            out += [e for e in div.update(loss, step, ema=smooth) if e.kind == which]
        elif which == "unigram_collapse":
            out += collapse.update(smooth, step)
    return out


def _drift_events(run: Run, p: dict, how: str, key: str) -> list[Event]:
    q = p.get(key, {})
    det = MeanGainDriftDetector(q.get("drift_threshold", 0.1), q.get("absolute_threshold", 1.3),
                                q.get("window", 5), run.n_layers, q.get("consecutive", 3))
    out: list[Event] = []
    for step in sorted(run.gains):
        if not _monitored(step, p):
            continue
        out += det.update(gain_signal(run.gains[step], how), step, run.lr.get(step))
    return out


def _seed_events(run: Run, p: dict, maxlen: int, absolute: float) -> list[Event]:
    det = SeedDriftBaseline(0.1, absolute, maxlen)
    out: list[Event] = []
    for step in sorted(run.gains):
        if _monitored(step, p):
            out += det.update(gain_signal(run.gains[step], "mean"), step)
    return out


def _grad_norm_events(run: Run, p: dict) -> list[Event]:
    jump = GradNormJumpDetector(**p.get("jump", {}))
    nonfinite = NonFiniteGradCheck()
    out: list[Event] = []
    for step in sorted(run.grad_norm):
        if not _monitored(step, p):
            continue
        g = run.grad_norm[step]
        out += nonfinite.update(step, [] if math.isfinite(g) else ["(global norm)"], run.n_params)
        out += jump.update(g, step)
    return out


def _frozen_events(run: Run, p: dict) -> list[Event]:
    det = FrozenParamsDetector(p.get("frozen_patience", 3))
    out: list[Event] = []
    for step in sorted(run.unchanged):
        if _monitored(step, p):
            out += det.update(step, run.unchanged[step], run.n_params)
    return out


def _epoch_events(run: Run, p: dict) -> list[Event]:
    ev = EpochEvaluator(list(range(1, len(run.epochs) + 1)), baseline_loss=run.unigram_entropy)
    out: list[Event] = []
    for i, (step, train, val) in enumerate(run.epochs):
        rep = ev.update(i, train, val, lr=run.lr.get(step))
        out += [Event(e.kind, e.severity, e.message, step, i, e.suggestions, e.values, e.source)
                for e in rep.events]
    return out


def _monitored(step: int, p: dict) -> bool:
    return (step - 1) % p.get("interval", 1) == 0


# name -> (detector, counted as the trainer's own); the gain columns differ only in the signal
DETECTORS: dict[str, tuple[Detector, bool]] = {
    # every alert the trainer raised live with its default settings (the product as shipped)
    "TRAINVITALS DEFAULTS (live, all detectors)": (lambda r, p: r.live, False),
    "nonfinite_loss": (lambda r, p: _loss_events(r, p, "nonfinite_loss"), True),
    "loss_spike": (lambda r, p: _loss_events(r, p, "loss_spike"), True),
    "loss_divergence": (lambda r, p: _loss_events(r, p, "loss_divergence"), True),
    "unigram_collapse": (lambda r, p: _loss_events(r, p, "unigram_collapse"), True),
    "grad_norm (jump, non-finite)": (_grad_norm_events, True),
    "gain: mean, all blocks (seed)": (lambda r, p: _drift_events(r, p, "mean", "gain_mean"), False),
    "gain: mean past block 0": (lambda r, p: _drift_events(r, p, "mean_past_first", "gain_rest"), False),
    "gain: geomean past block 0": (lambda r, p: _drift_events(r, p, "geomean_past_first", "gain_geo"), False),
    "gain: max block": (lambda r, p: _drift_events(r, p, "max", "gain_max"), True),
    "gain: amplification": (lambda r, p: _drift_events(r, p, "amplification", "gain_amp"), False),
    "post-epoch evaluation": (_epoch_events, True),
    "baseline: seed code (deque 10, 1.3)": (lambda r, p: _seed_events(r, p, 10, 1.3), False),
    "baseline: 10% rule on raw points (window 5)": (lambda r, p: _seed_events(r, p, 5, math.inf), False),
}


def first_alert(events: list[Event], kinds: tuple[str, ...] | None = None) -> int | None:
    steps = [e.step for e in events if e.severity == ALERT and e.step is not None
             and (kinds is None or e.kind in kinds)]
    return min(steps) if steps else None


def first_event(events: list[Event], kind: str) -> int | None:
    steps = [e.step for e in events if e.kind == kind and e.severity != "info" and e.step is not None]
    return min(steps) if steps else None


def median_or_none(xs: list[float]) -> float | None:
    return median(xs) if xs else None
