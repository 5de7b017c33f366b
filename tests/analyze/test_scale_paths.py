"""The paths that make `analyze` fast on long runs give the same answers as the plain ones:
our sink's many-scalars-an-event layout read like TensorBoard reads it, series held as
arrays behaving as lists, `--json` written in blocks as `json.dumps` writes it, and the
progress bars shown on a terminal only."""
import io
import json
import math
import sys

import numpy as np
import pytest
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from test_readers import accumulator_series, assert_same

from trainvitals.analyze import command, repeats, tfrecord
from trainvitals.analyze.beside import Beside, can_fork
from trainvitals.analyze.command import analyze, write_json
from trainvitals.analyze.points import Points
from trainvitals.analyze.readers import read_run
from trainvitals.analyze import replay as replay_module
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.sinks.tensorboard import TensorBoardSink

TAGS = ["train/step_loss", "train/lr", "gradient_monitor/grad_norm", "gradient_monitor/gain/0",
        "gradient_monitor/gain/1"]


def write_sink_log(logdir, steps=400):
    sink = TensorBoardSink(logdir)
    rng = np.random.default_rng(0)
    for step in range(1, steps + 1):
        for k, tag in enumerate(TAGS):
            value = math.nan if (k == 0 and step == 250) else 2.0 + k + rng.standard_normal() * 0.1
            sink.log(tag, value, step)
    sink.close()
    return logdir


def test_our_sinks_log_reads_like_event_accumulator_on_the_fast_path(tmp_path, monkeypatch):
    logdir = write_sink_log(tmp_path / "run")
    parsed = []
    real = tfrecord._Slow.add
    monkeypatch.setattr(tfrecord._Slow, "add", lambda self, data, seq: (parsed.append(seq), real(self, data, seq)))
    run = read_run(logdir)
    assert run.problems == []
    assert_same(run.series, accumulator_series(logdir))
    assert all(len(v) == 400 for v in run.series.values()) and len(run.series) == 5
    assert len(parsed) < 10  # the file version, layout and settings texts: not the 400 scalar events


def test_records_repeating_one_layout_read_like_event_accumulator_where_one_breaks_it(tmp_path, monkeypatch):
    # stretches of one layout are decoded from their first record; a record of the same
    # length but another tag, one with its fields in another order, a step varint that
    # grows a byte (step 128) and a truncated last record must all read as TensorBoard reads them
    def event(step, tags=("loss", "lr")):
        return Event(wall_time=1.7e9 + step, step=step, summary=Summary(value=[
            Summary.Value(tag=t, simple_value=step * (k + 1) * 0.5) for k, t in enumerate(tags)]))
    datas = [event(s).SerializeToString() for s in range(1, 1200)]
    datas[600] = event(601, ("lsos", "lr")).SerializeToString()  # same length, another tag
    at = datas[699].index(b"\x0a\x02lr\x15")  # the same fields in another order (protobuf allows it)
    datas[699] = datas[699][:at] + b"\x15" + datas[699][at + 5:at + 9] + b"\x0a\x02lr" + datas[699][at + 9:]
    path = tmp_path / "events.out.tfevents.1.host"
    tfrecord.write_records(path, datas)
    path.write_bytes(path.read_bytes()[:-5])
    decoded = []
    real = repeats.decode_run
    monkeypatch.setattr(repeats, "decode_run", lambda *a: (lambda r: (decoded.append(r[0]), r)[1])(real(*a)))
    run = read_run(tmp_path)
    assert_same(run.series, accumulator_series(tmp_path))
    assert run.series["lsos"] == [(601, 601 * 0.5)] and run.series["lr"][699] == (700, 700.0)
    assert sum(decoded) > 1000 and run.problems == [f"{path.name}: truncated after 1198 records"]


def test_an_event_mixing_scalars_with_other_values_reads_like_protobuf(tmp_path):
    text = Summary.Value(tag="note", metadata={"plugin_data": {"plugin_name": "text"}})
    text.tensor.dtype, text.tensor.string_val[:] = 7, [b"hello"]
    datas = [Event(wall_time=1.0, step=s, summary=Summary(value=[
        Summary.Value(tag="a", simple_value=s), *([text] if s == 2 else []),
        Summary.Value(tag="b" * 130, simple_value=-s)])).SerializeToString() for s in range(4)]
    tfrecord.write_records(tmp_path / "events.out.tfevents.1.host", datas)
    got = read_run(tmp_path).series
    assert got == {"a": [(s, float(s)) for s in range(4)], "b" * 130: [(s, -float(s)) for s in range(4)]}


def test_points_read_as_the_list_of_pairs_they_hold():
    pairs = [(1, 0.5), (2, math.inf), (5, -1.0)]
    p = Points.of(pairs)
    assert p == pairs and list(p) == pairs and dict(p) == dict(pairs)
    assert p[-1] == (5, -1.0) and p[1:] == pairs[1:] and len(p) == 3 and p
    assert not Points.of([]) and Points.of([(1, math.nan)]) != [(1, math.nan)]  # as a list of NaN floats


def _plain_json(results):
    def one(a):
        return {"events": [e.to_dict() for e in a.events],
                "series": {t: [[s, v if math.isfinite(v) else str(v)] for s, v in pts] for t, pts in a.series.items()}}
    payload = one(next(iter(results.values()))) if len(results) == 1 else {n: one(a) for n, a in results.items()}
    return json.dumps(payload) + "\n"


def test_json_written_in_blocks_is_the_text_json_dumps_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "_JSON_BLOCK", 7)
    a = replay(read_run(write_sink_log(tmp_path / "run", steps=60)), AnalyzeConfig())
    a.series["evaluation/odd"] = Points.of([(1, math.nan), (2, math.inf), (3, 1e-300)])
    for results in ({"run": a}, {"run": a, "other \"run\"": a}):
        out = io.StringIO()
        write_json(results, out)
        assert out.getvalue() == _plain_json(results)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("side_by_side", [False, True], ids=["in-turn", "side-by-side"])
def test_progress_bars_on_a_terminal_only(tmp_path, monkeypatch, side_by_side):
    logdir = write_sink_log(tmp_path / "run", steps=100)
    monkeypatch.setattr(command, "_BAR_DELAY_S", 0.0)  # a real analyze this short shows none
    if side_by_side:  # as a long log replays: the other half's steps counted from its process
        monkeypatch.setattr(replay_module, "_SIDE_BY_SIDE_MIN_STEPS", 0)
    for out, as_json, shown in ((_Terminal(), False, True), (io.StringIO(), False, False),
                                (_Terminal(), True, False)):
        err = _Terminal()
        monkeypatch.setattr(sys, "stderr", err)
        assert analyze(str(logdir), AnalyzeConfig(), as_json=as_json, out=out) == 0
        bars = err.getvalue()
        assert ("reading" in bars and "replay" in bars and "/200 " in bars) == shown, bars  # 200 steps fed
        assert shown or bars == ""


def test_an_error_in_the_side_by_side_half_is_raised_as_it_is():
    if not can_fork():
        pytest.skip("no fork here: the halves run in turn")

    def job(tick):
        tick(3)
        raise ValueError("bad value 7 in the gradient half")
    ticks = []
    other = Beside(job, ticks.append)
    with pytest.raises(ValueError, match="bad value 7 in the gradient half"):
        other.result()
    assert sum(ticks) == 3  # its progress came through before the error
