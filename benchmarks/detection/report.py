"""The results table: per detector, recall / median lead / false positives on one half."""
from __future__ import annotations

from pathlib import Path

from scenarios import RunSpec
from scoring import DETECTORS, Run, _frozen_events, failure_step, first_alert, first_event, load_run, median_or_none
from settings import SETTINGS

__all__ = ["build_report", "score"]

_OWN_ROWS = {"frozen_layer": "frozen_parameters", "overfitting": "overfitting"}


def score(runs: list[Run], p: dict) -> dict[str, dict]:
    """detector -> {caught, failures, leads, fp, healthy, per_run}; plus the trainer's union."""
    out: dict[str, dict] = {}
    firsts: dict[str, dict[str, int | None]] = {}
    for name, (fn, _) in DETECTORS.items():
        firsts[name] = {r.name: first_alert(fn(r, p)) for r in runs}
    firsts["union of the replayed columns marked own"] = {
        r.name: min((firsts[n][r.name] for n, (_, own) in DETECTORS.items()
                     if own and firsts[n][r.name] is not None), default=None) for r in runs}
    fails = {r.name: failure_step(r) for r in runs}
    for name, first in firsts.items():
        leads, caught, n_fail, fp, n_ok = [], 0, 0, 0, 0
        for r in runs:
            a = first[r.name]
            if r.healthy:
                n_ok += 1
                fp += a is not None
                continue
            f, _ = fails[r.name]
            if f is None:
                continue
            n_fail += 1
            if a is not None and a <= f:
                caught += 1
                leads.append(f - a)
        out[name] = {"caught": caught, "failures": n_fail, "leads": leads, "fp": fp, "healthy": n_ok,
                     "first": first}
    out["_fails"] = fails  # type: ignore[assignment]
    return out


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "-"


def build_report(root: Path, specs: list[RunSpec], split: str, p: dict | None = None) -> str:
    p = SETTINGS if p is None else p
    runs = [load_run(root / s.name) for s in specs if (root / s.name / "spec.json").exists()
            and (split == "all" or s.split == split)]
    res = score(runs, p)
    fails = res.pop("_fails")
    lines = [f"### Detection benchmark: {split} half ({sum(r.healthy for r in runs)} healthy runs, "
             f"{sum(not r.healthy for r in runs)} failing), gains monitored every {p.get('interval', 1)} step(s)", "",
             "| detector | recall (alert at or before the failure) | median lead (steps) | false positives |",
             "|---|---|---|---|"]
    for name, r in res.items():
        lead = median_or_none(r["leads"])
        lines.append(f"| {name} | {_pct(r['caught'], r['failures'])} | "
                     f"{'-' if lead is None else f'{lead:.0f}'} | {_pct(r['fp'], r['healthy'])} |")
    lines += ["", "| run | failure mode | failure step (rule) | first live alert (defaults) | caught by |",
              "|---|---|---|---|---|"]
    overall = res["TRAINVITALS DEFAULTS (live, all detectors)"]["first"]
    for r in runs:
        f, why = fails[r.name]
        kind = _OWN_ROWS.get(r.mode)
        if kind:
            events = _frozen_events(r, p) if kind == "frozen_parameters" else DETECTORS["post-epoch evaluation"][0](r, p)
            at = first_event(events, kind)
            shown = f"no loss failure; `{kind}` at step {at}" if at is not None else f"no loss failure; no `{kind}` event"
            lines.append(f"| {r.name} | {r.mode} | - | {_s(overall[r.name])} | {shown} |")
            continue
        by = [n for n, v in res.items() if v["first"][r.name] is not None
              and (r.healthy or (f is not None and v["first"][r.name] <= f)) and not n.startswith("union")]
        lines.append(f"| {r.name} | {r.mode} | {_s(f)}{f' ({why})' if why else ''} | {_s(overall[r.name])} | "
                     f"{', '.join(by) or '-'} |")
    return "\n".join(lines)


def _s(x: int | None) -> str:
    return "-" if x is None else str(x)
