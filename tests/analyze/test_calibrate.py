"""`trainvitals calibrate`: thresholds from known-good runs, printed as TOML for --config."""
import argparse
import math
import random
import tomllib

import pytest

from trainvitals.analyze.calibrate import add_calibrate_parser, calibrate, quiet_threshold
from trainvitals.analyze.readers import read_runs
from trainvitals.config import config_from_dict, TrainerConfig
from trainvitals.signals.drift import MeanGainDriftDetector


def _write_csv(path, gains):
    lines = ["step,gradient_monitor/mean_gain"] + [f"{10 * i + 1},{g}" for i, g in enumerate(gains)]
    path.write_text("\n".join(lines) + "\n")


def _runs(tmp_path, n=6, level=1.6, noise=0.05, peak=None):
    paths = []
    for k in range(n):
        rnd = random.Random(k)
        gains = [level + rnd.uniform(-noise, noise) for _ in range(200)]
        if peak is not None and k == 0:
            gains[150] = peak
        paths.append(tmp_path / f"run{k}.csv")
        _write_csv(paths[-1], gains)
    return [str(p) for p in paths]


def _read(paths):
    return {p: run for p in paths for run in read_runs(p).values()}


def _cli(argv):
    p = argparse.ArgumentParser()
    add_calibrate_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["calibrate", *argv])
    return args.func(args)


def _alerts(gains, **kw):
    det = MeanGainDriftDetector(**kw)
    return [e for i, g in enumerate(gains) for e in det.update(g, i) if e.severity == "alert"]


def test_prints_toml_that_config_accepts_and_that_keeps_the_runs_quiet(tmp_path, capsys):
    paths = _runs(tmp_path)
    assert _cli(paths) == 0
    text = capsys.readouterr().out
    values = tomllib.loads(text)
    cfg = config_from_dict(TrainerConfig, values, "calibrate output")
    # the default 1.3 alerts on every one of these runs (gain ~1.6); the proposal on none
    for run in _read(paths).values():
        gains = [v for _, v in run.series["gradient_monitor/mean_gain"]]
        assert _alerts(gains, absolute_threshold=1.3)
        assert not _alerts(gains, drift_threshold=cfg.mean_gain_drift_threshold,
                           absolute_threshold=cfg.mean_gain_absolute_threshold,
                           window=cfg.mean_gain_drift_window)
    assert 1.65 < cfg.mean_gain_absolute_threshold < 1.8


def test_target_fpr_lets_one_outlier_run_alert_when_there_are_enough_runs(tmp_path):
    runs = _read(_runs(tmp_path, n=20, peak=9.0))
    strict = {p.field: p.value for p in calibrate(runs, target_fpr=0.0)}
    loose = {p.field: p.value for p in calibrate(runs, target_fpr=0.05)}
    assert strict["mean_gain_absolute_threshold"] > 9.0  # quiet on the outlier too
    assert loose["mean_gain_absolute_threshold"] < 2.0  # 1 of 20 runs may alert


def test_too_few_runs_for_the_rate_is_said_in_the_output(tmp_path, capsys):
    _cli([*_runs(tmp_path, n=3), "--target-fpr", "0.05"])
    assert "3 runs cannot resolve a 5% rate (need 20+)" in capsys.readouterr().out


def test_logs_without_gains_are_refused_with_the_reason(tmp_path):
    p = tmp_path / "loss.csv"
    p.write_text("step,train/step_loss\n1,2.0\n2,1.9\n")
    with pytest.raises(Exception, match="gradient_monitor/mean_gain"):
        calibrate(read_runs(str(p)))


def test_quiet_threshold_finds_the_lowest_quiet_setting():
    assert math.isclose(quiet_threshold(lambda t: t < 2.5, 1.0, 100.0), 2.5, rel_tol=2e-3)
    assert quiet_threshold(lambda t: True, 1.0, 100.0) == 100.0
    assert quiet_threshold(lambda t: False, 1.0, 100.0) == 1.0


def test_max_gain_jump_factor_is_proposed_from_runs_whose_block_gain_jumps(tmp_path, capsys):
    # a model whose largest block gain doubles-and-a-half then 15x in one check while
    # healthy: the default factor 10 alarms on it; the proposed factor keeps it quiet
    from trainvitals.signals.gradient_signals import max_gain_jump_detector
    paths = []
    for k in range(3):
        rnd = random.Random(k)
        rows = [(10 * i + 1, 1.5 + rnd.uniform(-0.05, 0.05), 3.0 + 0.01 * i) for i in range(60)]
        rows[30] = (rows[30][0], rows[30][1], 45.0)  # a 15x leap of the largest block gain
        path = tmp_path / f"run{k}.csv"
        path.write_text("step,gradient_monitor/mean_gain,gradient_monitor/max_gain\n"
                        + "".join(f"{s},{m},{x}\n" for s, m, x in rows))
        paths.append(str(path))
    assert _cli(paths) == 0
    cfg = config_from_dict(TrainerConfig, tomllib.loads(capsys.readouterr().out), "calibrate output")

    def alarms(factor):
        det = max_gain_jump_detector(factor)
        return any(e.severity == "alert" for s, _, x in rows for e in det.update(x, s))
    assert alarms(TrainerConfig().max_gain_jump_factor)
    assert not alarms(cfg.max_gain_jump_factor)
    assert 15 < cfg.max_gain_jump_factor < 18  # ~15x the median, plus the 10% margin
