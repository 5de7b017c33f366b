"""`trainvitals analyze` at the scale of a long pretraining run, end to end in a fresh process.

    python benchmarks/analyze_scale.py [--steps 2000000] [--tags 5] [--baseline-src DIR]

Writes one TensorBoard event file in the exact bytes our `TensorBoardSink` writes (one
event a step holding every tag's value; checked against protobuf's own serialization),
then times, each in a fresh process under /usr/bin/time (wall seconds, peak resident
memory):

- `trainvitals analyze LOGDIR` (the human output) and `trainvitals analyze LOGDIR --json`;
- TensorBoard's `EventAccumulator` loading every scalar of the same file;
- with `--baseline-src DIR` (a `src/` holding another trainvitals, e.g. the commit before
  this work: `git archive 323bd52 src | tar -x -C /tmp/old`), the same analyze run from
  that source, whose `--json` events must equal ours one by one; with `--runs RUNS` too,
  `analyze RUNS --json` over a directory of runs (the detection suite's) from both.

Memory is given twice: /usr/bin/time's peak RSS of the largest process, and the peak
proportional set size of the whole process tree (`analyze` replays a long log in two
processes, the second forked from the first and sharing its pages), sampled every 20 ms.

Tags: `train/step_loss`, `train/lr`, `gradient_monitor/grad_norm` and `--tags - 3` block
gains `gradient_monitor/gain/<i>`. The series look like a healthy run with a few faults
(a loss spike, a stretch of NaN losses, a grad norm jump) so the detectors have work.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from read_scalars import _varint  # noqa: E402  (benchmarks/ is the script's directory)
from trainvitals.analyze.tfrecord import _masked_crc_rows, masked_crc32c

ROOT = Path(__file__).resolve().parents[1]


def tag_names(n_tags: int) -> list[str]:
    if n_tags < 4:
        raise SystemExit(f"--tags {n_tags}: at least 4 (loss, lr, grad norm, one gain)")
    return (["train/step_loss", "train/lr", "gradient_monitor/grad_norm"]
            + [f"gradient_monitor/gain/{i}" for i in range(n_tags - 3)])


def series(steps: int, n_tags: int, seed: int = 0) -> np.ndarray:
    """(steps, n_tags) float32 values, step s in row s - 1 (steps count from 1)."""
    rng = np.random.default_rng(seed)
    s = np.arange(1, steps + 1, dtype=np.float64)
    out = np.empty((steps, n_tags), dtype=np.float32)
    out[:, 0] = 1.5 + 3.0 * np.exp(-s / (steps / 20)) + 0.05 * rng.standard_normal(steps)
    out[steps // 3, 0] *= 8  # one loss spike
    out[steps // 2:steps // 2 + 10, 0] = np.nan  # a stretch of non-finite losses
    warm = max(1, steps // 100)
    out[:, 1] = 3e-4 * np.minimum(1.0, s / warm) * (0.55 + 0.45 * np.cos(np.pi * s / steps))
    out[:, 2] = np.exp(0.2 * rng.standard_normal(steps))
    out[2 * steps // 3, 2] *= 50  # one grad norm jump
    for k in range(3, n_tags):
        base = 3.0 if k == 3 else 1.15
        out[:, k] = base * np.exp(0.02 * rng.standard_normal(steps))
    return out


def _varint_bytes(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8: the protobuf varints of `values`, all `width` bytes long."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.uint64)
    for k in range(width):
        out[:, k] = (v & np.uint64(0x7F)).astype(np.uint8) | (0x80 if k < width - 1 else 0)
        v >>= np.uint64(7)
    return out


def _event_rows(steps: np.ndarray, values: np.ndarray, tags: list[str], width: int) -> np.ndarray:
    """The serialized `Event`s of `steps` (all with a step varint of `width` bytes), one a row."""
    cols = [b"\x09", (steps.astype("<f8") * 0.01 + 1.7e9).view(np.uint8).reshape(-1, 8)]
    if width:
        cols += [b"\x10", _varint_bytes(steps, width)]
    body = sum(9 + len(t.encode()) for t in tags)
    cols += [b"\x2a" + _varint(body)]
    for k, tag in enumerate(tags):
        t = tag.encode()
        cols += [bytes([0x0A, len(t) + 7, 0x0A, len(t)]) + t + b"\x15",
                 values[:, k].astype("<f4").view(np.uint8).reshape(-1, 4)]
    size = sum(c.shape[1] if isinstance(c, np.ndarray) else len(c) for c in cols)
    rows = np.empty((len(steps), size), dtype=np.uint8)
    at = 0
    for c in cols:
        n = c.shape[1] if isinstance(c, np.ndarray) else len(c)
        rows[:, at:at + n] = c if isinstance(c, np.ndarray) else np.frombuffer(c, np.uint8)
        at += n
    return rows


def _framed(rows: np.ndarray) -> np.ndarray:
    """TFRecords of equal-length data rows: length, its CRC, the data, the data's CRC."""
    n = rows.shape[1]
    head = np.frombuffer(np.array([n], "<u8").tobytes() + np.array([masked_crc32c(np.array([n], "<u8").tobytes())],
                                                                    "<u4").tobytes(), np.uint8)
    out = np.empty((len(rows), 12 + n + 4), dtype=np.uint8)
    out[:, :12] = head
    out[:, 12:12 + n] = rows
    out[:, 12 + n:] = _masked_crc_rows(rows).astype("<u4").view(np.uint8).reshape(-1, 4)
    return out


