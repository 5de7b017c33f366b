"""Step-level loss detectors: alarms on spikes, climbs and unigram collapse, silence on
an ordinary falling loss."""
import json
import math
import random

import pytest

from trainvitals.errors import ConfigError
from trainvitals.signals.divergence import LossDivergenceDetector
from trainvitals.signals.unigram import UnigramCollapseDetector

UNIGRAM = 3.26  # nats: the byte LM's unigram entropy (DESIGN.md)


def decaying(seed, noise_sd, steps=3000):
    """A healthy run: exponentially decaying loss with multiplicative batch noise."""
    rng = random.Random(seed)
    return [(0.8 + 3.0 * math.exp(-t / 400)) * (1 + noise_sd * rng.gauss(0, 1))
            for t in range(steps)]


def collapse_run(seed=0):
    """Learns from 5.0 down to 1.5, then climbs back to 3.3 over 300 steps and stays."""
    rng = random.Random(seed)
    out = []
    for t in range(1000):
        level = (1.5 + 3.5 * math.exp(-t / 60) if t < 300
                 else 1.5 + 1.8 * (t - 300) / 300 if t < 600 else 3.3)
        out.append(level * (1 + 0.05 * rng.gauss(0, 1)))
    return out


def ema_of(losses, alpha=0.98):
    out, ema = [], None
    for x in losses:
        ema = x if ema is None else alpha * ema + (1 - alpha) * x
        out.append(ema)
    return out


def feed(detector, losses, start=0, emas=None):
    events = []
    for i, x in enumerate(losses):
        if emas is None:
            events += detector.update(x, start + i)
        else:
            events += detector.update(x, start + i, ema=emas[i])
    return events


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise_sd", [0.05, 0.10])
def test_never_fires_on_a_noisy_falling_loss(seed, noise_sd):
    losses = decaying(seed, noise_sd)
    assert feed(LossDivergenceDetector(), losses) == []
    assert feed(LossDivergenceDetector(), losses, emas=ema_of(losses, 0.99)) == []
    collapse = UnigramCollapseDetector(UNIGRAM)
    assert [e for t, m in enumerate(ema_of(losses)) for e in collapse.update(m, t)] == []


def test_ordinary_hard_batches_are_not_spikes():
    rng = random.Random(7)
    losses = [2.0 * (1 + 0.05 * rng.gauss(0, 1)) * (1.8 if rng.random() < 0.02 else 1.0)
              for _ in range(2000)]
    assert feed(LossDivergenceDetector(), losses) == []


def test_five_fold_spike_fires_within_the_step_and_clears():
    rng = random.Random(1)
    losses = [2.0 * (1 + 0.05 * rng.gauss(0, 1)) for _ in range(300)]
    losses[200] *= 5
    events = feed(LossDivergenceDetector(), losses)
    assert [(e.kind, e.severity, e.step) for e in events] == [
        ("loss_spike", "alert", 200), ("loss_spike", "info", 210)]  # cleared after 10 calm steps
    assert events[0].values["ratio"] > 4


def test_nothing_fires_before_min_history():
    losses = [2.0] * 10 + [20.0]
    assert feed(LossDivergenceDetector(min_history=20), losses) == []
    assert feed(LossDivergenceDetector(min_history=5), losses)[0].kind == "loss_spike"


def test_slow_climb_back_to_the_unigram_entropy_is_divergence_raised_once():
    losses = collapse_run()
    events = feed(LossDivergenceDetector(), losses)
    assert [(e.kind, e.severity) for e in events] == [("loss_divergence", "alert")]
    assert 300 < events[0].step < 600  # during the climb, not after it has settled
    assert events[0].values["running_min"] < 1.7


def test_divergence_clears_when_the_loss_comes_back_down():
    losses = collapse_run()[:500] + [1.5] * 300
    events = feed(LossDivergenceDetector(), losses)
    assert [(e.kind, e.severity) for e in events] == [("loss_divergence", "alert"),
                                                      ("loss_divergence", "info")]


def test_non_finite_losses_are_ignored_without_touching_state():
    det = LossDivergenceDetector()
    feed(det, decaying(0, 0.05, steps=100))
    before = det.state_dict()
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert det.update(bad, 100) == []
    assert det.state_dict() == before


@pytest.mark.parametrize("split", [150, 420, 700])
def test_divergence_resume_from_state_equals_uninterrupted(split):
    losses = collapse_run(seed=3)
    losses[120] *= 6  # a spike as well
    whole = feed(LossDivergenceDetector(), losses)
    first = LossDivergenceDetector()
    head = feed(first, losses[:split])
    resumed = LossDivergenceDetector()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + feed(resumed, losses[split:], start=split) == whole
    assert {e.kind for e in whole} == {"loss_spike", "loss_divergence"}


