"""The shortcut the jump and spike checks take on quiet steps (not over the factor even
above the window's lowest point, so not above its median: the median is skipped) decides
exactly as the full rule. A replay of a long run takes it millions of times; it rests on
the window's lowest point, kept as points come and go rather than searched at every step."""
import json
import math
import random

import pytest

from trainvitals.signals.divergence import LossDivergenceDetector
from trainvitals.signals.grad_health import GradNormJumpDetector


def _series(seed, n=4000):
    """Few distinct values (so the lowest point often leaves the window while a tie of it
    stays), with jumps and spikes scattered through."""
    rng = random.Random(seed)
    out = [round(rng.uniform(1.0, 1.6), 1) for _ in range(n)]
    for i in rng.sample(range(30, n), 150):  # often a second within a window of the first
        out[i] *= rng.choice([4.0, 20.0, 200.0])
    for i in rng.sample(range(30, n - 5), 5):  # a sustained jump
        out[i:i + 5] = [v * 50 for v in out[i:i + 5]]
    return out


def _events(det, values, full_rule=False, **kw):
    out = []
    for i, v in enumerate(values):
        if full_rule:  # each step above "the lowest point" by infinity: never quiet, the full rule runs
            det._floor = -math.inf
        out += [e.to_dict() for e in det.update(v, i, **kw)]
    return out


@pytest.mark.parametrize("seed", range(3))
def test_jump_checks_raise_what_the_full_rule_raises(seed):
    values = _series(seed)
    for make in (GradNormJumpDetector, lambda: GradNormJumpDetector(10.0, min_history=1, z_max=0.0)):
        fast = _events(make(), values, gradient_clip=1.0)
        assert fast == _events(make(), values, full_rule=True, gradient_clip=1.0)
        assert len(fast) >= 4  # the test has jumps to raise


@pytest.mark.parametrize("seed", range(3))
def test_spike_checks_raise_what_the_full_rule_raises(seed):
    values = _series(seed)
    fast = _events(LossDivergenceDetector(), values)
    assert fast == _events(LossDivergenceDetector(), values, full_rule=True)
    assert sum(e["kind"] == "loss_spike" for e in fast) >= 4


def test_the_kept_lowest_point_is_the_windows_at_every_step_and_after_a_reload():
    values = [math.log(v) for v in _series(7, n=1500)]
    det = GradNormJumpDetector()
    for i, v in enumerate(values):
        det.update(math.exp(v), i)
        assert det._floor == min(det._logs)
        if i == 700:  # a resumed run recomputes it from the saved window
            state = json.loads(json.dumps(det.state_dict()))
            det = GradNormJumpDetector()
            det.load_state_dict(state)
    losses = _series(8, n=1500)
    spikes = LossDivergenceDetector()
    for i, x in enumerate(losses):
        spikes.update(x, i)
        assert spikes._floor == min(spikes._recent)
        if i == 700:
            state = json.loads(json.dumps(spikes.state_dict()))
            spikes = LossDivergenceDetector()
            spikes.load_state_dict(state)