def write_log(logdir: Path, steps: int, n_tags: int, block: int = 200_000) -> Path:
    """Our sink's event file for `steps` steps (1..steps) of `n_tags` tags."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    tags, values = tag_names(n_tags), series(steps, n_tags)
    path = logdir / "events.out.tfevents.1700000000.bench.1.0"
    with open(path, "wb") as f:
        first = Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()
        f.write(_framed(np.frombuffer(first, np.uint8)[None]).tobytes())
        for lo in range(0, steps, block):
            step = np.arange(lo + 1, min(steps, lo + block) + 1, dtype=np.int64)
            width = np.ones(len(step), np.int64)
            for k in range(1, 10):
                width += step >= (1 << (7 * k))
            for w in np.unique(width).tolist():
                sel = width == w
                rows = _event_rows(step[sel], values[step[sel] - 1], tags, w)
                f.write(_framed(rows).tobytes())
    check = Event(wall_time=1.7e9 + 0.01 * steps, step=steps, summary=Summary(value=[
        Summary.Value(tag=t, simple_value=float(values[-1, k])) for k, t in enumerate(tags)])).SerializeToString()
    if bytes(_event_rows(np.array([steps]), values[-1:], tags, len(_varint(steps)))[0]) != check:
        raise SystemExit("benchmark event bytes differ from protobuf's serialization")
    return path


TIME_RE = {"wall": re.compile(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)"),
           "rss_kb": re.compile(r"Maximum resident set size \(kbytes\): (\d+)"),
           "cpu": re.compile(r"(?:User|System) time \(seconds\): ([\d.]+)")}


def _tree_pss_kb(pid: int) -> int:
    """Proportional set size of `pid` and its descendants (a page shared by n of them counts 1/n
    in each): the memory a process tree really holds, where a forked worker shares its parent's."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration, ValueError):
            continue  # gone, or no /proc (then only /usr/bin/time's figure is shown)
    return total


def timed_process(args: list[str], src: Path, out: Path) -> tuple[float, float, float, float]:
    """Run `python args` in a fresh process under /usr/bin/time -v, stdout to `out`:
    (wall seconds, CPU seconds (user + system, its children's included), peak RSS of the
    largest process in MiB (/usr/bin/time's), peak PSS of the whole process tree in MiB,
    sampled every 20 ms). On a machine shared with other work the CPU time is the steadier figure."""
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    with open(out, "wb") as f, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(["/usr/bin/time", "-v", sys.executable, *args], stdout=f, stderr=err, env=env)
        tree = 0
        while p.poll() is None:
            tree = max(tree, _tree_pss_kb(p.pid))
            time.sleep(0.02)
        err.seek(0)
        stderr = err.read()
    m = TIME_RE["wall"].search(stderr)
    if not m:
        raise SystemExit(f"/usr/bin/time gave no figures:\n{stderr[-2000:]}")
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    rss = int(TIME_RE["rss_kb"].search(stderr).group(1)) / 1024
    cpu = sum(float(x) for x in TIME_RE["cpu"].findall(stderr))
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} exited {p.returncode}:\n{stderr[-3000:]}")
    return wall, cpu, rss, tree / 1024


