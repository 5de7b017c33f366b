import json
import math
import random

import pytest

from trainvitals.errors import ConfigError
from trainvitals.signals.grad_health import (
    GradNormJumpDetector,
    NonFiniteGradCheck,
    VanishingFlowDetector,
    nonfinite_gradient_event,
)


def _lognormal(seed, n=1000, sd=0.3, level=1.0, slope=0.0):
    rng = random.Random(seed)
    return [level * math.exp(slope * i + rng.gauss(0, sd)) for i in range(n)]


def _feed(det, norms):
    return [(i, e) for i, g in enumerate(norms) for e in det.update(g, i)]


# --- GradNormJumpDetector -------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("slope", [0.0, -0.005])
def test_stable_or_falling_noisy_grad_norm_never_fires(seed, slope):
    assert _feed(GradNormJumpDetector(), _lognormal(seed, slope=slope)) == []


def test_spike_fires_once_then_clears():
    norms = _lognormal(1, n=200, level=2.0)
    norms[100] *= 50
    events = _feed(GradNormJumpDetector(), norms)
    # no clipping: an alert at once; it clears after 3 (jump_persistence) checks back under the bar
    assert [(i, e.kind, e.severity) for i, e in events] == [
        (100, "grad_norm_jump", "alert"),
        (103, "grad_norm_jump", "info"),
    ]
    alert = events[0][1]
    assert alert.values["ratio"] > 10
    assert alert.values["baseline"] == pytest.approx(2.0, rel=0.3)
    assert "Check the batch at step 100 for extreme values" in alert.suggestions


def test_sustained_jump_alerts_once_with_repeats_counted():
    norms = [1.0] * 30 + [40.0] * 5 + [1.0] * 5
    events = _feed(GradNormJumpDetector(), norms)
    assert [(i, e.severity) for i, e in events] == [(30, "alert"), (37, "info")]
    assert events[1][1].values["repeats"] >= 1


def test_a_lasting_jump_alerted_late_names_the_level_it_jumped_from():
    # a clipped jump the gate backs only once the loss responds, 40 checks in: by then the
    # jump's own points are the window's median, and "1.0x its recent median" says nothing
    backed = {"now": False}
    det = GradNormJumpDetector(gate=lambda g, since: backed["now"])
    events = []
    for i, g in enumerate([3.0] * 30 + [45.0] * 60):
        backed["now"] = i >= 70
        events += det.update(g, i, gradient_clip=1.0)
    alert = next(e for e in events if e.severity == "alert")
    assert alert.step == 70 and alert.values["ratio"] == pytest.approx(1.0)
    assert alert.values["median_before_jump"] == pytest.approx(3.0)
    assert "15.0x its median 3 before the jump" in alert.message
    restored = GradNormJumpDetector()
    restored.load_state_dict(json.loads(json.dumps(det.state_dict())))
    assert restored.state_dict() == det.state_dict()


def test_factor_is_the_bar_on_a_quiet_series():
    det = GradNormJumpDetector(factor=10.0)
    norms = [1.0] * 10
    assert _feed(det, norms + [9.5]) == []
    det = GradNormJumpDetector(factor=10.0)
    assert len(_feed(det, norms + [10.5])) == 1


def test_silent_before_min_history():
    det = GradNormJumpDetector(min_history=5)
    assert _feed(det, [1.0, 1.0, 1.0, 1.0, 1000.0]) == []


def test_very_noisy_series_raises_the_bar():
    # Ordinary noise spanning ~10x (log sd 1.0) should rarely read as a jump, while a
    # bare factor-of-10 rule would fire all the time; a real 1000x jump still fires.
    ours = bare = 0
    for seed in range(5):
        norms = _lognormal(seed, sd=1.0)
        ours += sum(e.severity == "alert" for _, e in _feed(GradNormJumpDetector(), norms))
        factor_only = GradNormJumpDetector()
        factor_only.z_max = 0.0
        bare += sum(e.severity == "alert" for _, e in _feed(factor_only, norms))
    assert bare > 10 * max(ours, 1)
    norms = _lognormal(7, n=100, sd=1.0)
    norms[80] = 1000 * math.exp(4.0)
    assert [i for i, e in _feed(GradNormJumpDetector(), norms) if e.severity == "alert"] == [80]


def test_nonfinite_and_zero_norms_are_skipped():
    det = GradNormJumpDetector()
    assert _feed(det, [1.0] * 10 + [math.nan, math.inf, 0.0, 1.0]) == []


