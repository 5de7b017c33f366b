"""The results tables: per column, recall / median lead / false positives, on one half of
our trainer's runs or on one other host's runs."""
from __future__ import annotations

from pathlib import Path
from statistics import median

from scenarios import RunSpec
from scoring import (COLUMNS, GROUPS, Run, detection_step, failure_step, first_event, load_own_log, load_run,
                     replay_suite, score)

__all__ = ["build_report", "build_summary", "build_creep_report", "load_runs", "HF_OWN"]

_LIVE = next(iter(COLUMNS))
_GAIN_ONLY = ("compare:", "baseline:")
HF_OWN = "hf-own-log"  # the HF runs as HF alone logged them (trainer_state.json)
_TITLES = {"trainer": "our Trainer", "hf": "HF transformers.Trainer + TrainvitalsCallback (GPT-2 from GPT2Config)",
           "lightning": "Lightning + TrainvitalsCallback (our byte GPT in a LightningModule)",
           "loop": "nanoGPT-style plain loop on trainvitals.Monitor (JSONL log)",
           "loop-gpt": "plain loop on trainvitals.Monitor, our byte GPT (JSONL log)",
           HF_OWN: "HF transformers.Trainer, its own log only (trainer_state.json: 10-step mean losses, "
                   "grad norm every 10th step, no gains)"}


def load_runs(root: Path, specs: list[RunSpec], split: str, host: str = "trainer") -> list[Run]:
    """The runs of `host` (our trainer's by default) in `split` ("all": both halves)
    whose logs exist; `HF_OWN`: the HF runs read from HF's own log."""
    want = "hf" if host == HF_OWN else host
    runs = [load_run(root / s.name) for s in specs if (root / s.name / "spec.json").exists()
            and split in ("all", s.split) and s.host == want]
    return [load_own_log(root / r.name, r) for r in runs] if host == HF_OWN else runs


def warned(events) -> dict[str, int]:
    """kind -> step of the first warning of that kind."""
    first: dict[str, int] = {}
    for e in sorted((e for e in events if e.severity == "warning" and e.step is not None), key=lambda e: e.step):
        first.setdefault(e.kind, e.step)
    return first


def build_report(root: Path, specs: list[RunSpec], split: str, host: str = "trainer") -> str:
    runs = load_runs(root, specs, split, host)
    if not runs:
        return f"### Detection benchmark: {_TITLES.get(host, host)}: no runs under {root}"
    live_known = host != HF_OWN
    fails = {r.name: failure_step(r) for r in runs}
    # HF's own log has no gains: only the product's rows (the comparisons read gains)
    columns = {n: fn for n, fn in COLUMNS.items() if live_known or (n != _LIVE and not n.startswith(_GAIN_ONLY))}
    firsts = {name: {r.name: detection_step(fn(r), r.mode) for r in runs} for name, fn in columns.items()}
    replayed = {r.name: replay_suite(r) for r in runs}
    n_ok = sum(r.healthy for r in runs)
    where = f"{split} half" if host == "trainer" else f"{_TITLES.get(host, host)}, held out"
    lines = [f"### Detection benchmark: {where} ({n_ok} healthy runs, {len(runs) - n_ok} with a fault; "
             f"{sum(f is not None for f, _ in fails.values())} fail by the rule)", "",
             "| detector | recall (flagged at or before the failure) | median lead (steps) "
             "| median lead, failures with a precursor | false positives |",
             "|---|---|---|---|---|"]
    for name, detected in firsts.items():
        sc = score(runs, detected, fails)
        lines.append(f"| {name} | {_pct(sc.caught, sc.failures)} | {_n(sc.median_lead)} | "
                     f"{_n(sc.median_precursor_lead)} | {_pct(sc.fp, sc.healthy)} |")
    healthy = [r for r in runs if r.healthy]
    warn_live = sum(bool(warned(r.live)) for r in healthy)
    warn_replay = sum(bool(warned(replayed[r.name])) for r in healthy)
    lines += ["", "Healthy runs with any warning: " + (f"live {_pct(warn_live, len(healthy))}, " if live_known else "")
              + f"replayed {_pct(warn_replay, len(healthy))}."]
    lines += ["", "| run | fault | failure step (rule) | first flag, " + ("live" if live_known else "replay")
              + " | lead | flagged by (replay); healthy: warnings |", "|---|---|---|---|---|---|"]
    first_col = _LIVE if live_known else next(iter(columns))
    for r in runs:
        f, why = fails[r.name]
        at = firsts[first_col][r.name]
        events = replayed[r.name]
        by = [f"{g.split(' (')[0]} {s}" for g, kinds in GROUPS.items()
              if (s := detection_step(events, r.mode, kinds)) is not None]
        if r.healthy:  # not counted as false positives, but a user sees them
            by = [f"warning `{k}` {s}" for k, s in warned(r.live if live_known else events).items()]
        if r.mode == "frozen_layer":
            fz = first_event(events, "frozen_parameters")
            by.append(f"`frozen_parameters` {fz}" if fz is not None else "no `frozen_parameters`")
        lead = "-" if f is None or at is None or at > f else str(f - at)
        failure = f"{f} ({why})" if f is not None else ("-" if r.healthy else "no failure by the rule")
        task = r.info["spec"].get("task", "lm")
        name = r.name if task == "lm" or host != "trainer" else f"{r.name} ({task})"
        lines.append(f"| {name} | {r.mode} | {failure} | {_s(at)} | {lead} | {', '.join(by) or '-'} |")
    return "\n".join(lines)


