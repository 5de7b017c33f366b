"""`trainvitals analyze PATH [--json]`: read logs, replay the detectors, print findings."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from typing import Any

import numpy as np

from trainvitals.analyze.points import as_arrays
from trainvitals.analyze.readers import event_file_bytes, read_runs
from trainvitals.analyze.replay import AnalyzeConfig, Analysis, replay, replay_size
from trainvitals.analyze.roles import ROLES, apply_roles, parse_tags
from trainvitals.events import ALERT, WARNING
from trainvitals.sinks.console import format_event

__all__ = ["add_analyze_parsers", "analyze", "write_json"]


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
            tags: list[str] | None = None, progress: bool | None = None) -> int:
    """`tags`: ["ROLE=TAG", ...], other writers' names for the series (`analyze.roles`).
    `progress`: show progress bars on stderr (reading, then replay) for an analyze that
    takes more than a couple of seconds; None: only when the output is a terminal and
    not `as_json`."""
    out = out or sys.stdout
    roles = parse_tags(tags)
    if progress is None:
        progress = not as_json and _is_terminal(out) and _is_terminal(sys.stderr)
    with _Bar(progress, "reading", event_file_bytes(path), "B") as bar:
        logs = read_runs(path, progress=bar.update)
    runs = {name: apply_roles(run, roles) for name, run in logs.items()}
    del logs
    with _Bar(progress, "replay", sum(map(replay_size, runs.values())) if progress else 0, "step") as bar:
        results = {name: replay(run, cfg, progress=bar.update) for name, run in runs.items()}
    for a in results.values():
        for line in a.problems:
            print(f"warning: {line}", file=sys.stderr)
    if as_json:
        write_json(results, out)
    elif len(results) == 1:
        print(_one_run(next(iter(results.values()))), file=out)
    else:
        print(_table(results), file=out)
    nothing = all(run.empty for run in runs.values())
    return 1 if nothing else 0


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_BAR_DELAY_S = 2.0  # an analyze quicker than this shows no bar


class _Bar:
    """A tqdm bar on stderr that appears only after `_BAR_DELAY_S`, or nothing."""

    def __init__(self, show: bool, what: str, total: int, unit: str) -> None:
        self.bar = None
        if show and total:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=what, unit=unit, unit_scale=True, delay=_BAR_DELAY_S, leave=False,
                            dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def write_json(results: dict[str, Analysis], out) -> None:
    """`--json`: one run's object, or an object of them keyed by run name; the text of
    `json.dumps`, written a block of points at a time (millions of points would take GBs
    as Python lists)."""
    if len(results) == 1:
        _write_analysis(next(iter(results.values())), out)
    else:
        out.write("{")
        for i, (name, a) in enumerate(results.items()):
            out.write(f"{', ' if i else ''}{json.dumps(name)}: ")
            _write_analysis(a, out)
        out.write("}")
    out.write("\n")


def _write_analysis(a: Analysis, out) -> None:
    out.write(f'{{"events": {json.dumps([e.to_dict() for e in a.events])}, "series": {{')
    for i, (tag, pts) in enumerate(a.series.items()):
        out.write(f"{', ' if i else ''}{json.dumps(tag)}: [")
        steps, values = as_arrays(pts)
        for lo in range(0, len(steps), _JSON_BLOCK):
            block = values[lo:lo + _JSON_BLOCK]
            s, v = steps[lo:lo + _JSON_BLOCK].tolist(), block.tolist()
            texts = map(float.__repr__, v) if np.isfinite(block).all() else map(_json_number, v)  # most blocks
            out.write((", " if lo else "") + ", ".join(map(_JSON_POINT.format, s, texts)))
        out.write("]")
    out.write("}}")


_JSON_BLOCK = 1 << 16
_JSON_POINT = "[{}, {}]"


def _json_number(v: float) -> str:
    return repr(v) if math.isfinite(v) else f'"{v}"'  # as json.dumps writes the float, or str(v)


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
