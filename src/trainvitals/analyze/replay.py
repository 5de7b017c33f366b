"""Replay a finished run's series through the very parts the live `Monitor` runs.

The parts (`trainvitals.monitor.loss`, `.gradients`, `.evaluation`) get the logged
values instead of probe readings, so what is computed beside a detector (the gain
aggregates from per-block gains, the EMA, the drift series, the step stamped on
evaluation events, the report text) is the same code live and offline.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.roles import span_means
from trainvitals.errors import check_range
from trainvitals.events import Event
from trainvitals.monitor.config import DetectorConfig, MonitorConfig
from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
from trainvitals.monitor.gradients import GradientMonitorCallback, GradientReading
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.monitor.outbox import Outbox

__all__ = ["AnalyzeConfig", "Analysis", "replay", "DERIVED"]

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

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_layers", "gradient_clip", "warmup_steps"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0)
        if self.lr is not None:
            check_range("lr", self.lr, 0, lo_open=True)
        check_range("baseline_loss", self.baseline_loss, 0)

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
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
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

    def log(self, tag: str, value: float, step: int) -> None:
        if (tag in DERIVED or tag.startswith("evaluation/")) and math.isfinite(value):
            points = self.out.series.setdefault(tag, [])
            if points and points[-1][0] == step:  # a logged N-step mean is fed N times (_per_step)
                points[-1] = (step, value)
            else:
                points.append((step, value))

    def emit(self, events, echo: bool = True) -> None:
        self.out.events += [events] if isinstance(events, Event) else list(events)

    def text(self, line: str) -> None:
        self.out.reports.append(line.strip("\n"))


def replay(run: RunLog, cfg: AnalyzeConfig) -> Analysis:
    """Run `run`'s logged series through the monitor's own parts, with `cfg`'s thresholds."""
    facts, problems = cfg.run_facts(run)
    out = Analysis(run.name, problems=list(run.problems) + problems)
    out.final = {t: run.series[t][-1][1] for t in ("train/step_loss", "train/epoch_loss", "val/loss")
                 if run.series.get(t)}
    baseline = cfg.baseline_loss or (run.series["data/unigram_entropy"][-1][1]
                                     if run.series.get("data/unigram_entropy") else None)
    box = _ReplayOutbox(out)
    monitor_cfg = MonitorConfig(**{f.name: getattr(cfg, f.name) for f in fields(DetectorConfig)})
    lr_at = _step_lookup(run.series.get("train/lr", []))
    losses = run.series.get("train/step_loss", [])
    if losses:
        out.steps = losses[-1][0]
        uniform = run.series["data/uniform_loss"][-1][1] if run.series.get("data/uniform_loss") else None
        part = LossMonitorCallback(monitor_cfg, baseline, facts.get("gradient_clip") or None, uniform,
                                   peak_lr=facts.get("lr"), warmup_steps=facts.get("warmup_steps"))
        steps, values = _per_step(losses)
        part.report(box, steps, values, [lr_at(s) for s in steps], log_inputs=False)
    _replay_gradients(run, facts, monitor_cfg, lr_at, box)
    _replay_evaluations(run, facts, monitor_cfg, baseline, lr_at, box)
    out.events.sort(key=lambda e: (e.step if e.step is not None else -1, e.epoch or 0))
    return out


def _replay_gradients(run: RunLog, facts: dict[str, Any], monitor_cfg: MonitorConfig, lr_at,
                      box: _ReplayOutbox) -> None:
    def by_step(tag: str) -> dict[int, float]:
        return dict(run.series.get(tag, []))

    mean_gain, grad_norm, max_gain = (by_step(f"gradient_monitor/{t}") for t in ("mean_gain", "grad_norm", "max_gain"))
    gains = {t[len(_GAIN):]: dict(v) for t, v in run.series.items() if t.startswith(_GAIN)}
    ratios = {t[len(_RATIO):]: dict(v) for t, v in run.series.items() if t.startswith(_RATIO)}
    steps = set(mean_gain) | set(grad_norm) | set(max_gain)
    for series in (*gains.values(), *ratios.values()):
        steps |= set(series)
    if not steps:
        return
    num_layers = facts.get("num_layers") or len(gains) or None
    if num_layers is None and monitor_cfg.mean_gain_absolute_threshold == "auto":
        monitor_cfg = replace(monitor_cfg, mean_gain_absolute_threshold=1.3)  # "auto" at 12 blocks
        box.out.problems.append("num_layers unknown (no gradient_monitor/gain/<block> tags): mean gain "
                                "threshold 'auto' taken as 1.3; pass --num-layers for the depth-scaled one")
    part = GradientMonitorCallback(monitor_cfg, num_layers, gradient_clip=facts.get("gradient_clip") or None,
                                   warmup_steps=facts.get("warmup_steps"), peak_lr=facts.get("lr"))
    for step in sorted(steps):
        logged = {name: r[step] for name, r in ratios.items() if step in r}
        weights = {"update_ratio": logged, "unchanged": [n for n, r in logged.items() if r == 0.0]} \
            if logged else None
        reading = GradientReading({b: v[step] for b, v in gains.items() if step in v}, grad_norm.get(step),
                                  mean_gain.get(step), max_gain.get(step), weights=weights)
        part.report(box, step, reading, lr_at(step), log_inputs=False)


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
        progress = dict(s.get("train/epoch", []))
        host = progress.get
    else:
        steps, train_of, host = sorted(epoch_loss), epoch_loss.get, (lambda step: None)
    at, start = [step for step, _ in losses], 0
    for index, step in enumerate(steps):
        # as live: the last finite step loss before the first non-finite one since the previous evaluation
        end = bisect.bisect_right(at, step)
        bad = next((k for k in range(start, end) if not math.isfinite(losses[k][1])), None)
        before_bad = None if bad is None else next((v for _, v in reversed(losses[:bad]) if math.isfinite(v)), None)
        start = end
        train = train_of(step)
        part.report(box, index, step, math.nan if train is None else train, val.get(step), lr_at(step), facts,
                    before_bad, host_epoch=host(step))


def _per_step(losses: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    """The loss detectors count steps (the EMA's decay, the divergence patience, the spike
    history, the early horizon), so a loss logged every N steps (HF's `logging_steps=N`
    mean) is fed once for each step it stands for: the steps since the previous logged
    one, all stamped with the step it was logged at (nothing is known before). A
    per-step log is fed as it is."""
    steps: list[int] = []
    values: list[float] = []
    prev = 0
    for step, value in losses:
        n = max(1, step - prev)
        steps += [step] * n
        values += [value] * n
        prev = step
    return steps, values


def _step_lookup(points: list[tuple[int, float]]):
    """value at the latest logged step <= step (None before the first)."""
    steps = [s for s, _ in points]

    def at(step: int) -> float | None:
        i = bisect.bisect_right(steps, step) - 1
        return points[i][1] if i >= 0 else None
    return at
