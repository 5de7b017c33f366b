import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from trainvitals.analyze import tfrecord
from trainvitals.analyze.readers import read_run, read_runs
from trainvitals.analyze.roles import apply_roles
from trainvitals.errors import ConfigError


def write_tb(logdir, steps=300, tags=("train/step_loss", "train/lr", "val/loss"), start=0,
             offset=0.0, extras=True, **kwargs):
    w = SummaryWriter(str(logdir), **kwargs)
    for step in range(start, start + steps):
        for i, tag in enumerate(tags):
            value = float("nan") if (tag == "val/loss" and step == 7) else offset + i + step / 10
            w.add_scalar(tag, value, step)
    if extras:
        w.add_text("notes", "not a scalar", 1)
        w.add_histogram("weights", np.arange(10.0), 1)
    w.close()
    return logdir


def accumulator_series(logdir):
    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    ea.Reload()
    return {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        for (_, a), (_, b) in zip(got[tag], want[tag]):
            assert a == b or (math.isnan(a) and math.isnan(b)), tag


def only_event_file(logdir):
    (f,) = Path(logdir).glob("events.out.tfevents.*")
    return f


@pytest.fixture(scope="module")
def tb_dir(tmp_path_factory):
    return write_tb(tmp_path_factory.mktemp("tb") / "run")


def test_summarywriter_log_reads_like_event_accumulator(tb_dir):
    run = read_run(tb_dir)
    assert run.problems == [] and run.index == "step" and not run.empty
    assert_same(run.series, accumulator_series(tb_dir))
    assert len(run.series["train/lr"]) == 300
    assert math.isnan(dict(run.series["val/loss"])[7])


def test_records_split_across_read_chunks_read_the_same(tb_dir, monkeypatch):
    monkeypatch.setattr(tfrecord, "CHUNK_BYTES", 97)
    assert_same(read_run(tb_dir).series, accumulator_series(tb_dir))


def test_single_event_file_and_check_crc(tb_dir):
    run = read_run(only_event_file(tb_dir), check_crc=True)
    assert run.name == "run" and run.problems == []
    assert_same(run.series, accumulator_series(tb_dir))


def test_unusual_records_decode_like_protobuf(tmp_path):
    # steps and tag lengths at the edges of the vectorised parse; the last has no wall_time
    steps = [0, 1, 127, 128, 2**14, 2**40, -5]
    tags = ["a", "12345678", "123456789", "x" * 100, "é/ü", "y" * 200]
    datas, want = [], {}
    for step in steps:
        for k, tag in enumerate(tags):
            value = step / 3 + k
            datas.append(Event(wall_time=1.7e9, step=step, summary=Summary(
                value=[Summary.Value(tag=tag, simple_value=value)])).SerializeToString())
            want.setdefault(tag, []).append((step, float(np.float32(value))))
    datas.append(Event(step=3, summary=Summary(value=[
        Summary.Value(tag="two", simple_value=1.0), Summary.Value(tag="a", simple_value=2.0)])
    ).SerializeToString())
    want["two"] = [(3, 1.0)]
    want["a"].append((3, 2.0))
    datas.insert(5, Event(file_version="x" * 70_000).SerializeToString())  # a 64 KiB+ record
    tfrecord.write_records(tmp_path / "events.out.tfevents.1.host", datas)
    got = read_run(tmp_path).series
    assert got == {t: sorted(v) for t, v in want.items()}


def test_tags_whose_hashes_collide_stay_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(tfrecord, "_HASH_MUL", np.uint64(0))  # key = the last 8 bytes only
    tags = ["aaaaaaaa/loss/12", "bbbbbbbb/loss/12"]
    datas = [Event(wall_time=1.0, step=s, summary=Summary(value=[
        Summary.Value(tag=t, simple_value=k)])).SerializeToString()
        for s in range(4) for k, t in enumerate(tags)]
    tfrecord.write_records(tmp_path / "events.out.tfevents.1.host", datas)
    assert read_run(tmp_path).series == {t: [(s, float(k)) for s in range(4)]
                                         for k, t in enumerate(tags)}


def test_records_that_are_not_events_are_reported(tmp_path):
    good = Event(step=1, summary=Summary(value=[Summary.Value(tag="x", simple_value=1.0)]))
    tfrecord.write_records(tmp_path / "events.out.tfevents.1.host",
                           [b"\xff\xff\xff", good.SerializeToString(), b"\x0a\x7f"])
    run = read_run(tmp_path)
    assert run.series == {"x": [(1, 1.0)]}
    assert run.problems == ["events.out.tfevents.1.host: 2 records are not Event protobufs"]


def test_tensor_valued_scalars_are_read(tmp_path):
    w = SummaryWriter(str(tmp_path))
    for step in range(5):
        w.add_scalar("new/style", step * 0.5, step, new_style=True)
    w.close()
    assert read_run(tmp_path).series == {"new/style": [(s, s * 0.5) for s in range(5)]}


def test_truncated_event_file_keeps_earlier_records(tmp_path):
    full_dir = write_tb(tmp_path / "full", extras=False)  # the last record: val/loss, step 299
    data = only_event_file(full_dir).read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "events.out.tfevents.1.cut").write_bytes(data[:-37])
    run = read_run(tmp_path / "cut")
    # 901 records: the file version, then 300 steps x 3 tags; the last one is cut
    assert run.problems == ["events.out.tfevents.1.cut: truncated after 900 records"]
    want = accumulator_series(full_dir)
    want["val/loss"].pop()
    assert_same(run.series, want)


