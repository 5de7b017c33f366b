"""The results table: per column, recall / median lead / false positives on one half."""
from __future__ import annotations

from pathlib import Path

from scenarios import RunSpec
from scoring import (COLUMNS, GROUPS, Run, detection_step, failure_step, first_event, load_run,
                     replay_suite, score)

__all__ = ["build_report", "load_runs"]

_LIVE = next(iter(COLUMNS))


def load_runs(root: Path, specs: list[RunSpec], split: str) -> list[Run]:
    return [load_run(root / s.name) for s in specs if (root / s.name / "spec.json").exists()
            and split in ("all", s.split)]


def build_report(root: Path, specs: list[RunSpec], split: str) -> str:
    runs = load_runs(root, specs, split)
    fails = {r.name: failure_step(r) for r in runs}
    firsts = {name: {r.name: detection_step(fn(r), r.mode) for r in runs} for name, fn in COLUMNS.items()}
    n_ok = sum(r.healthy for r in runs)
    lines = [f"### Detection benchmark: {split} half ({n_ok} healthy runs, {len(runs) - n_ok} with a fault; "
             f"{sum(f is not None for f, _ in fails.values())} fail by the rule)", "",
             "| detector | recall (flagged at or before the failure) | median lead (steps) | false positives |",
             "|---|---|---|---|"]
    for name, detected in firsts.items():
        sc = score(runs, detected, fails)
        lead = sc.median_lead
        lines.append(f"| {name} | {_pct(sc.caught, sc.failures)} | {'-' if lead is None else f'{lead:.0f}'} | "
                     f"{_pct(sc.fp, sc.healthy)} |")
    lines += ["", "| run | task | fault | failure step (rule) | first flag, live | lead "
              "| flagged by (replay); healthy: warnings |",
              "|---|---|---|---|---|---|---|"]
    for r in runs:
        f, why = fails[r.name]
        at = firsts[_LIVE][r.name]
        events = replay_suite(r)
        by = [f"{g.split(' (')[0]} {s}" for g, kinds in GROUPS.items()
              if (s := detection_step(events, r.mode, kinds)) is not None]
        if r.healthy:  # not counted as false positives, but a user sees them
            first_warning: dict[str, int] = {}
            for e in sorted((e for e in r.live if e.severity == "warning" and e.step is not None),
                            key=lambda e: e.step):
                first_warning.setdefault(e.kind, e.step)
            by = [f"warning `{k}` {s}" for k, s in first_warning.items()]
        if r.mode == "frozen_layer":
            fz = first_event(events, "frozen_parameters")
            by.append(f"`frozen_parameters` {fz}" if fz is not None else "no `frozen_parameters`")
        lead = "-" if f is None or at is None or at > f else str(f - at)
        failure = f"{f} ({why})" if f is not None else ("-" if r.healthy else "no failure by the rule")
        lines.append(f"| {r.name} | {r.info['spec'].get('task', 'lm')} | {r.mode} | {failure} | {_s(at)} | {lead} | "
                     f"{', '.join(by) or '-'} |")
    return "\n".join(lines)


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "-"


def _s(x: int | None) -> str:
    return "-" if x is None else str(x)