ACCUMULATOR = """
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
print(sum(len(ea.Scalars(t)) for t in ea.Tags()["scalars"]))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2_000_000)
    parser.add_argument("--tags", type=int, default=5, help="tags a step (>= 4)")
    parser.add_argument("--baseline-src", type=Path, help="a src/ of another trainvitals to compare with")
    parser.add_argument("--no-accumulator", action="store_true", help="skip EventAccumulator (slow)")
    parser.add_argument("--keep", type=Path, help="write the log here and keep it")
    parser.add_argument("--runs", type=Path, help="with --baseline-src: also compare `analyze DIR --json` on "
                        "a directory of runs (e.g. the detection suite's), which must be identical")
    args = parser.parse_args(argv)
    if args.runs and not args.baseline_src:
        parser.error("--runs needs --baseline-src")
    with tempfile.TemporaryDirectory() as tmp:
        logdir = args.keep or Path(tmp) / "run"
        logdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        path = write_log(logdir, args.steps, args.tags)
        n = args.steps * args.tags
        print(f"wrote {args.steps:,} steps x {args.tags} tags = {n:,} scalars, one event a step "
              f"({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s\n")
        rows, outputs = [], {}
        ours = ROOT / "src"
        cases = [("trainvitals analyze", ours, ["-m", "trainvitals", "analyze", str(logdir)]),
                 ("trainvitals analyze --json", ours, ["-m", "trainvitals", "analyze", str(logdir), "--json"])]
        if args.baseline_src:
            cases += [("baseline analyze --json", args.baseline_src.resolve(),
                       ["-m", "trainvitals", "analyze", str(logdir), "--json"])]
        if not args.no_accumulator:
            cases += [("EventAccumulator (load only)", ours, ["-c", ACCUMULATOR, str(logdir)])]
        if args.runs:
            cases += [("analyze --json of --runs", ours, ["-m", "trainvitals", "analyze", str(args.runs), "--json"]),
                      ("baseline on --runs", args.baseline_src.resolve(),
                       ["-m", "trainvitals", "analyze", str(args.runs), "--json"])]
        print(f"{'':<32}{'wall':>10}{'CPU':>10}{'peak RSS':>14}{'tree PSS':>14}{'scalars/CPU-s':>16}")
        for name, src, cmd in cases:
            out = Path(tmp) / f"out{len(rows)}.txt"
            wall, cpu, rss, tree = timed_process(cmd, src, out)
            rows.append((name, wall, cpu))
            outputs[name] = out
            print(f"{name:<32}{wall:>8.1f} s{cpu:>8.1f} s{rss:>10.0f} MiB{tree:>10.0f} MiB{n / cpu:>16,.0f}", flush=True)
        times = {name: (wall, cpu) for name, wall, cpu in rows}
        ours_t = times["trainvitals analyze"]
        for other in ("baseline analyze --json", "EventAccumulator (load only)"):
            if other in times:
                print(f"{other} / trainvitals analyze: {times[other][0] / ours_t[0]:.1f}x wall, "
                      f"{times[other][1] / ours_t[1]:.1f}x CPU")
        print("\n" + outputs["trainvitals analyze"].read_text().splitlines()[0])
        if not args.no_accumulator:
            got = int(outputs["EventAccumulator (load only)"].read_text().split()[-1])
            if got != n:
                raise SystemExit(f"EventAccumulator read {got} scalars, expected {n}")
        if args.baseline_src:
            ours_json = json.loads(outputs["trainvitals analyze --json"].read_text())
            base_json = json.loads(outputs["baseline analyze --json"].read_text())
            same = ours_json["events"] == base_json["events"]
            print(f"events identical to the baseline's, one by one: {same} ({len(ours_json['events'])} events)")
            if not same:
                raise SystemExit("MISMATCH with the baseline's events")
            if ours_json["series"] != base_json["series"]:
                raise SystemExit("MISMATCH with the baseline's derived series")
            print("derived series identical too")
        if args.runs:
            ours_runs = json.loads(outputs["analyze --json of --runs"].read_text())
            base_runs = json.loads(outputs["baseline on --runs"].read_text())
            if ours_runs != base_runs:
                raise SystemExit(f"MISMATCH with the baseline on the runs under {args.runs}")
            count = len(ours_runs) if "events" not in ours_runs else 1
            print(f"runs under {args.runs}: events and series identical to the baseline's on all {count}")


if __name__ == "__main__":
    main()
