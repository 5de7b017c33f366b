"""`trainvitals calibrate LOGDIR...`: gain thresholds from a user's own known-good runs.

For each run and each threshold, the replay finds the lowest setting at which that run
raises no alert, using the very detectors the trainer runs (`MeanGainDriftDetector` on
the mean gain, the `max_gain_jump` test on the largest block gain).
The proposal is the setting that keeps all but `target_fpr` of the runs quiet, with a
margin for runs not seen yet, printed as TOML for `--config`. With n runs the false
positive rate can only be resolved to 1/n: below 1/target_fpr runs the proposal is the
quietest setting over all of them, and the output says so.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

from trainvitals.analyze.readers import RunLog, read_runs
from trainvitals.errors import ConfigError, check_range
from trainvitals.events import ALERT
from trainvitals.signals.drift import MeanGainDriftDetector
from trainvitals.signals.gradient_signals import max_gain_jump_detector

__all__ = ["add_calibrate_parser", "calibrate", "Proposal", "quiet_threshold"]

MARGIN = 1.1  # headroom over the quietest setting seen, for runs not seen yet
_TAG = "gradient_monitor/mean_gain"
_MAX_TAG = "gradient_monitor/max_gain"
_OFF = 1e9  # a drift threshold no run reaches (inf would switch the whole detector off)


@dataclass
class Proposal:
    field: str  # a TrainerConfig field name
    value: float
    per_run: dict[str, float]  # run -> lowest quiet setting
    note: str


def quiet_threshold(alerts: Callable[[float], bool], lo: float, hi: float, rel_tol: float = 1e-3) -> float:
    """The lowest setting in [lo, hi] at which `alerts(setting)` is False (bisection,
    assuming a higher setting never alerts more). `hi` if even that alerts."""
    if alerts(hi):
        return hi
    if not alerts(lo):
        return lo
    while hi / lo > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if alerts(mid) else (lo, mid)
    return hi


def _alerts(detector: Any, gains: list[tuple[int, float]], kind: str) -> bool:
    """Whether `detector`, fed the series, raises a `kind` alert."""
    return any(e.severity == ALERT and e.kind == kind for step, g in gains for e in detector.update(g, step))


def _quantile_high(values: list[float], target_fpr: float) -> tuple[float, bool]:
    """A setting that at most `target_fpr` of the runs exceed; (value, resolved?)."""
    xs = sorted(values)
    n = len(xs)
    allowed = math.floor(target_fpr * n)  # runs that may alert
    return xs[n - 1 - allowed], allowed > 0


def _finite_series(runs: dict[str, RunLog], tag: str) -> dict[str, list[tuple[int, float]]]:
    series = {name: [(s, v) for s, v in run.series.get(tag, []) if math.isfinite(v)] for name, run in runs.items()}
    return {k: v for k, v in series.items() if v}


def calibrate(runs: dict[str, RunLog], target_fpr: float = 0.05, window: int = 5) -> list[Proposal]:
    check_range("target_fpr", target_fpr, 0, 1, hi_open=True)
    series = _finite_series(runs, _TAG)
    if not series:
        raise ConfigError(f"LOGDIR: no run holds {_TAG!r}; calibrate needs logs of runs trained with "
                          "the gradient monitor on")
    absolute = {name: quiet_threshold(
        lambda t, g=g: _alerts(MeanGainDriftDetector(_OFF, t, window), g, "mean_gain_absolute"), 1.0 + 1e-6, 1e6)
        for name, g in series.items()}
    drift = {name: quiet_threshold(
        lambda t, g=g: _alerts(MeanGainDriftDetector(t, math.inf, window), g, "mean_gain_drift"), 1e-3, 1e3)
        for name, g in series.items()}
    # logs from before the max_gain tag existed simply get no proposal for it
    jump = {name: quiet_threshold(lambda f, g=g: _alerts(max_gain_jump_detector(f), g, "max_gain_jump"),
                                  1.0 + 1e-6, 1e6)
            for name, g in _finite_series(runs, _MAX_TAG).items()}
    out = []
    for field, per_run, floor in (("mean_gain_absolute_threshold", absolute, 1.0),
                                  ("mean_gain_drift_threshold", drift, 0.0),
                                  ("max_gain_jump_factor", jump, 1.0)):
        if not per_run:
            continue
        value, resolved = _quantile_high(list(per_run.values()), target_fpr)
        value = floor + (value - floor) * MARGIN
        note = (f"lowest quiet setting per run: {min(per_run.values()):.3g} to {max(per_run.values()):.3g}; "
                + (f"keeps {1 - target_fpr:.0%} of {len(per_run)} runs quiet, plus {MARGIN - 1:.0%} margin"
                   if resolved else f"{len(per_run)} runs cannot resolve a {target_fpr:.0%} rate "
                   f"(need {math.ceil(1 / target_fpr)}+): quiet on all of them, plus {MARGIN - 1:.0%} margin"
                   if target_fpr > 0 else f"quiet on all {len(per_run)} runs, plus {MARGIN - 1:.0%} margin"))
        out.append(Proposal(field, value, per_run, note))
    return out


def to_toml(proposals: list[Proposal], n_runs: int, target_fpr: float, window: int) -> str:
    lines = [f"# trainvitals calibrate: {n_runs} known-good run(s), target false-positive rate "
             f"{target_fpr:.0%}, mean_gain_drift_window = {window}"]
    for p in proposals:
        lines.append(f"# {p.field}: {p.note}")
        lines.append(f"{p.field} = {_round_up(p.value)}")
    lines.append(f"mean_gain_drift_window = {window}")
    return "\n".join(lines)


def _round_up(x: float) -> float:
    """Three significant digits, rounded up so the proposal stays on the quiet side."""
    if x <= 0:
        return 0.0
    q = 10 ** (math.floor(math.log10(x)) - 2)
    return round(math.ceil(x / q - 1e-9) * q, 10)


def add_calibrate_parser(sub: Any) -> None:
    """Register `calibrate` on an argparse subparsers object."""
    p = sub.add_parser("calibrate", help="propose gain thresholds from known-good runs, as TOML for --config")
    p.add_argument("logdirs", nargs="+", metavar="LOGDIR",
                   help="TensorBoard log directories (or directories of runs), .jsonl or .csv logs")
    p.add_argument("--target-fpr", type=float, default=0.05,
                   help="share of known-good runs allowed to alert (default: %(default)s)")
    p.add_argument("--mean-gain-drift-window", type=int, default=5,
                   help="the drift window the thresholds are for (default: %(default)s)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    runs: dict[str, RunLog] = {}
    for path in args.logdirs:
        for name, run in read_runs(path).items():
            runs[name if name not in runs else f"{path}:{name}"] = run
            for line in run.problems:
                print(f"warning: {line}", file=sys.stderr)
    proposals = calibrate(runs, args.target_fpr, args.mean_gain_drift_window)
    print(to_toml(proposals, len(runs), args.target_fpr, args.mean_gain_drift_window))
    return 0
