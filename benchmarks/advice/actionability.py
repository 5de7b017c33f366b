"""Does the advice help? Paired runs: a failing run, its rerun with the advised change.

For each failing configuration (`advice_scenarios.py`): run it, take `trainvitals advise`'s
recommendation (`--json`, and for our runs `--out NEXT.toml`), apply it mechanically
(our runs train from NEXT.toml; HF's through the host table, `advise.hosts`), rerun
with the same seed and budget, and score the pair. Two naive advisors get the same
failing runs: "always halve the LR" and "a random fix from the generic list" (seeded).

Validity (declared before any run, checked before any advice): a scenario's base run
fails when it raises an alert, or when its healthy reference (the scenario's cause
removed, same seed and budget: `Scenario.reference`) is better than it by the margin a
fix must clear (below). A base that does not fail is a broken scenario, printed as such
and still counted: rebuild it, never drop it.

Fixed (declared before any run): the rerun raises no alert AND its final val loss is
below the failing run's by at least the margin of its host and task: max(2%, twice the
seed-to-seed difference of final val loss between the healthy twins of that host and
task, measured in the same invocation). Reported beside it, "fixed, gain alerts aside":
the same, except that alerts of the gradient-gain family (`mean_gain_drift`,
`max_gain_jump`, `mean_gain_absolute`, `grad_norm_jump`) do not count; those also fire
on healthy twins here, so this column shows what the advice does when the detectors'
false alarms are set apart.

Also: advise on healthy runs (a recommended change is a false recommendation), and the
tuning-iteration figure: from bad starts, follow advise until it recommends nothing
(at most 4 reruns), against a grid search over the LR reaching the same val loss
(expected runs of the grid in random order, (N+1)/(k+1) for k of N points good enough).

    OMP_NUM_THREADS=1 python benchmarks/advice/actionability.py            # ~30 min, 2 cores
    OMP_NUM_THREADS=1 python benchmarks/advice/actionability.py --quick    # the mechanics, ~1 min
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from advice_runners import final_val_loss, run_hf, run_ours  # noqa: E402
from advice_scenarios import LR_GRID, Scenario, healthy, scenarios, tuning_starts  # noqa: E402

MARGIN_FLOOR = 0.02
GAIN_FAMILY = ("mean_gain_drift", "max_gain_jump", "mean_gain_absolute", "grad_norm_jump")
MAX_RERUNS = 4
# neutral name <- HF's for the settings the naive advisors read (our runs use the neutral names)
_HF_NEUTRAL = {"learning_rate": "lr", "max_grad_norm": "gradient_clip", "warmup_steps": "warmup_steps",
               "weight_decay": "weight_decay", "resid_pdrop": "dropout"}
_HF_DEFAULTS = {"max_grad_norm": 1.0, "weight_decay": 0.0, "resid_pdrop": 0.0, "warmup_steps": 0}
_OUR_DEFAULTS = {"gradient_clip": 1.0, "weight_decay": 0.1, "dropout": 0.0, "warmup_steps": 100}


@dataclasses.dataclass
class Outcome:
    val: float
    alerts: int
    kinds: list[str]


class Bench:
    """Runs (cached by host, task and settings) under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runs = 0
        self.seconds = 0.0
        self._cache: dict[str, tuple[Path, Outcome]] = {}

    def run(self, sc: Scenario, settings: dict[str, Any]) -> tuple[Path, Outcome]:
        key = json.dumps([sc.host, sc.task, settings], sort_keys=True, default=str)
        if key in self._cache:
            return self._cache[key]
        d = self.workdir / "runs" / f"{sc.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        if not (d / "done").exists():
            import shutil
            shutil.rmtree(d, ignore_errors=True)
            t = time.time()
            run_ours(sc.task, settings, d) if sc.host == "ours" else run_hf(settings, d)
            self.seconds += time.time() - t
            self.runs += 1
            (d / "done").write_text("")
        out = (d, Outcome(final_val_loss(d), *_alerts(d)))
        self._cache[key] = out
        return out


