"""`trainvitals analyze PATH [--json]`: read logs, replay the detectors, print findings."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from typing import Any

from trainvitals.analyze.readers import read_runs
from trainvitals.analyze.replay import AnalyzeConfig, Analysis, replay
from trainvitals.analyze.roles import ROLES, apply_roles, parse_tags
from trainvitals.events import ALERT, WARNING
from trainvitals.sinks.console import format_event

__all__ = ["add_analyze_parsers", "analyze", "to_json"]


def add_analyze_parsers(sub: Any) -> None:
    from trainvitals.cli_config import add_config_flags
    p = sub.add_parser("analyze", help="replay the detectors over the logs of a finished or crashed run")
    p.add_argument("path", help="a TensorBoard log directory (or a directory of runs), a .jsonl or a .csv")
    p.add_argument("--json", action="store_true", help='print {"events": [...], "series": {...}}')
    p.add_argument("--tag", action="append", default=[], metavar="ROLE=TAG",
                   help="read TAG as ROLE, for logs of other writers (repeatable; HF Trainer logs are "
                        f"known); roles: {', '.join(ROLES)}")
    add_config_flags(p, AnalyzeConfig)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from trainvitals.cli_config import build_configs
    given = {k: v for k, v in vars(args).items() if k not in ("command", "path", "json", "func", "tag")}
    (cfg,) = build_configs(given, AnalyzeConfig)
    return analyze(args.path, cfg, as_json=args.json, tags=args.tag)


def analyze(path: str, cfg: AnalyzeConfig, as_json: bool = False, out=None,
            tags: list[str] | None = None) -> int:
    """`tags`: ["ROLE=TAG", ...], other writers' names for the series (`analyze.roles`)."""
    out = out or sys.stdout
    roles = parse_tags(tags)
    runs = {name: apply_roles(run, roles) for name, run in read_runs(path).items()}
    results = {name: replay(run, cfg) for name, run in runs.items()}
    for a in results.values():
        for line in a.problems:
            print(f"warning: {line}", file=sys.stderr)
    if as_json:
        payload = to_json(next(iter(results.values()))) if len(results) == 1 else {
            name: to_json(a) for name, a in results.items()}
        print(json.dumps(payload), file=out)
    elif len(results) == 1:
        print(_one_run(next(iter(results.values()))), file=out)
    else:
        print(_table(results), file=out)
    nothing = all(run.empty for run in runs.values())
    return 1 if nothing else 0


def to_json(a: Analysis) -> dict[str, Any]:
    return {"events": [e.to_dict() for e in a.events],
            "series": {tag: [[s, v if math.isfinite(v) else str(v)] for s, v in pts]
                       for tag, pts in a.series.items()}}


def _one_run(a: Analysis) -> str:
    counts = Counter(e.severity for e in a.events)
    lines = [f"run {a.name}: {a.steps} steps, {counts[ALERT]} alert(s), {counts[WARNING]} warning(s)"]
    # post-epoch findings are printed inside their report blocks
    lines += [format_event(e) for e in a.events if e.source != "evaluation" or not a.reports]
    lines += a.reports
    if not a.events and not a.reports:
        lines.append("  no findings")
    return "\n".join(lines)


def _table(results: dict[str, Analysis]) -> str:
    rows = [("run", "steps", "final loss", "final val", "events (kind@first step)")]
    for name, a in results.items():
        first: dict[str, Any] = {}
        for e in a.events:
            if e.severity != "info":
                first.setdefault(e.kind, e.step if e.step is not None else f"epoch {e.epoch}")
        loss = a.final.get("train/step_loss", a.final.get("train/epoch_loss"))
        val = a.final.get("val/loss")
        rows.append((name, str(a.steps), "-" if loss is None else f"{loss:.4f}", "-" if val is None else f"{val:.4f}",
                     ", ".join(f"{k}@{v}" for k, v in first.items()) or "none"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
