"""How fast `trainvitals analyze` reads scalars: `read_run` against TensorBoard's own
EventAccumulator, on one event file of N scalars (10 tags), in the same process.

    python benchmarks/read_scalars.py [--n-scalars 1000000] [--tags 10] [--batched]

The file is written directly as TFRecords (SummaryWriter would take minutes), in the
exact bytes `SummaryWriter.add_scalar` produces, or with `--batched` as our
`TensorBoardSink` writes: one event a step holding every tag's value. Both readers
must return the same values.
"""
from __future__ import annotations

import argparse
import math
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary

from trainvitals.analyze.readers import read_run
from trainvitals.analyze.tfrecord import write_records

TAGS = ["train/step_loss", "train/step_loss_ema", "train/lr", "gradient_monitor/mean_gain",
        "gradient_monitor/grad_norm", "gradient_monitor/mean_gain_ma",
        "gradient_monitor/mean_gain_drift", "gradient_monitor/gain/blocks.0",
        "gradient_monitor/gain/blocks.1", "weight_monitor/frozen_params"]


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _summary_head(tag: str) -> bytes:
    """The serialized `summary` field of one simple_value, without its 4 value bytes."""
    value = Summary(value=[Summary.Value(tag=tag, simple_value=0.0)]).SerializeToString()
    return b"\x2a" + _varint(len(value)) + value[:-4]


def make_batched_log(logdir: Path, n_scalars: int, tags: list[str]) -> Path:
    values = np.random.default_rng(0).standard_normal(n_scalars).astype("<f4")
    values[::9973] = np.nan
    datas = [Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()]
    n = len(tags)
    for step in range(-(-n_scalars // n)):
        vals = [Summary.Value(tag=t, simple_value=float(values[step * n + k]))
                for k, t in enumerate(tags) if step * n + k < n_scalars]
        datas.append(Event(wall_time=1.7e9 + step * 0.01, step=step, summary=Summary(value=vals)).SerializeToString())
    path = logdir / "events.out.tfevents.1700000000.bench.1.0"
    write_records(path, datas)
    return path


def make_log(logdir: Path, n_scalars: int, n_tags: int, batched: bool = False) -> Path:
    tags = [TAGS[i] if i < len(TAGS) else f"extra/tag_{i}" for i in range(n_tags)]
    if batched:
        return make_batched_log(logdir, n_scalars, tags)
    heads = [_summary_head(t) for t in tags]
    values = np.random.default_rng(0).standard_normal(n_scalars).astype("<f4")
    values[::9973] = np.nan  # a few non-finite values, as real runs have
    raw = values.tobytes()
    datas = [Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()]
    for step in range(-(-n_scalars // n_tags)):
        prefix = b"\x09" + struct.pack("<d", 1.7e9 + step * 0.01)
        prefix += b"\x10" + _varint(step) if step else b""  # protobuf omits a zero step
        for k, head in enumerate(heads):
            i = step * n_tags + k
            if i < n_scalars:
                datas.append(prefix + head + raw[4 * i:4 * i + 4])
    i = len(datas) // 2  # the hand-made bytes are what protobuf itself writes
    step, k = divmod(i - 1, n_tags)
    want = Event(wall_time=1.7e9 + step * 0.01, step=step, summary=Summary(value=[
        Summary.Value(tag=tags[k], simple_value=float(values[i - 1]))])).SerializeToString()
    if datas[i] != want:
        raise SystemExit("benchmark event bytes differ from protobuf's serialization")
    path = logdir / "events.out.tfevents.1700000000.bench.1.0"
    write_records(path, datas)
    return path


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def accumulator_series(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        len(a[t]) == len(b[t]) and all(s == z and (x == y or math.isnan(x) and math.isnan(y))
                                       for (s, x), (z, y) in zip(a[t], b[t])) for t in a)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-scalars", type=int, default=1_000_000)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--batched", action="store_true", help="one event a step holding every tag (our sink)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        write_s, path = timed(lambda: make_log(Path(tmp), args.n_scalars, args.tags, args.batched))
        print(f"wrote {args.n_scalars:,} scalars ({path.stat().st_size / 2**20:.1f} MiB, "
              f"{'one event a step' if args.batched else 'one event a scalar'}) in {write_s:.1f} s")
        ours_s, run = timed(lambda: read_run(tmp))
        base_s, base = timed(lambda: accumulator_series(Path(tmp)))
    n = sum(len(v) for v in run.series.values())
    if n != args.n_scalars or run.problems or not same(run.series, base):
        raise SystemExit(f"MISMATCH: read_run gave {n} scalars, problems {run.problems}")
    print(f"\n{'reader':<28}{'seconds':>9}{'scalars/s':>14}")
    for name, secs in [("trainvitals read_run", ours_s), ("EventAccumulator", base_s)]:
        print(f"{name:<28}{secs:>9.2f}{n / secs:>14,.0f}")
    print(f"\nread_run is {base_s / ours_s:.1f}x faster; both returned the same {n:,} values")


if __name__ == "__main__":
    main()