def test_corrupt_header_stops_reading_there(tb_dir, tmp_path):
    data = bytearray(only_event_file(tb_dir).read_bytes())
    at = len(data) // 2
    # find the record boundary at or after the middle by walking the framing
    pos = 0
    while pos < at:
        pos += int.from_bytes(data[pos:pos + 8], "little") + 16
    data[pos + 9] ^= 0xFF  # the length checksum of that record
    (tmp_path / "events.out.tfevents.2.bad").write_bytes(bytes(data))
    run = read_run(tmp_path)
    assert len(run.problems) == 1 and "corrupt record after" in run.problems[0]
    assert 0 < sum(map(len, run.series.values())) < 900


def test_flipped_data_byte_is_caught_with_check_crc(tb_dir, tmp_path):
    data = bytearray(only_event_file(tb_dir).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "events.out.tfevents.3.flip").write_bytes(bytes(data))
    assert read_run(tmp_path).problems == []  # fast default: data not checked
    checked = read_run(tmp_path, check_crc=True)
    assert len(checked.problems) == 1 and "corrupt record after" in checked.problems[0]


@pytest.mark.parametrize("content", [b"", b"garbage", b"not an event file at all" * 100,
                                     bytes(range(256)) * 40])
def test_garbage_event_file_is_a_problem_not_an_exception(tmp_path, content):
    (tmp_path / "events.out.tfevents.9.junk").write_bytes(content)
    run = read_run(tmp_path)
    assert run.empty and run.series == {}
    assert len(run.problems) == (1 if content else 0)


def test_multi_run_directory(tmp_path):
    for name in ["b", "a", "group/c"]:
        write_tb(tmp_path / name, steps=20)
    runs = read_runs(tmp_path)
    assert list(runs) == ["a", "b", "group/c"]
    assert runs["group/c"].name == "group/c" and len(runs["a"].series["train/lr"]) == 20
    assert list(read_runs(tmp_path / "a")) == ["a"]


def _restarted(logdir, *runs):
    """Event files written one after the other (a run restarted in its log directory),
    named so they sort in that order as TensorBoard's would: the writer's own names carry
    a process-wide counter that sorts "10" before "9"."""
    for i, kwargs in enumerate(runs):
        write_tb(logdir / f"w{i}", tags=("loss",), **kwargs)
        (made,) = (logdir / f"w{i}").iterdir()
        made.rename(logdir / f"events.out.tfevents.{1000 + i}.host.{i}")
        (logdir / f"w{i}").rmdir()


def test_restart_without_purge_keeps_last_written_value(tmp_path):
    _restarted(tmp_path, dict(steps=50), dict(steps=20, start=40, offset=100.0))
    series = read_run(tmp_path).series["loss"]
    assert [s for s, _ in series] == list(range(60))
    assert dict(series)[45] == pytest.approx(104.5) and dict(series)[30] == pytest.approx(3.0)


def test_restart_with_purge_step_matches_tensorboard(tmp_path):
    _restarted(tmp_path, dict(steps=50), dict(steps=5, start=30, offset=100.0, purge_step=30))
    series = read_run(tmp_path).series
    assert [s for s, _ in series["loss"]] == list(range(35))
    assert_same(series, accumulator_series(tmp_path))


def test_csv_epoch_and_step_formats(tmp_path):
    (tmp_path / "epochs.csv").write_text(
        "epoch,train/epoch_loss,val/loss\n0,3.2,3.5\n1,2.9,\n2,nan,inf\n\n3,2.5,-inf\n")
    run = read_run(tmp_path / "epochs.csv")
    assert run.index == "epoch" and run.name == "epochs" and run.problems == []
    assert run.series["train/epoch_loss"][:2] == [(0, 3.2), (1, 2.9)]
    assert [s for s, _ in run.series["val/loss"]] == [0, 2, 3]  # empty cell = missing
    assert math.isnan(run.series["train/epoch_loss"][2][1])
    assert run.series["val/loss"][1:] == [(2, math.inf), (3, -math.inf)]

    (tmp_path / "steps.csv").write_text("step,loss\n10,1.0\n5,2.0\n10,0.5\nx,1\n12,abc\n")
    run = read_run(tmp_path / "steps.csv")
    assert run.index == "step" and run.series == {"loss": [(5, 2.0), (10, 0.5)]}
    assert run.problems == ["steps.csv line 5: step 'x' is not an integer",
                            "steps.csv line 6: loss 'abc' is not a number"]


def test_csv_with_wrong_header_is_a_config_error(tmp_path):
    (tmp_path / "bad.csv").write_text("time,loss\n1,2\n")
    with pytest.raises(ConfigError, match="bad.csv.*'step' or 'epoch'"):
        read_run(tmp_path / "bad.csv")


