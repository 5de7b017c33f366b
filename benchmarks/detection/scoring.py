"""Read a benchmark run's logs, find where it failed, and replay the detectors over it.

The product's columns replay the log through `trainvitals.analyze.replay` (the code the
trainer runs live); the comparison columns feed other readings of the block gains, and
the seed's literal algorithm, to the library's own drift classes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median
from typing import Any, Callable

from trainvitals.analyze.readers import RunLog, read_run
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.analyze.roles import apply_roles
from trainvitals.events import ALERT, Event
from trainvitals.signals.drift import MeanGainDriftDetector, SeedDriftBaseline
from trainvitals.signals.ema import LossEMA
from trainvitals.signals.gradient_signals import first_block

__all__ = ["Run", "load_run", "load_own_log", "failure_step", "loss_failure", "GROUPS", "COLUMNS", "replay_suite",
           "detection_step", "gain_signal", "Score", "score", "first_event", "shipped_default", "has_precursor",
           "EARLY"]

_GAIN = "gradient_monitor/gain/"


@dataclass
class Run:
    name: str
    mode: str
    split: str
    n_layers: int
    unigram_entropy: float
    losses: list[tuple[int, float]]
    lr: dict[int, float]
    epochs: list[tuple[int, float, float | None]]  # (step, train, val)
    log: RunLog
    info: dict[str, Any] = field(default_factory=dict)
    live: list[Event] = field(default_factory=list)  # what the trainer emitted, with its defaults
    uniform_loss: float = 0.0  # ln(vocab) as `analyze --uniform-loss` takes it; 0: the log's own, if any
    logged_every: list[int] = field(default_factory=list)  # a sparse log's loss steps (HF's own log); [] = every step

    @property
    def healthy(self) -> bool:
        return self.mode == "healthy"


def load_run(logdir: Path, view: str | None = None) -> Run:
    """One run as `trainvitals analyze` reads it: the log its host wrote (`view`, default
    the one spec.json names: the run directory for our trainer), tags mapped by
    `analyze.roles` as the command maps them. What the host raised live comes from the
    JSONL our trainer writes, or from `events.jsonl` for the other hosts."""
    info = json.loads((logdir / "spec.json").read_text())
    spec = info["spec"]
    log = apply_roles(read_run(logdir / (view or info.get("view", "."))))
    s = log.series
    val = dict(s.get("val/loss", []))
    epochs = [(st, v, val.get(st)) for st, v in s.get("train/epoch_loss", [])]
    n_blocks = sum(t.startswith(_GAIN) for t in s)
    events = log.events if spec.get("host", "trainer") == "trainer" else read_run(logdir / "events.jsonl").events
    return Run(spec["name"], spec["mode"], spec["split"], n_blocks, info["unigram_entropy"],
               list(s.get("train/step_loss", [])), dict(s.get("train/lr", [])), epochs, log, info,
               [Event.from_dict(d) for d in events])


def load_own_log(logdir: Path, truth: Run) -> Run:
    """An HF run as HF alone logged it (`trainer_state.json`: 10-step mean losses, no gains),
    judged against the failure step of the full run's per-step losses (`truth`)."""
    from host_runs import HF_OWN_LOG
    own = load_run(logdir, HF_OWN_LOG)
    logged = [st for st, _ in own.losses]
    # the user knows the vocabulary (bytes: 256) as they know the unigram entropy: `--uniform-loss`
    return replace(own, losses=truth.losses, epochs=truth.epochs, live=[], log=replace(own.log, events=[]),
                   uniform_loss=math.log(256), logged_every=logged)


# --- ground truth ------------------------------------------------------------------------
SPIKE_OVER_EMA = 3.0  # a loss above 3x its EMA
CLIMB = 0.2  # the EMA 20% above its running minimum ...
STAY = 50  # ... for 50 steps, or to the end of the run
# Not in the rule: our LMs at a too-high LR often never get below the unigram
# entropy at all (nothing to climb back from). A loss EMA within 5% of the unigram
# entropy for 100 steps is a stall; the suite's 12 healthy runs spend at most 40 steps in it.
STALL_BAND, STALL_STEPS = 0.05, 100


def failure_step(run: Run) -> tuple[int | None, str]:
    """The first step where the loss shows the failure, and which rule saw it. On a sparse log
    (`logged_every`), the first logged step at or after it: a mean of steps 1-10 cannot show a
    failure at step 2 before step 10 (no logged point after it: the failure step stays)."""
    found = [f for f in (loss_failure(run.losses, run.unigram_entropy), _val_failure(run)) if f[0] is not None]
    step, rule = min(found) if found else (None, "")
    if step is not None and run.logged_every:
        seen = [st for st in run.logged_every if st >= step]
        if seen and seen[0] != step:
            return seen[0], f"{rule}, step {step}: first logged at {seen[0]}"
    return step, rule