def _alerts(d: Path) -> tuple[int, list[str]]:
    from trainvitals.analyze.readers import read_runs
    from trainvitals.analyze.replay import AnalyzeConfig, replay
    from trainvitals.analyze.roles import apply_roles
    (run,) = read_runs(d).values()
    events = [e for e in replay(apply_roles(run), AnalyzeConfig()).events if e.severity == "alert"]
    return len(events), sorted({e.kind for e in events})


def advise_run(d: Path, sc: Scenario) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """advise's JSON for run `d`, and the next run's settings (our runs: read from the
    config `--out` wrote; HF: the change through the host table); None: no change."""
    from trainvitals.advise.command import advise
    from trainvitals.cli_config import load_toml
    buf = io.StringIO()
    toml = d.parent / f"{d.name}.next.toml"
    advise(str(d), as_json=True, out_path=str(toml) if sc.host == "ours" else None, out=buf)
    rec = json.loads(buf.getvalue())
    if rec.get("check", {}).get("frozen_parameters") and "frozen_block" in sc.settings:
        # the check names the parameters that never moved; doing it puts them back in the optimizer
        return rec, {k: v for k, v in sc.settings.items() if k != "frozen_block"}
    if not rec["change"]:
        return rec, None
    if sc.host == "ours":
        return rec, load_toml(str(toml))
    return rec, apply_hf(sc.settings, rec["change"])


def apply_hf(settings: dict[str, Any], change: dict[str, Any]) -> dict[str, Any] | None:
    """`change` (neutral names) in HF's names, through the host table; None if HF has no such setting."""
    from trainvitals.advise.hosts import host_names
    out = dict(settings)
    for name, value in change.items():
        target = host_names(name, "hf")
        if target is None:
            return None
        for n in target[1]:
            out[n] = value
    return out


def apply_neutral(sc: Scenario, change: dict[str, Any]) -> dict[str, Any] | None:
    if sc.host == "hf":
        return apply_hf(sc.settings, change)
    return {**sc.settings, **change}


def neutral(sc: Scenario) -> dict[str, Any]:
    """The settings the naive advisors read, in neutral names."""
    if sc.host == "hf":
        s = {**_HF_DEFAULTS, **sc.settings}
        return {n: s[h] for h, n in _HF_NEUTRAL.items() if h in s}
    return {**_OUR_DEFAULTS, **sc.settings}


def halve_lr(sc: Scenario) -> dict[str, Any]:
    return {"lr": float(f"{neutral(sc)['lr'] / 2:.2e}")}


def random_fix(sc: Scenario) -> dict[str, Any]:
    """One fix drawn from the generic list, seeded by the scenario's name."""
    s = neutral(sc)
    clip, warm = s.get("gradient_clip") or 0.0, s.get("warmup_steps") or 0
    generic = [{"lr": s["lr"] / 2}, {"lr": s["lr"] * 2},
               {"gradient_clip": round(clip * 0.7, 3) if clip > 0 else 1.0},
               {"warmup_steps": int(warm * 2.5) if warm else 20},
               {"dropout": round(min(0.5, (s.get("dropout") or 0.0) + 0.1), 3)},
               {"weight_decay": 0.1 if (s.get("weight_decay") or 0.0) < 0.1 else s["weight_decay"] * 2}]
    return random.Random(f"random-fix/{sc.name}").choice(generic)


def score(bench: Bench, sc: Scenario, base: Outcome, settings: dict[str, Any] | None, margin: float) -> dict:
    if settings is None:
        return {"fixed": False, "fixed_gain_aside": False, "rerun": None}
    _, re = bench.run(sc, settings)
    better = _better(re.val, base.val, margin)
    return {"fixed": re.alerts == 0 and better,
            "fixed_gain_aside": better and not set(re.kinds) - set(GAIN_FAMILY),
            "rerun": {"val": _f(re.val), "alerts": re.alerts, "kinds": re.kinds}}


def _f(x: float) -> float | str:
    return round(x, 4) if math.isfinite(x) else str(x)


