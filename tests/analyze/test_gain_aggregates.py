"""With per-block gains in a log, analyze computes every gain aggregate from them with
the live monitor's function: what the log's own `mean_gain` means does not matter."""
import math

from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.signals.gradient_signals import gain_aggregates


def _gains():
    # block 0 climbs smoothly as in a healthy run; blocks 1-3 sit near 1.2, then rise past "auto" (2.2 at 4 blocks)
    steps = range(1, 121, 3)
    out = {}
    for i, s in enumerate(steps):
        inner = 1.2 if s < 80 else 1.2 + 0.08 * (i - 26)
        out[s] = {"0": 3.0 + 0.5 * i, "1": inner, "2": inner * 1.01, "3": inner * 0.99}
    return out


def _log(mean_gain_of):
    g = _gains()
    series = {f"gradient_monitor/gain/{b}": [(s, v[b]) for s, v in g.items()] for b in "0123"}
    series["gradient_monitor/mean_gain"] = [(s, mean_gain_of(v)) for s, v in g.items()]
    series["gradient_monitor/grad_norm"] = [(s, 1.0) for s in g]
    return RunLog("r", series)


def test_a_log_with_the_seeds_mean_gain_gets_our_verdict():
    ours = replay(_log(lambda v: gain_aggregates(v)["mean_gain"]), AnalyzeConfig())
    seeds = replay(_log(lambda v: sum(v.values()) / len(v)), AnalyzeConfig())  # the seed's: every block
    kinds = [(e.kind, e.step, e.severity) for e in ours.events]
    assert any(k == "mean_gain_absolute" and sev == "alert" for k, _, sev in kinds)  # the inner rise is caught
    assert [(e.kind, e.step, e.severity) for e in seeds.events] == kinds
    assert seeds.series == ours.series


def test_gain_aggregates_skip_unmeasured_blocks_and_keep_an_overflow():
    agg = gain_aggregates({"0": 4.0, "1": math.nan, "2": 1.5, "3": 2.5})
    assert agg == {"mean_gain": 2.0, "mean_gain_all": 8.0 / 3, "max_gain": 4.0, "amplification": 15.0}
    assert gain_aggregates({"0": 2.0, "1": math.inf})["mean_gain"] == math.inf
    assert gain_aggregates({"0": math.nan})["mean_gain"] is None


def test_a_log_of_block_gains_alone_is_analyzed():
    from trainvitals.analyze.roles import apply_roles
    g = _gains()
    run = apply_roles(RunLog("r", {f"gradient_monitor/gain/{b}": [(s, v[b]) for s, v in g.items()] for b in "0123"}),
                      {})
    events = replay(run, AnalyzeConfig()).events
    assert any(e.kind == "mean_gain_absolute" and e.severity == "alert" for e in events)
