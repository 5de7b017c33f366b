"""Kill a training run with SIGKILL N times at random moments, resume it after each kill
(the user's own command line with `--resume` added), and compare the result with an
uninterrupted run of the same command.

    python benchmarks/crash_resume.py --kills 20 [--seed 0] [--workdir DIR]

Every third kill waits for a snapshot write in progress (a `.step_N.pt.XXXX.tmp` file in
snapshots/) and kills during it; the others come at a random time. A kill before the
first snapshot leaves nothing to resume: as the refusal says, the directory is removed
and the run started again. At the end, for every logged tag (JSONL and TensorBoard):
every step appears exactly once and equals the uninterrupted run's value; no temp file
and no lock is left.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainvitals.analyze.readers import read_run
from trainvitals.training.rundir import LOCK_NAME

# a small byte GPT, 15 epochs of 4 steps, a snapshot at every epoch end
RUN = ["--n-layers", "2", "--d-model", "32", "--n-heads", "2", "--block-size", "32", "--batch-size", "8",
       "--no-progress-bar", "--epochs", "15", "--steps-per-epoch", "4", "--val-fraction", "0.01",
       "--warmup-steps", "5", "--log-every", "2", "--seed", "7"]


@dataclass
class Result:
    kills: int = 0
    during_snapshot_write: int = 0
    before_first_snapshot: int = 0
    resumes: int = 0
    problems: list[str] = field(default_factory=list)
    max_abs_diff: float = 0.0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "OK" if self.ok else "FAILED: " + "; ".join(self.problems[:5])
        return (f"{self.kills} kills ({self.during_snapshot_write} during a snapshot write, "
                f"{self.before_first_snapshot} before the first snapshot), {self.resumes} resumes, "
                f"max |loss difference| {self.max_abs_diff:.1e}, {self.wall_s:.0f} s: {verdict}")


def _command(logdir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "trainvitals", "train-lm", *RUN, "--logdir", str(logdir),
            *(["--resume"] if resume else [])]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}


def _has_snapshot(logdir: Path) -> bool:
    return any((logdir / "snapshots").glob("step_*.pt"))


def _writing(logdir: Path) -> bool:
    try:
        return any(e.name.endswith(".tmp") for e in os.scandir(logdir / "snapshots"))
    except FileNotFoundError:
        return False


def _attempt(logdir: Path, rng: random.Random, budget_s: float, during_write: bool, res: Result,
             after_kill: bool) -> bool:
    """One process: killed (False) or run to completion (True)."""
    resume = _has_snapshot(logdir)
    res.before_first_snapshot += after_kill and not resume
    if not resume and logdir.exists():
        shutil.rmtree(logdir)  # no snapshot to resume: start again, as the refusal says
    res.resumes += resume
    proc = subprocess.Popen(_command(logdir, resume), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), text=True)
    deadline = time.time() + (budget_s * 3 if during_write else rng.uniform(0, budget_s))
    while proc.poll() is None and time.time() < deadline:
        if during_write and _writing(logdir):
            break
        time.sleep(0.0002 if during_write else 0.01)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
        res.kills += 1
        res.during_snapshot_write += during_write and time.time() < deadline
        return False
    out, err = proc.communicate()
    if proc.returncode != 0:
        res.problems.append(f"exit {proc.returncode}: {err.strip().splitlines()[-1:] or out[-200:]}")
    return True


def _scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "scalar":
            out.setdefault(r["tag"], []).append((r["step"], float(r["value"])))
    return out


def _events(path: Path) -> list[tuple]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["kind"], r.get("step"), r.get("epoch")) for r in rows if r["type"] == "event"]


def _compare(ref: Path, run: Path, res: Result) -> None:
    for name, a, b in (("JSONL", _scalars(ref / "metrics.jsonl"), _scalars(run / "metrics.jsonl")),
                       ("TensorBoard", read_run(ref).series, read_run(run).series)):
        if set(a) != set(b):
            res.problems.append(f"{name}: tags differ: {sorted(set(a) ^ set(b))[:3]}")
        for tag in sorted(set(a) & set(b)):
            steps = [s for s, _ in b[tag]]
            if len(steps) != len(set(steps)):
                res.problems.append(f"{name} {tag}: a step appears twice")
            if steps != [s for s, _ in a[tag]]:
                res.problems.append(f"{name} {tag}: steps differ from the uninterrupted run")
                continue
            for (_, x), (_, y) in zip(a[tag], b[tag]):
                if math.isnan(x) and math.isnan(y):
                    continue
                res.max_abs_diff = max(res.max_abs_diff, abs(x - y))
                if not abs(x - y) <= 1e-6 * max(1.0, abs(x)):
                    res.problems.append(f"{name} {tag}: {y} vs {x}")
                    break
    if _events(ref / "metrics.jsonl") != _events(run / "metrics.jsonl"):
        res.problems.append("events differ from the uninterrupted run")
    left = [str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]
    if left:
        res.problems.append(f"left behind: {left[:3]}")


def run_benchmark(kills: int, seed: int = 0, workdir: str | None = None) -> Result:
    res, rng = Result(), random.Random(seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ref, run = Path(tmp) / "uninterrupted", Path(tmp) / "killed"
        start = time.time()
        proc = subprocess.run(_command(ref, False), capture_output=True, text=True, env=_env())
        if proc.returncode != 0:
            raise SystemExit(f"the uninterrupted run failed:\n{proc.stderr}")
        budget = time.time() - start  # a kill comes within one run's wall time
        attempt, after_kill = 0, False
        while res.kills < kills:
            attempt += 1
            after_kill = not _attempt(run, rng, budget, attempt % 3 == 0, res, after_kill)
            if not after_kill:
                _compare(ref, run, res)  # completed before all kills: check it, then again from scratch
                shutil.rmtree(run)
        while not _attempt(run, rng, budget * 100, False, res, after_kill):
            pass  # the last resume, not killed
        _compare(ref, run, res)
    res.wall_s = time.time() - t0
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where the two run directories go (default: a temp dir)")
    args = ap.parse_args()
    res = run_benchmark(args.kills, args.seed, args.workdir)
    print(res.line())
    sys.exit(0 if res.ok else 1)


if __name__ == "__main__":
    main()