def _val_failure(run: Run) -> tuple[int | None, str]:
    """Overfitting: the validation loss (already an epoch average, so no EMA) more than
    20% above its best so far, from some epoch to the end of the run."""
    since, best = None, math.inf
    for step, _, val in run.epochs:
        if val is None:
            continue
        if val > (1 + CLIMB) * best:
            since = step if since is None else since
        else:
            since = None
        best = min(best, val)
    return (since, "val loss +20% over its minimum") if since is not None else (None, "")


def loss_failure(losses: list[tuple[int, float]], unigram_entropy: float) -> tuple[int | None, str]:
    """(step, rule) of the first failure the step losses show; (None, "") if none."""
    ema = LossEMA(0.99, "debiased")
    lo = math.inf
    above_since: int | None = None
    in_band_since: int | None = None
    for step, loss in losses:
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
        if abs(e - unigram_entropy) <= STALL_BAND * unigram_entropy:
            in_band_since = step if in_band_since is None else in_band_since
            if step - in_band_since >= STALL_STEPS:
                return in_band_since, "stall at the unigram entropy"
        else:
            in_band_since = None
    if above_since is not None:  # above the line until the run ended
        return above_since, "EMA +20% over its minimum"
    return None, ""


# --- signals fed to the comparison columns ----------------------------------------------------
_LOGGED = {"mean": "gradient_monitor/mean_gain_all",  # the seed's: arithmetic mean over every block
           "mean_past_first": "gradient_monitor/mean_gain",  # the product's (inner_mean_gain)
           "max": "gradient_monitor/max_gain", "amplification": "gradient_monitor/amplification"}


def gain_signal(run: Run, how: str) -> dict[int, float]:
    """step -> one reading of the block gains: a logged tag, or the geometric mean of the
    blocks past the first of each stack."""
    if how in _LOGGED:
        return dict(run.log.series.get(_LOGGED[how], []))
    if how != "geomean_past_first":
        raise ValueError(how)
    tags = {t[len(_GAIN):]: dict(v) for t, v in run.log.series.items()
            if t.startswith(_GAIN) and not first_block(t[len(_GAIN):])}
    steps = sorted(set().union(*tags.values())) if tags else []
    gains = {st: [pts[st] for pts in tags.values() if st in pts] for st in steps}
    return {st: math.exp(sum(map(math.log, g)) / len(g)) if all(x > 0 and math.isfinite(x) for x in g) else math.nan
            for st, g in gains.items()}


# --- the product's detectors, replayed ----------------------------------------------------
# Each group's events depend only on its own thresholds (tune.py relies on this).
GROUPS: dict[str, tuple[str, ...]] = {
    "loss (non-finite, early rise or jump, spike, divergence, collapse, stall)": (
        "nonfinite_loss", "loss_above_init", "early_loss_jump", "loss_spike", "loss_divergence", "unigram_collapse",
        "unigram_stall", "loss_creep", "unigram_plateau"),
    "mean gain (drift, absolute)": ("mean_gain_drift", "mean_gain_absolute"),
    "largest block gain (jump)": ("max_gain_jump",),
    "grad norm (jump, vanishing, non-finite)": ("grad_norm_jump", "vanishing_gradients", "nonfinite_gradients"),
    "post-epoch evaluation": ("lr_too_high", "no_learning", "overfitting", "slow_improvement", "plateau",
                              "underfitting", "lr_too_low"),
}
# where each tuned knob goes: the config field (every threshold is a DetectorConfig field)
_CONFIG_KNOBS = {"drift_threshold": "mean_gain_drift_threshold", "window": "mean_gain_drift_window",
                 "absolute_threshold": "mean_gain_absolute_threshold", "gap_threshold": "gap_threshold",
                 "improvement_threshold": "improvement_threshold",
                 "max_gain_jump_factor": "max_gain_jump_factor", "spike_factor": "spike_factor",
                 "climb": "divergence_climb", "patience": "divergence_patience",
                 "consecutive": "mean_gain_drift_consecutive", "grad_norm_jump_factor": "grad_norm_jump_factor",
                 "settle_steps": "mean_gain_drift_settle_steps"}


def shipped_default(knob: str) -> Any:
    """The value a tuned knob has in the code as shipped."""
    return getattr(AnalyzeConfig(), _CONFIG_KNOBS[knob])


def replay_suite(run: Run, knobs: dict[str, Any] | None = None) -> list[Event]:
    """Every detector `trainvitals analyze` (and the trainer) runs, over this run's log;
    `knobs` overrides thresholds (tune.py), absent ones keep the shipped defaults."""
    knobs = dict(knobs or {})
    unknown = sorted(set(knobs) - set(_CONFIG_KNOBS))
    if unknown:
        raise ValueError(f"unknown knobs: {unknown}")
    cfg = AnalyzeConfig(baseline_loss=run.unigram_entropy, uniform_loss=run.uniform_loss,
                        evaluation_epochs=list(range(len(run.epochs))),
                        num_layers=run.n_layers, **{_CONFIG_KNOBS[k]: v for k, v in knobs.items()})
    return replay(run.log, cfg).events