def check_bases(bench: Bench, items: list[Scenario], margins: dict[str, float]) -> dict[tuple[str, str], dict]:
    """The validity check, run before any advice: a base fails when it raises an alert, or
    when its healthy reference (the cause removed, same seed and budget) is better than it
    by the margin a fix must clear. A base that does not fail is a broken scenario: it is
    printed as such and still counted (rebuild it; never drop it from the denominator)."""
    out = {}
    print("  validity check (before any advice): base vs its healthy reference", file=sys.stderr, flush=True)
    for sc in items:
        margin = margins.get(f"{sc.host}/{sc.task}", MARGIN_FLOOR)
        _, base = bench.run(sc, sc.settings)
        _, ref = bench.run(dataclasses.replace(sc, name=f"{sc.name}_reference"), sc.reference)
        worse = _better(ref.val, base.val, margin)
        fails = base.alerts > 0 or worse
        why = ("alerts: " + ", ".join(base.kinds) if base.alerts else "") + \
            (("; " if base.alerts else "") + "worse than the reference by the margin" if worse else "")
        out[(sc.name, sc.half)] = {"fails": fails, "why": why or "no alert, within the margin of the reference",
                                   "reference": {"val": _f(ref.val), "alerts": ref.alerts, "kinds": ref.kinds},
                                   "base_vs_reference": _f(base.val / ref.val - 1) if math.isfinite(base.val)
                                   and math.isfinite(ref.val) else "inf"}
        print(f"  {sc.half:7s} {sc.name:20s} base {base.val:.4f} ({base.alerts} alerts) reference {ref.val:.4f} "
              f"({ref.alerts}) margin {100 * margin:.1f}% -> {'fails' if fails else 'DOES NOT FAIL'}: "
              f"{out[(sc.name, sc.half)]['why']}", file=sys.stderr, flush=True)
    return out


def _better(new: float, old: float, margin: float) -> bool:
    """`new` below `old` by at least `margin` (a finite loss beats a non-finite one)."""
    return math.isfinite(new) and (not math.isfinite(old) or new <= old * (1 - margin))


def run_pairs(bench: Bench, items: list[Scenario], margins: dict[str, float], naive: bool = True) -> list[dict]:
    valid = check_bases(bench, items, margins)
    rows = []
    for sc in items:
        margin = margins.get(f"{sc.host}/{sc.task}", MARGIN_FLOOR)
        d, base = bench.run(sc, sc.settings)
        rec, nxt = advise_run(d, sc)
        row = {"scenario": sc.name, "half": sc.half, "host": sc.host, "task": sc.task, "cause": sc.cause,
               "margin": round(margin, 4), "base": {"val": _f(base.val), "alerts": base.alerts, "kinds": base.kinds},
               "validity": valid[(sc.name, sc.half)],
               "advice": {"change": rec["change"], "sentence": rec["sentence"], "check": rec.get("check") or {}},
               "trainvitals": score(bench, sc, base, nxt, margin)}
        if naive:
            for name, fix in (("halve_lr", halve_lr), ("random_fix", random_fix)):
                change = fix(sc)
                row[name] = {"change": change, **score(bench, sc, base, apply_neutral(sc, change), margin)}
        rows.append(row)
        print(f"  {sc.half:7s} {sc.name:20s} base val {base.val:.3f} ({base.alerts} alerts) | advise "
              f"{rec['change'] or '-'} -> fixed={row['trainvitals']['fixed']}", file=sys.stderr, flush=True)
    return rows


def measure_noise(bench: Bench) -> tuple[dict[str, float], list[dict]]:
    """Seed-to-seed relative difference of final val loss, per host/task, and the rows."""
    twins, rows = {}, []
    for seed in (0, 1):
        for sc in healthy(seed):
            d, out = bench.run(sc, sc.settings)
            rec, _ = advise_run(d, sc)
            rows.append({"run": sc.name, "val": _f(out.val), "alerts": out.alerts, "kinds": out.kinds,
                         "false_recommendation": bool(rec["change"]), "advice": rec["sentence"]})
            twins.setdefault(f"{sc.host}/{sc.task}", []).append(out.val)
    return {k: abs(a - b) / min(a, b) for k, (a, b) in twins.items()}, rows


