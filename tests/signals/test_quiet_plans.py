"""A replay skips the blocks of steps its detectors prove quiet (`quiet_plan`,
signals/quiet.py). Skipping must change nothing a user sees: fed the same run in blocks,
skipping where the detectors allow it and calling `update` elsewhere, the parts raise the
events, log the derived series and end in the state (`state_dict`, bit for bit) that
calling `update` at every step gives, on runs full of faults for every detector."""
import json
import math

import numpy as np
import pytest

from trainvitals.analyze.replay import Analysis, _ReplayOutbox
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.gradients import GradientMonitorCallback, GradientReading
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.signals.drift import trimmed_mean, trimmed_means
from trainvitals.signals.gradient_signals import measured_gain_columns, measured_gains
from trainvitals.signals.quiet import exact_sum3


def _losses(rng, n):
    t = np.arange(n)
    x = 1.5 + 3.0 * np.exp(-t / (n / 8)) + 0.03 * rng.standard_normal(n)
    at = rng.integers(n // 10, n - 600, 5)
    x[at[0]] *= 6  # a spike
    x[at[1]:at[1] + 5] = np.nan  # non-finite losses
    x[at[2]:at[2] + 150] *= np.linspace(1.0, 1.6, 150)  # a climb: divergence
    x[at[3]] = np.inf
    x[at[4]:at[4] + 500] *= np.linspace(1.0, 1.1, 500)  # a creep under the climb, as the LR rises
    return x


def _lrs(n):
    return np.geomspace(1e-4, 1e-1, n).tolist()  # a ramp over the run: loss_creep reads the LR


def _gradients(rng, n, blocks):
    norm = np.exp(0.2 * rng.standard_normal(n))
    gains = np.empty((n, blocks))
    gains[:, 0] = 3.0 * np.exp(0.02 * rng.standard_normal(n))
    gains[:, 1:] = 1.15 * np.exp(0.02 * rng.standard_normal((n, blocks - 1)))
    at = rng.integers(n // 10, n - 300, 6)
    norm[at[0]] *= 40  # a lone jump
    norm[at[1]:at[1] + 4:2] *= 60  # two jumps close together
    gains[at[2]:at[2] + 80, 1:] *= np.linspace(1.0, 1.5, 80)[:, None]  # a drift
    gains[at[3]:at[3] + 20, 1:] *= 6.0  # over the absolute threshold
    gains[at[4], 0] *= 300  # the largest block gain jumps
    norm[at[5]:at[5] + 6] = 1e-10  # vanishing
    gains[at[5]:at[5] + 6, -1] = 0.01
    norm[rng.integers(0, n, 3)] = np.nan
    # jumps near the factor (10x the median), where the quiet proof and the rule are closest
    norm[rng.integers(0, n, 8)] *= np.array([7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 15.0])
    return norm, gains


def _state(part):
    return json.dumps(part.state_dict(), sort_keys=True)


def _blocks(rng, n):
    lo = 0
    while lo < n:
        hi = min(n, lo + int(rng.choice([1, 5, 60, 256, 700])))
        yield lo, hi
        lo = hi


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ema_init,baseline", [("debiased", None), ("first", None), ("debiased", 2.0)])
def test_loss_part_skipping_quiet_blocks_is_update_at_every_step(seed, ema_init, baseline):
    rng = np.random.default_rng(seed)
    n = 12_000
    steps, losses = np.arange(1, n + 1), _losses(rng, n)
    cfg = MonitorConfig(ema_init=ema_init)
    each, box_each = LossMonitorCallback(cfg, baseline, uniform_loss=4.6), _ReplayOutbox(Analysis("each"))
    blocks, box_blocks = LossMonitorCallback(cfg, baseline, uniform_loss=4.6), _ReplayOutbox(Analysis("blocks"))
    skipped = 0
    lrs = _lrs(n)
    for lo, hi in _blocks(rng, n):
        each.report(box_each, steps[lo:hi].tolist(), losses[lo:hi].tolist(), lrs[lo:hi], log_inputs=False)
        if blocks.skip(box_blocks, steps[lo:hi], losses[lo:hi], lambda i: lrs[lo + i]):
            skipped += hi - lo
        else:
            blocks.report(box_blocks, steps[lo:hi].tolist(), losses[lo:hi].tolist(), lrs[lo:hi], log_inputs=False)
        assert _state(blocks) == _state(each), (lo, hi)
    assert skipped > n / 3  # the test would prove nothing if nothing were skipped
    kinds = {e.kind for e in box_each.out.events}
    assert {"nonfinite_loss", "loss_spike", "loss_divergence", "loss_creep"} <= kinds
    if baseline:  # the collapse check (its state tried and put back where it raises anything)
        assert kinds & {"unigram_collapse", "unigram_stall"}
    assert [e.to_dict() for e in box_blocks.out.events] == [e.to_dict() for e in box_each.out.events]
    assert box_blocks.series() == box_each.series()


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("blocks_n", [1, 2, 4])
def test_gradient_part_skipping_quiet_blocks_is_update_at_every_step(seed, blocks_n):
    rng = np.random.default_rng(100 + seed)
    n = 12_000
    steps, losses = np.arange(1, n + 1), _losses(rng, n)
    norm, gains = _gradients(rng, n, max(blocks_n, 2))
    gains = gains[:, :blocks_n]
    names = tuple(str(i) for i in range(blocks_n))
    cfg = MonitorConfig()
    each = GradientMonitorCallback(cfg, blocks_n, gradient_clip=1.0, warmup_steps=100, peak_lr=1e-3)
    blocks = GradientMonitorCallback(cfg, blocks_n, gradient_clip=1.0, warmup_steps=100, peak_lr=1e-3)
    box_each, box_blocks = _ReplayOutbox(Analysis("each")), _ReplayOutbox(Analysis("blocks"))

    def report(part, box, i):
        part.observe_losses([int(steps[i])], [float(losses[i])])
        reading = GradientReading(gains=dict(zip(names, gains[i].tolist())), grad_norm=float(norm[i]))
        part.report(box, int(steps[i]), reading, 1e-3, log_inputs=False)

    skipped = 0
    for lo, hi in _blocks(rng, n):
        for i in range(lo, hi):
            report(each, box_each, i)
        if blocks.skip(box_blocks, steps[lo:hi], names, gains[lo:hi], norm[lo:hi]):
            blocks.observe_losses(steps[lo:hi].tolist(), losses[lo:hi].tolist())
            skipped += hi - lo
        else:
            for i in range(lo, hi):
                report(blocks, box_blocks, i)
        assert _state(blocks) == _state(each), (lo, hi)
    assert skipped > n / 3
    kinds = {e.kind for e in box_each.out.events}
    assert {"grad_norm_jump", "max_gain_jump", "vanishing_gradients"} <= kinds
    if blocks_n > 1:
        assert {"mean_gain_drift", "mean_gain_absolute"} <= kinds
    assert [e.to_dict() for e in box_blocks.out.events] == [e.to_dict() for e in box_each.out.events]
    assert box_blocks.series() == box_each.series()
    s_each, s_blocks = each.signals, blocks.signals
    assert (s_blocks._step, s_blocks._mean_gain, s_blocks._max_gain) == (s_each._step, s_each._mean_gain,
                                                                         s_each._max_gain)


def test_the_vectorised_sums_are_the_per_step_ones_bit_for_bit():
    rng = np.random.default_rng(7)
    for spread in (0.02, 1.0, 20.0):
        a, b, c = (np.exp(spread * rng.standard_normal(50_000)) * rng.choice([-1, 1], 50_000) for _ in range(3))
        want = [math.fsum(t) for t in zip(a.tolist(), b.tolist(), c.tolist())]
        assert exact_sum3(a, b, c).tolist() == want
    for width in (2, 3, 4, 5, 7):
        rows = np.exp(rng.standard_normal((2000, width)))
        assert trimmed_means(rows).tolist() == [trimmed_mean(r) for r in rows.tolist()]
    for names in (("0", "1", "2", "3"), ("0",), ("encoder.0", "encoder.1", "decoder.0", "decoder.1")):
        g = np.exp(rng.standard_normal((500, len(names))))
        mean, top = measured_gain_columns(names, g)
        want = [measured_gains(dict(zip(names, row)))[1:] for row in g.tolist()]
        assert list(zip(mean.tolist(), top.tolist())) == want
