"""The JSONL sink writes its lines once a flush, in the order they came, and loses none."""
import json
import subprocess
import sys

from trainvitals.events import WARNING, Event
from trainvitals.sinks.jsonl import JSONLSink


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_keep_their_order_across_scalars_and_events(tmp_path):
    sink = JSONLSink(tmp_path / "m.jsonl")
    sink.log("train/step_loss", 2.0, 1)
    sink.emit(Event("loss_spike", WARNING, "spike", 1))
    sink.log("train/step_loss", float("nan"), 2)
    sink.flush()
    got = records(tmp_path / "m.jsonl")
    assert [r["type"] for r in got] == ["scalar", "event", "scalar"]
    assert got[2]["value"] == "nan" and got[0]["value"] == 2.0
    sink.log("train/step_loss", 1.5, 3)
    sink.close()
    assert records(tmp_path / "m.jsonl")[-1]["step"] == 3


def test_a_sink_never_closed_loses_nothing(tmp_path):
    path = tmp_path / "m.jsonl"
    script = ("from trainvitals.sinks.jsonl import JSONLSink\n"
              f"s = JSONLSink({str(path)!r})\n"
              "for step in range(1, 6):\n"
              "    s.log('train/step_loss', 1.0 / step, step)\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    assert [r["step"] for r in records(path)] == [1, 2, 3, 4, 5]