def tuning(bench: Bench, margins: dict[str, float]) -> list[dict]:
    rows = []
    for sc in tuning_starts():
        margin = margins.get(f"{sc.host}/{sc.task}", MARGIN_FLOOR)
        settings, runs, chain = sc.settings, 1, []
        d, out = bench.run(sc, settings)
        for _ in range(MAX_RERUNS):
            step = dataclasses.replace(sc, settings=settings)
            rec, nxt = advise_run(d, step)
            if nxt is None:
                break
            chain.append(rec["change"])
            settings = nxt
            d, out = bench.run(sc, settings)
            runs += 1
        lr_key = "lr" if sc.host == "ours" else "learning_rate"
        grid = [bench.run(sc, {**sc.settings, lr_key: lr})[1].val for lr in LR_GRID]
        good = sum(v <= out.val * (1 + margin) for v in grid)
        expected = (len(grid) + 1) / (good + 1) if good else float(len(grid))
        rows.append({"start": sc.name, "advise_runs": runs, "changes": chain, "final_val": _f(out.val),
                     "final_alerts": out.alerts, "grid_points_as_good": good, "grid_expected_runs": round(expected, 2),
                     "grid_best_val": _f(min(grid))})
        print(f"  tuning {sc.name}: advise {runs} runs to val {out.val:.3f}; grid {expected:.1f} expected",
              file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict]) -> dict[str, Any]:
    out = {}
    for half in ("tune", "holdout", "all"):
        mine = [r for r in rows if half == "all" or r["half"] == half]
        if mine:
            out[half] = {"bases that fail": f"{sum(r['validity']['fails'] for r in mine)}/{len(mine)}",
                         **{f"{a} {k}": f"{sum(r[a][k] for r in mine if a in r)}/{len(mine)}"
                            for a in ("trainvitals", "halve_lr", "random_fix") if a in mine[0]
                            for k in ("fixed", "fixed_gain_aside")}}
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| scenario | half | host | cause | base val (alerts) | advise's change → rerun val (alerts) | "
             "trainvitals | halve LR | random fix |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["pairs"]:
        re = r["trainvitals"]["rerun"]
        after = f" → {re['val']} ({re['alerts']}: {', '.join(re['kinds']) or 'none'})" if re else ""
        change = json.dumps(r["advice"]["change"]) if r["advice"]["change"] else \
            "check: " + r["advice"]["sentence"][:60] if r["advice"].get("check") else "none"
        lines.append(f"| {r['scenario']} | {r['half']} | {r['host']} | {r['cause']} | {r['base']['val']} "
                     f"({r['base']['alerts']}) | `{change}`{after} | {_mark(r.get('trainvitals'))} | "
                     f"{_mark(r.get('halve_lr'))} | {_mark(r.get('random_fix'))} |")
    return "\n".join(lines)


def validity_table(result: dict[str, Any]) -> str:
    lines = ["| scenario | half | base val (alerts) | healthy reference val (alerts) | base vs reference | margin | "
             "base fails |", "|---|---|---|---|---|---|---|"]
    for r in result["pairs"]:
        v, b = r["validity"], r["base"]
        rel = v["base_vs_reference"]
        lines.append(f"| {r['scenario']} | {r['half']} | {b['val']} ({b['alerts']}) | {v['reference']['val']} "
                     f"({v['reference']['alerts']}) | {f'{100 * rel:+.1f}%' if isinstance(rel, float) else rel} | "
                     f"{100 * r['margin']:.1f}% | {'yes' if v['fails'] else '**no**'}: {v['why']} |")
    return "\n".join(lines)


