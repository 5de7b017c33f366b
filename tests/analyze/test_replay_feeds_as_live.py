"""The replay driver feeds the monitor's parts as the live `Monitor.flush` does: the losses
of a flush, then each monitored step's gradient reading. However it cuts a long log (blocks
of steps, one refilled reading, the losses fed one at a time or several before a gradient
step, the gradient half in a forked process), a long run with faults raises the same
events, one by one, and derives the same series as the parts fed live."""
import math
import random

import pytest

from trainvitals.analyze import replay as replay_module
from trainvitals.analyze.beside import can_fork
from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.replay import DERIVED, AnalyzeConfig, replay
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.gradients import GradientMonitorCallback, GradientReading
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.monitor.outbox import Outbox

STEPS, FLUSH = 3000, 10  # host values fetched every 10 steps


def _run(seed=0):
    rng = random.Random(seed)
    steps = list(range(1, STEPS + 1))
    loss = [(1.5 + 3.0 * math.exp(-s / 300)) * (1 + 0.02 * rng.gauss(0, 1)) for s in steps]
    loss[1500] *= 8  # a spike
    loss[2000:2005] = [math.nan] * 5
    lr = [3e-4 * min(1.0, s / 100) for s in steps]
    grad = {}
    for s in (s for s in steps if s < 1000 or s % 2 == 0):  # gradients measured at every step, then every 2nd
        rise = 1.0 + (0.008 * (s - 2700) if s > 2700 else 0.0)  # the inner gains drift up, then past "auto"
        leap = 13 if 400 <= s < 405 else 1  # the first block's gain leaps while the loss still falls: the gate's call
        gains = {"0": leap * 3.0 * math.exp(0.02 * rng.gauss(0, 1)), "1": 1.15 * rise * math.exp(0.02 * rng.gauss(0, 1)),
                 "2": math.nan if 1200 <= s < 1300 else 1.1 * rise}  # block 2 unmeasured for a while
        norm = math.exp(0.2 * rng.gauss(0, 1)) * (50 if s == 2500 else 1)  # a grad-norm jump
        grad[s] = (gains, norm)
    return steps, loss, lr, grad


def _log(steps, loss, lr, grad):
    series = {"train/step_loss": list(zip(steps, loss)), "train/lr": list(zip(steps, lr)),
              "gradient_monitor/grad_norm": [(s, n) for s, (_, n) in grad.items()]}
    for block in "012":
        series[f"gradient_monitor/gain/{block}"] = [(s, g[block]) for s, (g, _) in grad.items()]
    return RunLog("run", series)


class _Kept(Outbox):
    """A live outbox that keeps the derived series a replay returns."""

    def __init__(self):
        super().__init__()
        self.kept = {}

    def log(self, tag, value, step):
        if tag in DERIVED and math.isfinite(value):
            self.kept.setdefault(tag, {})[step] = value


def _live(steps, loss, lr, grad):
    cfg = MonitorConfig()
    losses, grads = _Kept(), _Kept()
    loss_part, grad_part = LossMonitorCallback(cfg), GradientMonitorCallback(cfg, 3)
    for lo in range(0, len(steps), FLUSH):  # as `Monitor.flush`: the flush's losses, then its gradient steps
        batch = slice(lo, lo + FLUSH)
        loss_part.report(losses, steps[batch], loss[batch], lr[batch])
        grad_part.observe_losses(steps[batch], loss[batch])
        for s in steps[batch]:
            if s in grad:
                grad_part.report(grads, s, GradientReading(dict(grad[s][0]), grad[s][1]), lr[s - 1])
    # a replay orders events by step, a step's loss events before its gradient events
    events = sorted(losses.events + grads.events, key=lambda e: e.step)
    return events, {**losses.kept, **grads.kept}


@pytest.mark.parametrize("side_by_side", [False, True], ids=["in-turn", "side-by-side"])
def test_a_long_run_replayed_in_small_blocks_raises_the_live_events(monkeypatch, side_by_side):
    if side_by_side and not can_fork():
        pytest.skip("no fork or one core: the halves run in turn")
    run = _run()
    live_events, live_series = _live(*run)
    monkeypatch.setattr(replay_module, "_BLOCK", 97)  # blocks that cut flushes and gradient steps anywhere
    monkeypatch.setattr(replay_module, "_SIDE_BY_SIDE_MIN_STEPS", 0 if side_by_side else 10**9)
    got = replay(_log(*run), AnalyzeConfig())
    kinds = {e.kind for e in live_events}
    assert {"loss_spike", "nonfinite_loss", "grad_norm_jump", "gain_not_measurable", "mean_gain_absolute"} <= kinds
    assert any(e.kind == "max_gain_jump" and e.severity == "warning" for e in live_events)  # held back by the falling loss
    assert [e.to_dict() for e in got.events] == [e.to_dict() for e in live_events]
    assert {tag: dict(zip(p.steps.tolist(), p.values.tolist())) for tag, p in got.series.items()} == live_series
