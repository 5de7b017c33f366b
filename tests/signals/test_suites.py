"""The composed detector suites (LossSignals, GradientSignals) take every threshold from
one `DetectorConfig`, and `analyze`'s replay passes the same config on (the benchmark's tuning)."""
from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.monitor.config import DetectorConfig
from trainvitals.signals.gradient_signals import GradientSignals
from trainvitals.signals.loss_signals import LossSignals


def _losses():
    # a slightly noisy flat loss, then one step at 2.5x it
    pts = [(s, 2.0 + 0.01 * (s % 3)) for s in range(1, 61)]
    return pts + [(61, 5.0)]


def _kinds(events):
    return {(e.kind, e.step) for e in events if e.severity == "alert"}


def test_loss_suite_spike_factor_reaches_the_detector():
    def run(**kw):
        sig, out = LossSignals(DetectorConfig(**kw)), []
        for step, loss in _losses():
            out += sig.update(loss, step)[1]
        return _kinds(out)
    assert ("loss_spike", 61) not in run()  # 2.5x is under the default factor 3
    assert ("loss_spike", 61) in run(spike_factor=2.0)


def _max_gains():
    return [(s, 3.0 + 0.05 * s) for s in range(1, 31, 3)] + [(31, 30.0)]  # then a 6.5x leap


def test_gradient_suite_max_gain_jump_factor_reaches_the_detector():
    def run(**kw):
        sig, out = GradientSignals(DetectorConfig(**kw), num_layers=4), []
        for step, g in _max_gains():
            out += sig.update(step, max_gain=g)
        return _kinds(out)
    assert ("max_gain_jump", 31) not in run()  # under the default factor 10
    assert ("max_gain_jump", 31) in run(max_gain_jump_factor=5.0)


def test_replay_takes_every_threshold_from_its_config():
    log = RunLog("r", {"train/step_loss": _losses(), "gradient_monitor/max_gain": _max_gains(),
                       "gradient_monitor/grad_norm": [(s, 1.0) for s, _ in _max_gains()]})
    default = _kinds(replay(log, AnalyzeConfig(num_layers=4)).events)
    tuned = _kinds(replay(log, AnalyzeConfig(num_layers=4, spike_factor=2.0, max_gain_jump_factor=5.0)).events)
    assert {("loss_spike", 61), ("max_gain_jump", 31)} <= tuned - default