_REPLAY = list(COLUMNS)[1]


def build_summary(root: Path, specs: list[RunSpec], hosts: tuple[str, ...]) -> str:
    """One row per host (our trainer: per half): the defaults as shipped, live and replayed."""
    lines = ["### Detection benchmark: every host, the defaults as shipped", "",
             "| host (log replayed) | runs: healthy / failing by the rule | recall, live / replayed "
             "| median lead, failures with a precursor (live) | alert false positives (live) "
             "| healthy runs with a warning (live) |", "|---|---|---|---|---|---|"]
    rows = [("trainer", "tune"), ("trainer", "holdout")] + [(h, "all") for h in hosts if h != "trainer"]
    for host, split in rows:
        runs = load_runs(root, specs, split, host)
        if not runs:
            continue
        fails = {r.name: failure_step(r) for r in runs}
        live_known = host != HF_OWN
        replay = score(runs, {r.name: detection_step(replay_suite(r), r.mode) for r in runs}, fails)
        live = score(runs, {r.name: detection_step(r.live, r.mode) for r in runs}, fails) if live_known else None
        shown = live or replay
        healthy = [r for r in runs if r.healthy]
        warn = sum(bool(warned(r.live if live_known else replay_suite(r))) for r in healthy)
        label = f"{_TITLES['trainer']}, {split} half" if host == "trainer" else _TITLES[host]
        lines.append(f"| {label} | {replay.healthy} / {replay.failures} | "
                     f"{_pct(live.caught, live.failures) if live else '-'} / {_pct(replay.caught, replay.failures)} | "
                     f"{_n(shown.median_precursor_lead)} | {_pct(shown.fp, shown.healthy)} | "
                     f"{_pct(warn, len(healthy))} |")
    return "\n".join(lines)


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "-"


def _n(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _s(x: int | None) -> str:
    return "-" if x is None else str(x)


# --- creeping failures (scenarios.CREEP_SPECS): the lead of the first warning or alert ----------
LATE = 300  # the lead target applies to failures this many steps in (issue 22)


def first_flag(events) -> tuple[int | None, str]:
    """(step, kind) of the first warning or alert."""
    flags = sorted((e.step, e.kind) for e in events if e.severity in ("warning", "alert") and e.step is not None)
    return flags[0] if flags else (None, "")


def build_creep_report(root: Path, specs: list[RunSpec]) -> str:
    """Per host and half: recall (alerts), median lead of the first warning or alert on failures
    `LATE`+ steps in, alert false positives and warned healthy twins; then every run."""
    lines = ["### Creeping failures: an LR that ramps over the whole run (replayed by `trainvitals analyze`)", "",
             f"| host, half | healthy twins / failing by the rule (of them {LATE}+ steps in) | recall (alerts) "
             f"| median lead, first warning or alert, failures {LATE}+ steps in | alert false positives "
             "| healthy twins with a warning |", "|---|---|---|---|---|---|"]
    rows, detail = [], []
    for host in ("trainer", "loop-gpt", "loop"):
        for split in ("holdout", "tune"):
            runs = [r for r in load_runs(root, [s for s in specs if s.host == host.split("-")[0]], split,
                                         host.split("-")[0])
                    if host == "trainer" or (r.info["spec"]["model"].get("arch") == "gpt") == host.endswith("gpt")]
            if not runs:
                continue
            fails = {r.name: failure_step(r) for r in runs}
            events = {r.name: replay_suite(r) for r in runs}
            sc = score(runs, {r.name: detection_step(events[r.name], r.mode) for r in runs}, fails)
            late = [r for r in runs if not r.healthy and (fails[r.name][0] or 0) >= LATE]
            leads = [fails[r.name][0] - at for r in late
                     if (at := first_flag(events[r.name])[0]) is not None and at <= fails[r.name][0]]
            healthy = [r for r in runs if r.healthy]
            warned_twins = sum(first_flag(events[r.name])[0] is not None for r in healthy)
            rows.append(f"| {_TITLES[host]}, {split} half | {sc.healthy} / {sc.failures} ({len(late)}) | "
                        f"{_pct(sc.caught, sc.failures)} | {_n(median(leads) if leads else None)} "
                        f"({len(leads)} of {len(late)} warned in time) | {_pct(sc.fp, sc.healthy)} | "
                        f"{_pct(warned_twins, len(healthy))} |")
            for r in runs:
                f, why = fails[r.name]
                at, kind = first_flag(events[r.name])
                alert = detection_step(events[r.name], r.mode)
                t = r.info["spec"]["trainer"]
                setting = f"peak {t['lr']:g}, clip {t['gradient_clip'] or 'off'}" + (
                    ", no LayerNorm" if r.info["spec"]["model"].get("layer_norm") is False else "")
                lead = "-" if f is None or at is None or at > f else str(f - at)
                detail.append(f"| {r.name} | {split} | {setting} | {f'{f} ({why})' if f is not None else '-'} | "
                              f"{_s(at)} {f'`{kind}`' if kind else ''} | {_s(alert)} | {lead} |")
    lines += rows + ["", "| run | half | LR ramp | failure step (rule) | first warning or alert | first alert | lead |",
                     "|---|---|---|---|---|---|---|"] + detail
    return "\n".join(lines)
