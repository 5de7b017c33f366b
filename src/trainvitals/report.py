"""The run report: `report.png` (loss, gain, grad norm, LR, with event markers) and `report.md`.

Built from the run directory's logs alone, so it works on a finished, stopped or
crashed run: `trainvitals report RUNDIR`. The trainer writes it when training ends.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from trainvitals.analyze.readers import read_run
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.events import ALERT, WARNING, Event
from trainvitals.signals.drift import auto_absolute_threshold

__all__ = ["write_report", "add_report_parser"]

_COLOR = {ALERT: "tab:red", WARNING: "tab:orange"}


def write_report(rundir: str | Path) -> Path:
    """Write report.png and report.md into `rundir`; returns the markdown path."""
    rundir = Path(rundir)
    run = read_run(rundir)
    analysis = replay(run, AnalyzeConfig())
    events = [Event.from_dict(d) for d in run.events] if run.events else analysis.events
    series = {**run.series, **{k: v for k, v in analysis.series.items() if k not in run.series}}
    png = rundir / "report.png"
    _plot(series, events, png, run.name)
    md = rundir / "report.md"
    md.write_text(_markdown(run.name, series, events, analysis.reports, png.name), encoding="utf-8")
    return md


def _plot(series: dict[str, list[tuple[int, float]]], events: list[Event], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    ax = axes[0]
    _line(ax, series, "train/step_loss", "step loss", color="tab:blue", alpha=0.35, lw=0.8)
    _line(ax, series, "train/step_loss_ema", "EMA", color="tab:blue", lw=2)
    _line(ax, series, "val/loss", "val loss (epoch end)", color="tab:green", marker="o", lw=1.5)
    if series.get("data/unigram_entropy"):
        ax.axhline(series["data/unigram_entropy"][-1][1], ls=":", color="gray", label="unigram entropy")
    ax.set_ylabel("loss (nats)")
    ax = axes[1]
    _line(ax, series, "gradient_monitor/mean_gain", "mean gain (blocks past the first)", color="tab:purple",
          alpha=0.5, marker=".")
    _line(ax, series, "gradient_monitor/mean_gain_ma", "moving average", color="tab:purple", lw=2)
    _line(ax, series, "gradient_monitor/max_gain", "max block gain", color="tab:brown", alpha=0.5, lw=1)
    blocks = sum(t.startswith("gradient_monitor/gain/") for t in series)
    if blocks:
        ax.axhline(auto_absolute_threshold(blocks), ls="--", color="tab:red", lw=1, label="threshold (auto)")
    ax.set_ylabel("gradient gain")
    ax.set_yscale("log")
    ax = axes[2]
    _line(ax, series, "gradient_monitor/grad_norm", "grad norm (before clipping)", color="tab:cyan", marker=".")
    ax.set_yscale("log")
    ax.set_ylabel("grad norm")
    ax = axes[3]
    _line(ax, series, "train/lr", "learning rate", color="black")
    ax.set_ylabel("learning rate")
    ax.set_xlabel("optimizer step")
    for a in axes:
        for e in events:
            if e.severity in _COLOR and e.step is not None:
                a.axvline(e.step, color=_COLOR[e.severity], alpha=0.6, lw=1)
        if a.get_yscale() == "log":  # plain numbers, not 1.2x10^0
            a.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            a.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            a.yaxis.set_minor_formatter(NullFormatter())  # minor labels crowd each other
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="upper right", fontsize=8)
        a.grid(alpha=0.3)
    kinds = Counter(e.kind for e in events if e.severity in _COLOR)
    subtitle = ", ".join(f"{k} ×{n}" for k, n in kinds.items()) or "no alerts or warnings"
    fig.suptitle(f"{title}\nevents (vertical lines: red alert, orange warning): {subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _line(ax: Any, series: dict, tag: str, label: str, **style: Any) -> None:
    points = [(s, v) for s, v in series.get(tag, []) if math.isfinite(v)]
    if points:
        xs, ys = zip(*points)
        ax.plot(xs, ys, label=label, **style)


def _markdown(name: str, series: dict, events: list[Event], reports: list[str], png: str) -> str:
    def last(tag: str) -> str:
        pts = series.get(tag)
        return f"{pts[-1][1]:.4f}" if pts else "-"

    steps = series.get("train/step_loss", [(0, 0)])[-1][0]
    lines = [f"# Run report: {name}", "", f"![training curves]({png})", "",
             f"- optimizer steps: {steps}",
             f"- final step loss EMA: {last('train/step_loss_ema')}, final val loss: {last('val/loss')}",
             f"- final mean gain: {last('gradient_monitor/mean_gain')}", ""]
    shown = [e for e in events if e.severity in (ALERT, WARNING)]
    lines += ["## Events", ""]
    if not shown:
        lines += ["No alerts or warnings.", ""]
    else:
        lines += ["| severity | kind | where | message |", "|---|---|---|---|"]
        lines += [f"| {e.severity} | `{e.kind}` | {e.where()} | {e.message.replace('|', '/')} |" for e in shown]
        lines += ["", "## Advice", ""]
        seen: set[str] = set()
        for e in shown:
            for s in e.suggestions:
                if s not in seen:
                    seen.add(s)
                    lines.append(f"- {s} (from `{e.kind}`, {e.where()})")
        lines.append("")
    acts = [e for e in events if e.kind == "action"]  # what auto_adjust or a policy did
    if acts:
        lines += ["## Actions taken", ""] + [f"- {e.where()}: {e.message}" for e in acts] + [""]
    if reports:
        lines += ["## Last post-epoch evaluation", "", "```", reports[-1], "```", ""]
    return "\n".join(lines)


def add_report_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="write report.png and report.md for a run directory")
    p.add_argument("rundir", help="the --logdir of a run")
    p.set_defaults(func=_report_command)


def _report_command(args: Any) -> int:
    from trainvitals.errors import ConfigError
    rundir = Path(args.rundir)
    if not rundir.is_dir():
        what = "a file" if rundir.exists() else "no such directory"
        raise ConfigError(f"rundir={args.rundir!r}: {what}; give the run directory (the --logdir of a run)")
    try:
        print(f"wrote {write_report(rundir)} and report.png")
    except OSError as e:
        raise ConfigError(f"rundir={args.rundir!r}: cannot write the report ({e.strerror or e})") from None
    return 0