def detection_step(events: list[Event], mode: str, kinds: tuple[str, ...] | None = None) -> int | None:
    """When the detectors flagged the run: its first alert, or for an overfitting run also
    the `overfitting` diagnosis (a warning by design: the run still learns)."""
    steps = [e.step for e in events if e.step is not None and (kinds is None or e.kind in kinds)
             and (e.severity == ALERT or (mode == "overfitting" and e.kind == "overfitting"))]
    return min(steps) if steps else None


# --- comparison columns: other ways to read the gains, and the seed's literal code ----------
# the seed's drift rule (10% rise of the 5-check MA, 3 checks, absolute 1.3) on each signal;
# "max block" has no absolute threshold (a healthy block 0 reaches ~60) and a 50% drift
_COMPARE: dict[str, dict[str, float]] = {"max": {"drift_threshold": 0.5, "absolute_threshold": math.inf}}


def _drift_events(run: Run, how: str) -> list[Event]:
    q = _COMPARE.get(how, {})
    det = MeanGainDriftDetector(q.get("drift_threshold", 0.1), q.get("absolute_threshold", 1.3), 5, run.n_layers)
    out: list[Event] = []
    for step, value in sorted(gain_signal(run, how).items()):
        out += det.update(value, step, run.lr.get(step))
    return out


def _seed_events(run: Run, maxlen: int, absolute: float) -> list[Event]:
    det = SeedDriftBaseline(0.1, absolute, maxlen)
    out: list[Event] = []
    for step, value in sorted(gain_signal(run, "mean").items()):
        out += det.update(value, step)
    return out


Column = Callable[[Run], list[Event]]
_DEFAULTS = "TRAINVITALS DEFAULTS"
COLUMNS: dict[str, Column] = {
    f"{_DEFAULTS}, live (every alert raised while training)": lambda r: r.live,
    f"{_DEFAULTS}, replayed by `trainvitals analyze`": lambda r: replay_suite(r),
    **{f"· {group}": (lambda r, k=kinds: [e for e in replay_suite(r) if e.kind in k])
       for group, kinds in GROUPS.items()},
    "compare: seed drift rule on mean gain, all blocks": lambda r: _drift_events(r, "mean"),
    "compare: seed drift rule on mean gain past block 0": lambda r: _drift_events(r, "mean_past_first"),
    "compare: seed drift rule on geomean past block 0": lambda r: _drift_events(r, "geomean_past_first"),
    "compare: 50% drift of the largest block gain": lambda r: _drift_events(r, "max"),
    "compare: seed drift rule on amplification (product)": lambda r: _drift_events(r, "amplification"),
    "baseline: seed code as written (deque 10, 1.3)": lambda r: _seed_events(r, 10, 1.3),
    "baseline: 10% rule on raw points (window 5)": lambda r: _seed_events(r, 5, math.inf),
}


def first_event(events: list[Event], kind: str) -> int | None:
    steps = [e.step for e in events if e.kind == kind and e.severity != "info" and e.step is not None]
    return min(steps) if steps else None




@dataclass
class Score:
    caught: int = 0  # failing runs flagged at or before their failure step
    failures: int = 0  # runs that fail by the rule
    leads: list[int] = field(default_factory=list)  # failure step - detection step, caught runs
    fp: int = 0  # healthy runs with any detection
    healthy: int = 0
    precursor_leads: list[int] = field(default_factory=list)  # caught runs with a precursor (has_precursor)

    @property
    def median_lead(self) -> float | None:
        return median(self.leads) if self.leads else None

    @property
    def median_precursor_lead(self) -> float | None:
        return median(self.precursor_leads) if self.precursor_leads else None


EARLY = 10  # a failure by this step leaves nothing to lead by


def has_precursor(failure: tuple[int | None, str]) -> bool:
    """Whether anything could show before the failure: not a failure in the first
    `EARLY` steps, nor a non-finite loss (a batch or an overflow that breaks one step)."""
    step, rule = failure
    return step is not None and step > EARLY and rule != "non-finite loss"


def score(runs: list[Run], detected: dict[str, int | None], fails: dict[str, tuple[int | None, str]]) -> Score:
    """Recall, leads and false positives of one detector column (`detected`: run -> step)."""
    out = Score()
    for r in runs:
        at = detected[r.name]
        if r.healthy:
            out.healthy += 1
            out.fp += at is not None
            continue
        f = fails[r.name][0]
        if f is None:
            continue
        out.failures += 1
        if at is not None and at <= f:
            out.caught += 1
            out.leads.append(f - at)
            if has_precursor(fails[r.name]):
                out.precursor_leads.append(f - at)
    return out