def test_jsonl_scalars_events_and_bad_lines(tmp_path):
    event = {"kind": "loss_spike", "severity": "alert", "step": 3, "epoch": 0,
             "message": "loss jumped", "suggestions": ["Reduce learning rate"], "values": {}}
    lines = [
        {"type": "scalar", "tag": "train/step_loss", "step": 1, "value": 2.5, "wall_time": 1.0},
        {"type": "scalar", "tag": "train/step_loss", "step": 2, "value": "nan", "wall_time": 1.0},
        "{not json",
        {"type": "event", **event},
        {"type": "something_new", "step": 4},
        {"type": "scalar", "tag": "train/step_loss", "step": 1, "value": 2.0, "wall_time": 2.0},
        {"type": "scalar", "tag": "train/lr", "step": 1, "value": "-inf", "wall_time": 2.0},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    (tmp_path / "run.jsonl").write_text(text + '\n{"type": "scalar", "tag": "trunc')
    run = read_run(tmp_path / "run.jsonl")
    assert run.problems == ["run.jsonl line 3: not JSON", "run.jsonl line 8: not JSON"]
    assert run.events == [event]
    loss = run.series["train/step_loss"]
    assert loss[0] == (1, 2.0) and loss[1][0] == 2 and math.isnan(loss[1][1])
    assert run.series["train/lr"] == [(1, -math.inf)]
    # a directory holding only this JSONL reads it too
    assert read_run(tmp_path).series.keys() == run.series.keys()


def test_events_come_from_the_jsonl_beside_event_files(tb_dir, tmp_path):
    shutil.copytree(tb_dir, tmp_path / "run")
    event = {"kind": "plateau", "severity": "warning", "step": 5, "message": "flat"}
    (tmp_path / "run" / "metrics.jsonl").write_text(
        json.dumps({"type": "scalar", "tag": "x", "step": 1, "value": 1.0}) + "\n"
        + json.dumps({"type": "event", **event}) + "\n")
    run = read_run(tmp_path / "run")
    assert run.events == [event] and "x" not in run.series


def test_a_loop_directory_of_metrics_and_events_jsonl_reads_as_one_run(tmp_path):
    # a plain loop's layout (our nanoGPT script): scalars and settings in metrics.jsonl, the
    # monitor's events written to events.jsonl at the end, some of them in both
    spike = {"kind": "loss_spike", "severity": "alert", "step": 2, "message": "loss jumped"}
    creep = {"kind": "loss_creep", "severity": "warning", "step": 3, "message": "creeping"}
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"type": "settings", "step": 0, "settings": {"lr": 1e-3, "warmup_steps": 20}},
        {"type": "scalar", "tag": "train/step_loss", "step": 1, "value": 4.5},
        {"type": "scalar", "tag": "train/step_loss", "step": 2, "value": 9.0},
        {"type": "event", **spike})) + "\n")
    (tmp_path / "events.jsonl").write_text(json.dumps({"type": "event", **spike}) + "\n"
                                           + json.dumps({"type": "event", **creep}) + "\n")
    run = read_run(tmp_path)
    assert run.series["train/step_loss"] == [(1, 4.5), (2, 9.0)]
    assert sorted(e["kind"] for e in run.events) == ["loss_creep", "loss_spike"]  # each once
    assert run.settings["lr"] == 1e-3
    # two files of scalars: which is the run is the user's to say, in one line naming them
    (tmp_path / "other.jsonl").write_text(json.dumps(
        {"type": "scalar", "tag": "train/step_loss", "step": 1, "value": 1.0}) + "\n")
    with pytest.raises(ConfigError, match=r"2 .jsonl files here hold scalars \(metrics.jsonl, other.jsonl\)"):
        read_run(tmp_path)


def test_paths_that_are_not_logs_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.*expected a TensorBoard log directory"):
        read_runs(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"expected a TensorBoard log directory"):
        read_runs(tmp_path)  # empty directory
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match=r"notes.txt"):
        read_run(tmp_path / "notes.txt")


def test_hf_training_arguments_give_the_clip_lr_and_warmup_and_ours_win(tmp_path):
    # HF's TensorBoardCallback writes its TrainingArguments as the text `args`
    w = SummaryWriter(str(tmp_path))
    w.add_text("args", json.dumps({"max_grad_norm": 1.0, "learning_rate": 5e-4, "warmup_steps": 50,
                                   "output_dir": "out"}))
    w.add_scalar("train/loss", 2.0, 1)
    w.close()
    settings = apply_roles(read_run(tmp_path)).settings
    assert {k: settings[k] for k in ("gradient_clip", "lr", "warmup_steps")} == \
        {"gradient_clip": 1.0, "lr": 5e-4, "warmup_steps": 50}
    w = SummaryWriter(str(tmp_path))
    w.add_text("run/settings", json.dumps({"gradient_clip": 0.5}))
    w.close()
    assert apply_roles(read_run(tmp_path)).settings["gradient_clip"] == 0.5
