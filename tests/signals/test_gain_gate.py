"""A gradient-gain excursion is an alert only when the loss backs it or the gain exploded:
while the loss keeps falling it is a warning (DESIGN.md: an alert means the run is failing)."""
import math

from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.gain_gate import LossTrend
from trainvitals.signals.gradient_signals import GradientSignals


def _falling(step):  # a healthy run's loss: 5.5 down to ~2.5
    return 2.5 + 3.0 * math.exp(-step / 40)


def _feed(sig, steps, loss, mean_gain, gains=None):
    events = []
    for s in steps:
        sig.observe_loss(s, loss(s))
        events += sig.update(s, mean_gain=mean_gain(s), gains=gains)
    return [(e.kind, e.severity, e.step) for e in events if e.kind == "mean_gain_absolute"]


def test_loss_trend_says_stall_rise_and_nonfinite_not_a_fall():
    t = LossTrend()
    for s in range(1, 61):
        t.observe(s, _falling(s))
    assert not t.corroborates(60)  # falling
    flat = LossTrend()
    for s in range(1, 61):
        flat.observe(s, 3.0 + 0.01 * (s % 3))
    assert not flat.corroborates(10)  # too early to say a flat loss stalled
    assert flat.corroborates(40)
    t.observe(61, 9.0)  # one batch far up lifts the EMA over its low
    assert t.corroborates(61)
    t.observe(62, math.nan)
    assert t.corroborates(62)


def test_gain_over_its_threshold_while_the_loss_falls_is_a_warning_then_an_alert_when_the_loss_rises():
    sig = GradientSignals(DetectorConfig(mean_gain_absolute_threshold=2.0), num_layers=4)
    gains = {"0": 3.0, "1": 3.0}
    falling = _feed(sig, range(1, 80), _falling, lambda s: 3.0, gains)
    assert falling == [("mean_gain_absolute", "warning", 1)]
    # the loss flattening later does not escalate a gain that has been over since the start
    assert _feed(sig, range(80, 120), lambda s: _falling(80), lambda s: 3.0, gains) == []
    rising = _feed(sig, range(120, 140), lambda s: _falling(80) * (1 + 0.01 * (s - 119)), lambda s: 3.0, gains)
    assert rising and rising[0][1] == "alert" and rising[0][2] > 120  # escalated, not raised anew


def test_a_gain_excursion_on_a_stalled_loss_is_an_alert():
    sig = GradientSignals(DetectorConfig(mean_gain_absolute_threshold=2.0), num_layers=4)
    gains = {"0": 1.5, "1": 1.5}
    assert _feed(sig, range(1, 80), _falling, lambda s: 1.5, gains) == []
    assert _feed(sig, range(80, 120), lambda s: _falling(80), lambda s: 1.5, gains) == []
    assert _feed(sig, range(120, 125), lambda s: _falling(80), lambda s: 3.0, {"0": 3.0, "1": 3.0}) == \
        [("mean_gain_absolute", "alert", 120)]


def test_an_exploded_mean_gain_is_an_alert_at_once_and_marked_so():
    sig = GradientSignals(DetectorConfig(), num_layers=4)
    gains = {"0": 3.0, "1": 12.0}  # the inner mean (block 1) past 10
    sig.observe_loss(1, 5.5)
    (e,) = [e for e in sig.update(1, mean_gain=12.0, gains=gains) if e.kind == "mean_gain_absolute"]
    assert e.severity == "alert" and e.values["exploded"] is True


def test_a_model_of_one_block_per_stack_is_judged_by_the_block_bar():
    # encoder.0 / decoder.0 only: the mean is of first blocks, which climb to ~60 when healthy
    sig = GradientSignals(DetectorConfig(), num_layers=2)
    gains = {"encoder.0": 14.0, "decoder.0": 14.0}
    assert _feed(sig, range(1, 40), _falling, lambda s: 14.0, gains) == [("mean_gain_absolute", "warning", 1)]
    sig = GradientSignals(DetectorConfig(), num_layers=2)
    assert _feed(sig, range(1, 5), _falling, lambda s: 60.0, {"encoder.0": 60.0, "decoder.0": 60.0}) == \
        [("mean_gain_absolute", "alert", 1)]


def test_without_a_loss_the_detectors_own_rule_stands():
    sig = GradientSignals(DetectorConfig(mean_gain_absolute_threshold=2.0), num_layers=4)
    (e,) = [e for e in sig.update(1, mean_gain=3.0, gains={"0": 3.0, "1": 3.0}) if e.kind == "mean_gain_absolute"]
    assert e.severity == "alert"


def test_the_loss_trend_survives_a_snapshot():
    sig = GradientSignals(DetectorConfig(mean_gain_absolute_threshold=2.0), num_layers=4)
    for s in range(1, 50):
        sig.observe_loss(s, 2.6)
    back = GradientSignals(DetectorConfig(mean_gain_absolute_threshold=2.0), num_layers=4)
    back.load_state_dict(sig.state_dict())
    assert back.loss_trend.corroborates(49) and back.loss_trend.state_dict() == sig.loss_trend.state_dict()


def test_a_block_gain_past_50_before_the_loss_shows_a_trend_is_an_alert():
    # an initialisation 50x too large: block 0's gain 171 at step 1, inner mean 2.3 (detection run init-too-large-s23)
    sig = GradientSignals(DetectorConfig(), num_layers=4)
    sig.observe_loss(1, 11.3)
    gains = {"0": 171.0, "1": 2.3, "2": 2.3, "3": 2.3}
    (e,) = [e for e in sig.update(1, mean_gain=2.3, gains=gains, max_gain=171.0) if e.kind == "mean_gain_absolute"]
    assert e.severity == "alert"
    late = GradientSignals(DetectorConfig(), num_layers=4)  # the same gains once the loss has fallen for 40 steps
    for s in range(1, 41):
        late.observe_loss(s, _falling(s))
    (e,) = [e for e in late.update(40, mean_gain=2.3, gains=gains, max_gain=171.0) if e.kind == "mean_gain_absolute"]
    assert e.severity == "warning"