def test_grad_norm_jump_resume():
    norms = _lognormal(2, n=120)
    norms[60] *= 100
    norms[61] *= 100
    whole = GradNormJumpDetector()
    expected = [[e.to_dict() for e in whole.update(g, i)] for i, g in enumerate(norms)]
    part = GradNormJumpDetector()
    for i, g in enumerate(norms[:61]):
        part.update(g, i)
    resumed = GradNormJumpDetector()
    resumed.load_state_dict(json.loads(json.dumps(part.state_dict())))
    got = [[e.to_dict() for e in resumed.update(g, i)] for i, g in enumerate(norms[61:], start=61)]
    assert got == expected[61:] and any(expected[61:])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"factor": 1.0}, "grad_norm_jump_factor"),
        ({"window": 2}, "grad_norm_jump_window"),
        ({"min_history": 50}, "grad_norm_jump_min_history"),
    ],
)
def test_jump_settings_validated(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        GradNormJumpDetector(**kwargs)


# --- VanishingFlowDetector ------------------------------------------------------------

def test_block_gain_below_floor_for_patience_checks_names_block():
    det = VanishingFlowDetector(min_gain=0.05, patience=3)
    healthy = {"blocks.0": 1.2, "blocks.1": 1.1, "blocks.2": 1.0}
    dead = {"blocks.0": 1.2, "blocks.1": 0.01, "blocks.2": 0.02}
    assert det.update(0, 1.0, healthy) == []
    assert det.update(1, 1.0, dead) == []
    assert det.update(2, 1.0, dead) == []
    (ev,) = det.update(3, 1.0, dead)
    assert (ev.kind, ev.severity) == ("vanishing_gradients", "warning")
    assert "blocks.1" in ev.message and "blocks.2" in ev.message and "blocks.0" not in ev.message
    assert ev.values["blocks"] == ["blocks.1", "blocks.2"]
    assert det.update(4, 1.0, dead) == []
    (info,) = det.update(5, 1.0, healthy)
    assert info.severity == "info"


def test_a_single_low_check_is_not_enough():
    det = VanishingFlowDetector(patience=3)
    seq = [0.01, 0.01, 1.0, 0.01, 0.01, 1.0]
    assert [det.update(i, 1.0, {"blocks.3": g}) for i, g in enumerate(seq)] == [[]] * 6


def test_global_norm_below_floor():
    det = VanishingFlowDetector(min_grad_norm=1e-8, patience=2)
    assert det.update(0, 1e-12) == []
    (ev,) = det.update(1, 0.0)
    assert "global gradient norm" in ev.message
    assert det.update(2, math.nan) != []  # NaN is not "vanished": the warning clears


def test_vanishing_resume():
    seq = [0.01] * 2 + [1.0] + [0.01] * 4 + [1.0]
    whole = VanishingFlowDetector()
    expected = [[e.to_dict() for e in whole.update(i, 1.0, {"b": g})] for i, g in enumerate(seq)]
    part = VanishingFlowDetector()
    for i, g in enumerate(seq[:5]):
        part.update(i, 1.0, {"b": g})
    resumed = VanishingFlowDetector()
    resumed.load_state_dict(json.loads(json.dumps(part.state_dict())))
    got = [[e.to_dict() for e in resumed.update(i, 1.0, {"b": g})] for i, g in enumerate(seq[5:], start=5)]
    assert got == expected[5:] and any(expected[5:])


@pytest.mark.parametrize(
    "kwargs,field",
    [({"min_gain": 0}, "vanishing_min_gain"), ({"min_grad_norm": -1}, "vanishing_min_grad_norm"),
     ({"patience": 0}, "vanishing_patience")],
)
def test_vanishing_settings_validated(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        VanishingFlowDetector(**kwargs)


# --- non-finite gradients -------------------------------------------------------------

def test_nonfinite_gradient_event_names_first_parameters():
    bad = ["blocks.0.attn.weight", "blocks.0.attn.bias", "blocks.1.mlp.weight", "head.weight"]
    ev = nonfinite_gradient_event(12, bad, 40, lr=3e-4, gradient_clip=1.0)
    assert (ev.kind, ev.severity, ev.step) == ("nonfinite_gradients", "alert", 12)
    assert ev.message == (
        "Non-finite gradients at step 12 in 4 of 40 parameters: "
        "blocks.0.attn.weight, blocks.0.attn.bias, blocks.1.mlp.weight, ..."
    )
    assert ev.values["num_bad"] == 4 and ev.values["total"] == 40
    assert "Reduce learning rate: 3.0e-04 → 1.5e-04" in ev.suggestions
    short = nonfinite_gradient_event(1, ["w"], 2)
    assert short.message.endswith("in 1 of 2 parameters: w")


def test_nonfinite_grad_check_lifecycle_and_resume():
    seq = [[], ["a"], ["a", "b"], ["a"], [], [], ["c"], []]
    whole = NonFiniteGradCheck()
    expected = [[e.to_dict() for e in whole.update(i, bad, 10)] for i, bad in enumerate(seq)]
    assert [(i, e["severity"]) for i, evs in enumerate(expected) for e in evs] == [
        (1, "alert"), (4, "info"), (6, "alert"), (7, "info"),
    ]
    assert expected[4][0]["values"]["repeats"] == 2
    part = NonFiniteGradCheck()
    for i, bad in enumerate(seq[:3]):
        part.update(i, bad, 10)
    resumed = NonFiniteGradCheck()
    resumed.load_state_dict(json.loads(json.dumps(part.state_dict())))
    got = [[e.to_dict() for e in resumed.update(i, bad, 10)] for i, bad in enumerate(seq[3:], start=3)]
    assert got == expected[3:]
    assert resumed.total_steps == whole.total_steps == 4
