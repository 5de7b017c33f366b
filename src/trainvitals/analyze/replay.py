"""Replay a finished run's series through the very parts the live `Monitor` runs.

The parts (`trainvitals.monitor.loss`, `.gradients`, `.evaluation`) get the logged
values instead of probe readings, so what is computed beside a detector (the gain
aggregates from per-block gains, the EMA, the drift series, the step stamped on
evaluation events, the report text) is the same code live and offline.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field, fields, replace
from math import isfinite
from typing import Any, Callable, Sequence

import numpy as np

from trainvitals.analyze.beside import Beside, can_fork
from trainvitals.analyze.points import Points, as_arrays
from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.roles import span_means
from trainvitals.errors import check_range
from trainvitals.events import Event
from trainvitals.monitor.config import DetectorConfig, MonitorConfig
from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
from trainvitals.monitor.gradients import GradientMonitorCallback, GradientReading
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.monitor.outbox import Outbox

__all__ = ["AnalyzeConfig", "Analysis", "replay", "replay_size", "DERIVED"]

_GAIN = "gradient_monitor/gain/"
_RATIO = "weight_monitor/update_ratio/"
# what a replay adds to a log: the series `--json` prints
DERIVED = ("train/step_loss_ema", "gradient_monitor/mean_gain_ma", "gradient_monitor/mean_gain_drift")


@dataclass
class AnalyzeConfig(DetectorConfig):
    """The detectors' thresholds (declared in `DetectorConfig`, shared with the trainer),
    plus facts about the run. Those left at None are taken from the settings our monitor
    wrote into the log (`RunLog.settings`), else unknown; a value given here wins."""
    num_layers: int | None = None  # blocks in the model; default: the log's, else count its gain/<block> tags
    lr: float | None = None  # the run's peak learning rate, for advice; default: the log's, else unknown
    gradient_clip: float | None = None  # the run's clip, for advice (0 = off); default: the log's, else unknown
    warmup_steps: int | None = None  # the run's warmup, for advice; default: the log's, else unknown
    baseline_loss: float = 0.0  # unigram entropy of the data in nats; 0 = the log's (data/unigram_entropy), else unknown
    uniform_loss: float = 0.0  # ln(vocabulary size), nats; 0 = the log's (data/uniform_loss, or HF's vocab_size), else unknown

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_layers", "gradient_clip", "warmup_steps"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0)
        if self.lr is not None:
            check_range("lr", self.lr, 0, lo_open=True)
        check_range("baseline_loss", self.baseline_loss, 0)
        check_range("uniform_loss", self.uniform_loss, 0)

    def run_facts(self, run: RunLog) -> tuple[dict[str, Any], list[str]]:
        """The run's settings as the live monitor had them (its `run_info`): the log's,
        overridden by every fact given here; and one line per logged value left out."""
        facts, problems = dict(run.settings), []
        for name, kind in _FACTS.items():
            v = facts.get(name)
            if v is None:
                continue
            if kind is int and isinstance(v, float) and v.is_integer():
                v = facts[name] = int(v)  # JSON may hold a count as a float
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int) or v < 0:
                problems.append(f"settings in the log: {name}={v!r} is not a {kind.__name__} >= 0, left out")
                del facts[name]
        for name in ("num_layers", "lr", "gradient_clip", "warmup_steps"):
            if getattr(self, name) is not None:
                facts[name] = getattr(self, name)
        return facts, problems


# the logged settings the replay reads as numbers, and their kind
_FACTS = {"num_layers": int, "lr": float, "gradient_clip": float, "warmup_steps": int}


@dataclass
class Analysis:
    name: str
    events: list[Event] = field(default_factory=list)
    series: dict[str, Points] = field(default_factory=dict)  # the derived series (DERIVED, evaluation/*)
    reports: list[str] = field(default_factory=list)  # post-epoch report blocks
    problems: list[str] = field(default_factory=list)
    steps: int = 0
    final: dict[str, float] = field(default_factory=dict)  # last value of the raw loss tags


class _ReplayOutbox(Outbox):
    """Keeps what the parts derive (EMA, drift, evaluation/*), the events and report
    blocks; a replay takes no decision, so stops and LR cuts are dropped."""

    def __init__(self, out: Analysis) -> None:
        super().__init__()
        self.out = out
        # tag -> (steps, values), 16 bytes a point: a long run derives millions; or the Points of a merged part
        self.kept: dict[str, tuple[array, array] | Points] = {}

    def log(self, tag: str, value: float, step: int) -> None:
        # called for every step's derived values: a builder's work, inlined
        if not isfinite(value):
            return
        kept = self.kept.get(tag)
        if kept is None:
            if not (tag in DERIVED or tag.startswith("evaluation/")):
                return
            kept = self.kept[tag] = (array("q"), array("d"))
        steps, values = kept
        if steps and steps[-1] == step:
            values[-1] = value  # a logged N-step mean is fed N times (_per_step): the last stays
        else:
            steps.append(step)
            values.append(value)

    def log_block(self, tag: str, steps: np.ndarray, values: np.ndarray) -> None:
        """`log` of each (step, value), as arrays."""
        if not (tag in self.kept or tag in DERIVED or tag.startswith("evaluation/")):
            return
        ok = np.isfinite(values)
        if not ok.all():
            steps, values = steps[ok], values[ok]
        if not len(steps):
            return
        kept = self.kept.get(tag)
        if kept is None:
            kept = self.kept[tag] = (array("q"), array("d"))
        last = np.ones(len(steps), bool)  # the last of steps fed more than once stays, as in `log`
        last[:-1] = steps[1:] != steps[:-1]
        if kept[0] and kept[0][-1] == steps[0]:
            kept[0].pop()
            kept[1].pop()
        kept[0].frombytes(steps[last].astype(np.int64).tobytes())
        kept[1].frombytes(values[last].astype(np.float64).tobytes())

    def emit(self, events, echo: bool = True) -> None:
        if events:
            self.out.events += [events] if isinstance(events, Event) else list(events)

    def text(self, line: str) -> None:
        self.out.reports.append(line.strip("\n"))

    def series(self) -> dict[str, Points]:
        out = {tag: kept if isinstance(kept, Points) else Points(np.frombuffer(kept[0], np.int64),
                                                                  np.frombuffer(kept[1], np.float64))
               for tag, kept in self.kept.items()}
        return {tag: p for tag, p in out.items() if len(p)}

    def merge(self, part: tuple) -> None:
        """Take in what `_apart` returned, as if its part had been replayed into this box now."""
        events, series, problems, lr_scale = part
        self.out.events += events
        self.out.problems += problems
        self.kept.update(series)
        self.lr_scale *= lr_scale


_BLOCK = 1 << 16  # steps fed to the detectors at a time: Python floats only for these
_CHUNK = 256  # steps offered to the detectors' quiet proof after one it refused
# both halves of a replay at least this long run side by side (`beside`): a fork costs ~10 ms
_SIDE_BY_SIDE_MIN_STEPS = 50_000


def replay(run: RunLog, cfg: AnalyzeConfig, progress: Callable[[int], None] | None = None) -> Analysis:
    """Run `run`'s logged series through the monitor's own parts, with `cfg`'s thresholds.
    `progress(n)` is called as steps are fed, n at a time (`replay_size(run)` in all)."""
    facts, problems = cfg.run_facts(run)
    out = Analysis(run.name, problems=list(run.problems) + problems)
    out.final = {t: run.series[t][-1][1] for t in ("train/step_loss", "train/epoch_loss", "val/loss")
                 if run.series.get(t)}
    baseline = cfg.baseline_loss or (run.series["data/unigram_entropy"][-1][1]
                                     if run.series.get("data/unigram_entropy") else None)
    box = _ReplayOutbox(out)
    tick = progress or (lambda n: None)
    monitor_cfg = MonitorConfig(**{f.name: getattr(cfg, f.name) for f in fields(DetectorConfig)})
    lr_steps, lr_values = as_arrays(run.series.get("train/lr", []))
    loss_steps, loss_values = _per_step(*as_arrays(run.series.get("train/step_loss", [])))
    grad_steps = _gradient_steps(run)

    uniform = _uniform_loss(cfg, run, facts)

    def losses(into: _ReplayOutbox, tick: Callable[[int], None]) -> None:
        _replay_losses(run, facts, monitor_cfg, baseline, uniform, loss_steps, loss_values, lr_steps, lr_values,
                       into, tick)

    def gradients(into: _ReplayOutbox, tick: Callable[[int], None]) -> None:
        _replay_gradients(run, facts, monitor_cfg, grad_steps, lr_steps, lr_values, into, tick,
                          (loss_steps, loss_values))

    # the two halves share no state (the gradient half reads the logged losses, not the loss half's
    # detectors): the loss part cuts no LR, so the gradient part starts at scale 1 either way
    if min(len(loss_steps), len(grad_steps)) >= _SIDE_BY_SIDE_MIN_STEPS and can_fork():
        other = Beside(lambda t: _apart(run.name, gradients, t), tick)
        losses(box, lambda n: (tick(n), other.forward()))  # the bar counts both halves as they go
        box.merge(other.result())
    else:
        losses(box, tick)
        gradients(box, tick)
    _replay_evaluations(run, facts, monitor_cfg, baseline, _step_lookup(lr_steps, lr_values), box)
    out.series = box.series()
    out.events.sort(key=lambda e: (e.step if e.step is not None else -1, e.epoch or 0))
    return out


def _apart(name: str, part: Callable, tick: Callable[[int], None]) -> tuple:
    """`part` replayed into an outbox of its own: what `_ReplayOutbox.merge` takes."""
    box = _ReplayOutbox(Analysis(name))
    part(box, tick)
    return box.out.events, box.series(), box.out.problems, box.lr_scale


def _uniform_loss(cfg: AnalyzeConfig, run: RunLog, facts: dict[str, Any]) -> float | None:
    """The loss of a uniform prediction: given, logged by our monitor, or ln of the vocabulary
    size another writer logged (HF's model config): what a log of N-step means, whose first
    point already averages N steps, can compare its losses with."""
    if cfg.uniform_loss:
        return cfg.uniform_loss
    if run.series.get("data/uniform_loss"):
        return run.series["data/uniform_loss"][-1][1]
    vocab = facts.get("vocab_size")
    ok = isinstance(vocab, (int, float)) and not isinstance(vocab, bool) and math.isfinite(vocab) and vocab > 1
    return math.log(vocab) if ok else None


def replay_size(run: RunLog) -> int:
    """How many steps `replay` feeds (the total its `progress` reaches)."""
    losses = run.series.get("train/step_loss", [])
    n = len(_per_step(*as_arrays(losses))[0]) if losses else 0
    return n + len(_gradient_steps(run))


def _replay_losses(run: RunLog, facts: dict[str, Any], monitor_cfg: MonitorConfig, baseline: float | None,
                   uniform: float | None, steps: np.ndarray, values: np.ndarray, lr_steps: np.ndarray,
                   lr_values: np.ndarray, box: _ReplayOutbox, tick: Callable[[int], None]) -> None:
    if not len(steps):
        return
    box.out.steps = int(steps[-1])
    part = LossMonitorCallback(monitor_cfg, baseline, facts.get("gradient_clip") or None, uniform,
                               peak_lr=facts.get("lr"), warmup_steps=facts.get("warmup_steps"))

    def skip(lo: int, hi: int) -> bool:
        return part.skip(box, steps[lo:hi], values[lo:hi],
                         lambda i: _values_at(lr_steps, lr_values, steps[lo + i:lo + i + 1])[0])

    for lo, hi in _chunks(len(steps), skip, tick):
        part.report(box, steps[lo:hi].tolist(), values[lo:hi].tolist(),
                    _values_at(lr_steps, lr_values, steps[lo:hi]), log_inputs=False)


def _chunks(n: int, skip: Callable[[int, int], bool], tick: Callable[[int], None]):
    """Steps 0..n in chunks, each offered to `skip` (the detectors' proof that nothing happens
    there, signals/quiet.py); yields the (lo, hi) to be fed step by step. A chunk skipped
    doubles the next (up to `_BLOCK`); one refused is halved and offered again, down to
    `_CHUNK` steps, which are yielded: the steps fed one at a time are those near where
    something may happen."""
    lo, size = 0, _CHUNK
    while lo < n:
        hi = min(n, lo + size)
        if skip(lo, hi):
            size = min(2 * size, _BLOCK)
        elif size > _CHUNK:
            size //= 2
            continue
        else:
            yield lo, hi
        tick(hi - lo)
        lo = hi


def _gradient_tags(run: RunLog) -> dict[str, Sequence[tuple[int, float]]]:
    return {t: v for t, v in run.series.items()
            if t in _GRADIENT_TAGS or t.startswith(_GAIN) or t.startswith(_RATIO)}


_GRADIENT_TAGS = tuple(f"gradient_monitor/{t}" for t in ("mean_gain", "grad_norm", "max_gain"))


def _gradient_steps(run: RunLog) -> np.ndarray:
    """Every step any gradient series has, in order."""
    steps = [as_arrays(v)[0] for v in _gradient_tags(run).values()]
    if not steps:
        return np.zeros(0, np.int64)
    first = steps[0]
    # the common case, every series on the same increasing steps, is those steps: no 3-second
    # np.unique over millions of them (the union is taken only where they differ)
    if (first[1:] > first[:-1]).all() and all(np.array_equal(first, s) for s in steps[1:]):
        return first
    return np.unique(np.concatenate(steps))


def _replay_gradients(run: RunLog, facts: dict[str, Any], monitor_cfg: MonitorConfig, steps: np.ndarray,
                      lr_steps: np.ndarray, lr_values: np.ndarray, box: _ReplayOutbox,
                      tick: Callable[[int], None], losses: tuple[np.ndarray, np.ndarray]) -> None:
    if not len(steps):
        return
    # every series on the steps any of them has; NaN where it has no point (a logged NaN is kept apart)
    tags = _gradient_tags(run)
    cols = {t: _aligned(*as_arrays(v), steps) for t, v in tags.items()}
    gains = [(t[len(_GAIN):], cols[t]) for t in tags if t.startswith(_GAIN)]
    ratios = [(t[len(_RATIO):], cols[t]) for t in tags if t.startswith(_RATIO)]
    num_layers = facts.get("num_layers") or len(gains) or None
    if num_layers is None and monitor_cfg.mean_gain_absolute_threshold == "auto":
        monitor_cfg = replace(monitor_cfg, mean_gain_absolute_threshold=1.3)  # "auto" at 12 blocks
        box.out.problems.append("num_layers unknown (no gradient_monitor/gain/<block> tags): mean gain "
                                "threshold 'auto' taken as 1.3; pass --num-layers for the depth-scaled one")
    part = GradientMonitorCallback(monitor_cfg, num_layers, gradient_clip=facts.get("gradient_clip") or None,
                                   warmup_steps=facts.get("warmup_steps"), peak_lr=facts.get("lr"))
    singles = [cols.get(f"gradient_monitor/{t}") for t in ("grad_norm", "mean_gain", "max_gain")]
    names = [name for name, _ in gains]
    report, observe, observe_all = part.report, part.signals.observe_loss, part.observe_losses
    # one reading, refilled at each step: `report` keeps none of it
    r = GradientReading()
    # each gradient step sees the losses up to it, as live (the gain gate reads them)
    fed_to, fed = np.searchsorted(losses[0], steps, side="right"), 0
    gain_cols = [c for _, c in gains]
    # the series a reading is made of: with block gains, the logged aggregates are not read
    present = [c for c in (gain_cols + singles[:1] if gain_cols else singles) if c is not None]

    def skip(lo: int, hi: int) -> bool:
        nonlocal fed
        if ratios or any(c.missing[lo:hi].any() for c in present):
            return False  # update ratios, a step without every series: step by step
        matrix = np.column_stack([c.values[lo:hi] for c in gain_cols]) if gain_cols else None
        norm, mean, top = (c.values[lo:hi] if c is not None else None for c in singles)
        if not part.skip(box, steps[lo:hi], tuple(names), matrix, norm, mean, top):
            return False
        upto = int(fed_to[hi - 1])
        observe_all(losses[0][fed:upto].tolist(), losses[1][fed:upto].tolist())
        fed = upto
        return True

    for lo, hi in _chunks(len(steps), skip, tick):
        block = [c.block(lo, hi) if c is not None else [None] * (hi - lo) for c in singles]
        gain_dicts = _dicts(names, [c.block(lo, hi) for _, c in gains], hi - lo)
        weights = _weights([(name, c.block(lo, hi)) for name, c in ratios], hi - lo)
        first = fed  # the block's losses as Python numbers, indexed from `first`
        upto_all = fed_to[lo:hi].tolist()
        loss_steps = losses[0][first:upto_all[-1]].tolist()
        loss_values = losses[1][first:upto_all[-1]].tolist()
        lrs = _values_at(lr_steps, lr_values, steps[lo:hi])
        for step, g, norm, mean, top, w, lr, upto in zip(steps[lo:hi].tolist(), gain_dicts, *block, weights,
                                                         lrs, upto_all):
            if upto > fed:
                if upto == fed + 1:  # one loss a gradient step, the common case
                    observe(loss_steps[fed - first], loss_values[fed - first])
                else:
                    observe_all(loss_steps[fed - first:upto - first], loss_values[fed - first:upto - first])
                fed = upto
            r.gains, r.grad_norm, r.mean_gain, r.max_gain, r.weights = g, norm, mean, top, w
            report(box, step, r, lr, log_inputs=False)


def _dicts(names: list[str], cols: list[list[float | None]], n: int) -> list[dict[str, float]]:
    """Row k: {name: its column's value k}, leaving out the Nones."""
    if not any(None in c for c in cols):  # the common case: every series has every step
        return [dict(zip(names, row)) for row in zip(*cols)] if cols else [{} for _ in range(n)]
    return [{name: v for name, v in zip(names, row) if v is not None} for row in zip(*cols)]


def _weights(ratio_cols: list[tuple[str, list[float | None]]], n: int) -> list[dict[str, Any] | None]:
    """The logged update ratios of each step, as `GradientReading.weights` (None: none logged)."""
    if not ratio_cols:
        return [None] * n
    out: list[dict[str, Any] | None] = []
    for logged in _dicts([name for name, _ in ratio_cols], [c for _, c in ratio_cols], n):
        out.append({"update_ratio": logged, "unchanged": [k for k, r in logged.items() if r == 0.0]}
                   if logged else None)
    return out


class _Column:
    """A series on the replay's steps: its values, and where it has no point."""

    def __init__(self, values: np.ndarray, missing: np.ndarray) -> None:
        self.values, self.missing = values, missing

    def block(self, lo: int, hi: int) -> list[float | None]:
        """Python floats of steps lo..hi, None where the series has no point."""
        out = self.values[lo:hi].tolist()
        gone = np.flatnonzero(self.missing[lo:hi])
        for i in gone.tolist():
            out[i] = None
        return out


def _aligned(steps: np.ndarray, values: np.ndarray, on: np.ndarray) -> _Column:
    at = np.searchsorted(steps, on).clip(0, max(len(steps) - 1, 0))
    if not len(steps):
        return _Column(np.full(len(on), math.nan), np.ones(len(on), bool))
    missing = steps[at] != on
    return _Column(np.where(missing, math.nan, values[at]), missing)


def _replay_evaluations(run: RunLog, facts: dict[str, Any], monitor_cfg: MonitorConfig, baseline: float | None,
                        lr_at, box: _ReplayOutbox) -> None:
    """Every evaluation the run made, in order, through the live glue: where our monitor
    logged one (`evaluation/train_loss`, with the host's `evaluation/epoch` where it named
    one), with the train loss it used; in another writer's log, each val loss at its step
    with the mean step loss since the previous one (HF `eval_steps`), or each epoch end
    where evaluations are epoch ends (its epoch loss, and the val loss logged there)."""
    s = run.series
    val, epoch_loss = dict(s.get("val/loss", [])), dict(s.get("train/epoch_loss", []))
    if not val and not epoch_loss:
        return
    part = PostEpochEvaluationCallback(monitor_cfg, baseline)
    if run.index == "epoch":  # an epoch CSV counts epochs, and has no steps
        for epoch, train in epoch_loss.items():
            part.report(box, int(epoch), None, train, val.get(epoch), None, facts)
        return
    losses = s.get("train/step_loss", [])
    logged = dict(s.get("evaluation/train_loss", []))
    if logged:
        steps, train_of, host = sorted(logged), logged.get, dict(s.get("evaluation/epoch", [])).get
    elif val and not set(val) <= set(epoch_loss):  # evaluations every N steps, not at epoch ends
        steps = sorted(val)
        train_of = dict(zip(steps, span_means(losses, steps))).get
        host = dict(s.get("train/epoch", [])).get
    else:
        steps, train_of, host = sorted(epoch_loss), epoch_loss.get, (lambda step: None)
    loss_steps, loss_values = as_arrays(losses)
    start = 0
    for index, step in enumerate(steps):
        # as live: the last finite step loss before the first non-finite one since the previous evaluation
        end = int(np.searchsorted(loss_steps, step, side="right"))
        bad = np.flatnonzero(~np.isfinite(loss_values[start:end]))
        before_bad = None
        if len(bad):
            finite = np.flatnonzero(np.isfinite(loss_values[:start + bad[0]]))
            before_bad = float(loss_values[finite[-1]]) if len(finite) else None
        start = end
        train = train_of(step)
        part.report(box, index, step, math.nan if train is None else train, val.get(step), lr_at(step), facts,
                    before_bad, host_epoch=host(step))


def _per_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loss detectors count steps (the EMA's decay, the divergence patience, the spike
    history, the early horizon), so a loss logged every N steps (HF's `logging_steps=N`
    mean) is fed once for each step it stands for: the steps since the previous logged
    one, all stamped with the step it was logged at (nothing is known before). A
    per-step log is fed as it is."""
    n = np.maximum(1, np.diff(steps, prepend=0))
    return np.repeat(steps, n), np.repeat(values, n)


def _values_at(steps: np.ndarray, values: np.ndarray, at: np.ndarray) -> list[float | None]:
    """value at the latest logged step <= each of `at` (None before the first)."""
    i = np.searchsorted(steps, at, side="right") - 1
    out = values[i.clip(0)].tolist() if len(steps) else [None] * len(at)
    for k in np.flatnonzero(i < 0).tolist():
        out[k] = None
    return out


def _step_lookup(steps: np.ndarray, values: np.ndarray):
    """value at the latest logged step <= step (None before the first)."""
    def at(step: int) -> float | None:
        return _values_at(steps, values, np.array([step]))[0]
    return at