def _mark(score: dict | None) -> str:
    """strict / gain alerts aside: "yes", "no", or "no / yes"."""
    if not score:
        return "-"
    a, b = ("yes" if score[k] else "no" for k in ("fixed", "fixed_gain_aside"))
    return a if a == b else f"{a} / {b}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="two scenarios, no naive advisors or tuning: the mechanics")
    p.add_argument("--workdir", default="/tmp/trainvitals-advice-bench")
    p.add_argument("--out", default="", help="write the results as JSON here")
    p.add_argument("--only", nargs="+", metavar="NAME", help="these scenarios only (both halves), no tuning figure")
    p.add_argument("--no-naive", action="store_true", help="skip the naive advisors' reruns")
    p.add_argument("--part", choices=("all", "tune", "holdout", "tuning"), default="all",
                   help="one part only (to run them as parallel processes; --merge joins their JSON)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="join the JSON of --part runs into --out")
    args = p.parse_args(argv)
    if args.merge:
        return _merge(args.merge, args.out)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bench, t0 = Bench(workdir), time.time()
    if args.quick:
        margins, noise_rows = {}, []
        picked = [s for s in scenarios("tune", workdir) if s.name in ("lm_lr_too_low", "hf_lr_too_low")]
        short = {"ours": {"steps_per_epoch": 20, "epochs": 3}, "hf": {"num_train_epochs": 3, "train_windows": 320}}
        quick = [dataclasses.replace(s, settings={**s.settings, **short[s.host]}, reference={**s.reference,
                                                                                           **short[s.host]})
                 for s in picked]
        pairs, tune_rows = run_pairs(bench, quick, margins, naive=False), []
    else:
        noise, noise_rows = measure_noise(bench)
        margins = {k: round(max(MARGIN_FLOOR, 2 * v), 4) for k, v in noise.items()}
        print(f"  seed-to-seed noise {noise} -> margins {margins}", file=sys.stderr)
        halves = {"all": ("tune", "holdout"), "tuning": ()}.get(args.part, (args.part,))
        items = [s for half in halves for s in scenarios(half, workdir)]
        if args.only:
            unknown = sorted(set(args.only) - {s.name for s in items})
            if unknown:
                p.error(f"--only {' '.join(unknown)}: no such scenario; allowed: "
                        f"{', '.join(dict.fromkeys(s.name for s in items))}")
            items = [s for s in items if s.name in args.only]
        pairs = run_pairs(bench, items, margins, naive=not args.no_naive)
        tune_rows = [] if args.only or args.part in ("tune", "holdout") else tuning(bench, margins)
    result = {"margins": margins, "pairs": pairs, "healthy": noise_rows, "tuning": tune_rows,
              "summary": summary(pairs), "runs": bench.runs, "train_seconds": round(bench.seconds, 1),
              "wall_seconds": round(time.time() - t0, 1)}
    _report(result, args.out)
    return 0


def _merge(paths: list[str], out: str) -> int:
    """One result from the JSON of parts run apart (same margins: measured the same way in each)."""
    parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    pairs = [r for part in parts for r in part["pairs"]]
    pairs.sort(key=lambda r: r["half"] != "tune")
    result = {"margins": parts[0]["margins"], "pairs": pairs, "healthy": parts[0]["healthy"],
              "tuning": [r for part in parts for r in part["tuning"]], "summary": summary(pairs),
              "runs": sum(p["runs"] for p in parts), "train_seconds": sum(p["train_seconds"] for p in parts),
              "wall_seconds": max(p["wall_seconds"] for p in parts)}
    _report(result, out)
    return 0


def _report(result: dict[str, Any], out: str) -> None:
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(validity_table(result))
    print()
    print(table(result))
    print(json.dumps({k: result[k] for k in ("margins", "summary", "runs", "wall_seconds")}))
    noise_rows, tune_rows = result["healthy"], result["tuning"]
    if noise_rows:
        print(f"false recommendations on healthy runs: {sum(r['false_recommendation'] for r in noise_rows)}"
              f"/{len(noise_rows)}")
    if tune_rows:
        a = sum(r["advise_runs"] for r in tune_rows)
        g = sum(r["grid_expected_runs"] for r in tune_rows)
        print(f"tuning: advise {a} runs, grid {g:.1f} expected runs: {100 * (1 - a / g):.0f}% fewer")


if __name__ == "__main__":
    sys.exit(main())