@pytest.mark.parametrize("kwargs, field", [
    ({"spike_factor": 1.0}, "spike_factor"), ({"window": 2}, "window"),
    ({"min_history": 60}, "min_history"), ({"climb": 0}, "climb"),
    ({"patience": 0}, "patience"), ({"window": 10.5}, "window"),
])
def test_divergence_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        LossDivergenceDetector(**kwargs)


# --- UnigramCollapseDetector ----------------------------------------------------------
def collapse_events(emas, **kw):
    det = UnigramCollapseDetector(UNIGRAM, **kw)
    return [e for t, m in enumerate(emas) for e in det.update(m, t)]


def test_collapse_after_learning_fires_once():
    events = collapse_events(ema_of(collapse_run()))
    assert [(e.kind, e.severity) for e in events] == [("unigram_collapse", "alert")]
    assert 500 < events[0].step < 700
    assert "token frequencies" in events[0].message
    assert events[0].values["best_loss"] < 1.7


def test_a_run_that_starts_at_the_baseline_and_falls_never_fires():
    # Hovers at (and above) the unigram entropy for 150 steps, then learns: no collapse, and
    # shorter than a stall (HF run_clm's slowest healthy run, a 2-layer GPT-2 on a 1024-token
    # BPE, passed through the band in 146 steps)
    emas = [UNIGRAM * 1.02] * 150 + [UNIGRAM * (1 - 0.5 * (1 - math.exp(-t / 100)))
                                     for t in range(800)]
    assert collapse_events(emas) == []


def test_a_loss_that_comes_down_to_the_unigram_entropy_and_stays_is_a_stall():
    # a too-high LR: down to the token frequencies (within 5%) at step 28, then nothing more: 200 steps later
    emas = [UNIGRAM * (1.7 - 0.7 * t / 30) for t in range(30)] + [UNIGRAM * 0.98] * 300
    events = collapse_events(emas)
    assert [(e.kind, e.severity, e.step) for e in events] == [("unigram_stall", "alert", 227)]
    assert events[0].values["reached_step"] == 28 and "token frequencies" in events[0].message
    # a run that learns later is told the stall is over, once it is well below the band
    later = collapse_events(emas + [UNIGRAM * 0.93] * 20 + [UNIGRAM * 0.85] * 5)
    assert [(e.kind, e.severity, e.step) for e in later] == [("unigram_stall", "alert", 227),
                                                            ("unigram_stall", "info", 350)]


def test_a_healthy_pass_through_the_band_is_no_stall():
    # the slowest healthy runs on the detection benchmark's tune half: the LR ramps' twins took
    # 86-104 steps from the band's top to under it; here 150 steps, then learning
    emas = [UNIGRAM * (1.06 - 0.12 * t / 150) for t in range(200)] + [UNIGRAM * 0.9] * 100
    assert collapse_events(emas) == []
    assert collapse_events(emas, stall_steps=100)[0].kind == "unigram_stall"  # the setting is used
    # and the loss signals take it from the config
    from trainvitals.monitor.config import DetectorConfig
    from trainvitals.signals.loss_signals import LossSignals
    signals = LossSignals(DetectorConfig(unigram_stall_steps=100), baseline_loss=UNIGRAM)
    assert signals.collapse.stall_steps == 100


def test_a_dip_shorter_than_patience_is_not_a_collapse():
    emas = [1.5] * 100 + [3.2] * 10 + [1.5] * 100
    assert collapse_events(emas, patience=20) == []


def test_collapse_clears_when_the_model_recovers():
    emas = [1.5] * 100 + [3.2] * 50 + [1.6] * 10
    events = collapse_events(emas)
    assert [(e.severity, e.step) for e in events] == [("alert", 119), ("info", 150)]


def test_collapse_resume_from_state_equals_uninterrupted():
    emas = ema_of(collapse_run(seed=5))
    whole = collapse_events(emas)
    first = UnigramCollapseDetector(UNIGRAM)
    head = [e for t, m in enumerate(emas[:610]) for e in first.update(m, t)]
    resumed = UnigramCollapseDetector(UNIGRAM)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    tail = [e for t, m in enumerate(emas[610:], start=610) for e in resumed.update(m, t)]
    assert head + tail == whole and whole


@pytest.mark.parametrize("kwargs, field", [
    ({"baseline_loss": 0.0}, "baseline_loss"), ({"tolerance": 0.2}, "tolerance"),
    ({"min_drop": 1.0}, "min_drop"), ({"patience": 0}, "patience"),
])
def test_collapse_bad_config_names_the_field(kwargs, field):
    args = {"baseline_loss": UNIGRAM, **kwargs}
    with pytest.raises(ConfigError, match=field):
        UnigramCollapseDetector(**args)
