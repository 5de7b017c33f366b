"""`trainvitals advise RUN`: the one change a finished or crashed run should make next.

Reads the run as `analyze` does and replays the same detectors, then `recommend`
picks one change. Exit codes: 0 nothing to change, 3 a change is recommended,
4 a problem was found that no setting fixes (a check to make), 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from trainvitals.advise.hosts import HOSTS, render_change
from trainvitals.advise.recommend import Recommendation, recommend
from trainvitals.analyze.readers import read_runs
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.analyze.roles import ROLES, apply_roles, parse_tags
from trainvitals.errors import ConfigError
from trainvitals.events import ALERT

__all__ = ["add_advise_parser", "advise", "NOTHING", "CHANGE", "CHECK"]

NOTHING, CHANGE, CHECK = 0, 3, 4
_HOSTS = ("auto", *HOSTS, "log")


def add_advise_parser(sub: Any) -> None:
    p = sub.add_parser("advise", help="the one change a finished or crashed run should make next "
                                      "(exit 0: none, 3: a change, 4: a check to make)")
    p.add_argument("path", help="a run: our run directory, an HF output directory, a TensorBoard log, .jsonl or .csv")
    p.add_argument("--json", action="store_true", help='print {"change": {...}, "sentence", "reason", "evidence"}')
    p.add_argument("--out", metavar="FILE.toml", help="our runs: write the next run's config (the run's settings "
                                                      "with the change applied) for train-* --config")
    p.add_argument("--host", choices=_HOSTS, default="auto",
                   help="whose setting names to print (auto: from the run's settings; log: neutral names)")
    p.add_argument("--tag", action="append", default=[], metavar="ROLE=TAG",
                   help=f"read TAG as ROLE, as analyze does; roles: {', '.join(ROLES)}")
    from trainvitals.cli_config import add_config_flags
    add_config_flags(p, AnalyzeConfig)  # analyze's settings: --baseline-loss for a log that lacks it, ...
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from trainvitals.cli_config import build_configs
    given = {k: v for k, v in vars(args).items() if k not in ("command", "path", "json", "out", "host", "tag", "func")}
    (cfg,) = build_configs(given, AnalyzeConfig)
    return advise(args.path, as_json=args.json, out_path=args.out, host=args.host, tags=args.tag, cfg=cfg)


def advise(path: str, *, as_json: bool = False, out_path: str | None = None, host: str = "auto",
           tags: list[str] | None = None, out=None, cfg: AnalyzeConfig | None = None) -> int:
    """Print the recommendation for the run at `path`; the exit code (module doc). `cfg`:
    the detectors' settings, as `analyze` takes them (default: `AnalyzeConfig()`)."""
    out = out or sys.stdout
    runs = read_runs(path)
    if len(runs) != 1:
        raise ConfigError(f"{path}: holds {len(runs)} runs ({', '.join(list(runs)[:5])}); advise reads one: "
                          f"give its directory")
    run = apply_roles(next(iter(runs.values())), parse_tags(tags))
    if run.empty:
        raise ConfigError(f"{path}: no logged values to advise on")
    analysis = replay(run, cfg or AnalyzeConfig())
    host = _host(run.settings) if host == "auto" else host
    settable = None
    if host == "trainvitals":
        from trainvitals.advise.next_config import settable as task_fields
        settable = task_fields(run.settings.get("task"))
    rec = recommend(analysis, run, host, settable)
    alerts = [e for e in analysis.events if e.severity == ALERT]
    code = CHANGE if rec.change else (CHECK if rec.check or (alerts and not rec.notes) else NOTHING)
    if out_path:
        if host != "trainvitals":
            raise ConfigError(f"out={out_path!r}: --out writes a train-lm/train-translation config; this run's host "
                              f"is {host}: use the settings printed")
        from trainvitals.advise.next_config import next_config, write_toml
        write_toml(out_path, next_config(run.settings, rec.change),
                   f"trainvitals advise {path}: {rec.sentence or 'no change'}\n"
                   f"next run: trainvitals train-{_cmd(run.settings)} --config {out_path} --logdir NEW")
    if as_json:
        payload = {**rec.to_dict(), "host": host, "host_settings": render_change(rec.change, host)}
        print(json.dumps(payload), file=out)
    else:
        print(_text(path, rec, host, alerts, out_path, run.settings), file=out)
    return code


def _host(settings: dict[str, Any]) -> str:
    if settings.get("task") in ("lm", "translation"):
        return "trainvitals"
    return settings.get("host") if settings.get("host") in HOSTS else "log"


def _cmd(settings: dict[str, Any]) -> str:
    return "lm" if settings.get("task") == "lm" else "translation"


def _text(path: str, rec: Recommendation, host: str, alerts: list, out_path: str | None,
          settings: dict[str, Any]) -> str:
    if rec.check:
        return "\n".join([f"advise {path}: {rec.sentence}", f"  why: {rec.reason}"]
                          + [f"    {ev['severity']} {ev['kind']} (step {ev['step']}): {ev['message'][:140]}"
                             for ev in rec.evidence] + [f"  note: {n}" for n in rec.notes])
    if not rec.change:
        head = (f"advise {path}: nothing to change: {len(alerts)} alert(s), none that a setting is shown to fix"
                if alerts else f"advise {path}: nothing to change, the run looks healthy")
        return "\n".join([head] + [f"  note: {n}" for n in rec.notes])
    lines = [f"advise {path}: {rec.sentence}", f"  why: {rec.reason}", "  evidence:"]
    for ev in rec.evidence:
        where = ", ".join(f"{k} {ev[k]}" for k in ("epoch", "step") if ev.get(k) is not None)
        values = ", ".join(f"{k}={_short(v)}" for k, v in list(ev["values"].items())[:5])
        lines.append(f"    {ev['severity']} {ev['kind']} ({where}): {ev['message'][:140]}" + (f" [{values}]" if values else ""))
    shown = render_change(rec.change, host)
    if host == "trainvitals":
        lines.append(f"  next run: trainvitals train-{_cmd(settings)} --config "
                     f"{out_path or 'NEXT.toml (write it with --out NEXT.toml)'} --logdir NEW")
        lines.append(f"  setting: {'; '.join(shown)}")
    elif host == "hf":
        lines.append(f"  next run: your HF script with {' '.join(shown)}")
    else:
        lines.append(f"  setting ({host}): {'; '.join(shown)}")
    lines += [f"  note: {n}" for n in rec.notes]
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
