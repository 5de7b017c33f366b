"""`trainvitals analyze` replays a log through the monitor's own parts, so on a log our
trainer wrote it must raise, one by one, the events the trainer raised live: same kind,
severity, step, message and advice, and the values up to the float32 TensorBoard stores
the scalars in. (Only the epoch of a step-level event is not in the log.) This holds whatever shortcut the replay or a detector takes for speed,
and whether the loss and gradient halves of the replay run in turn or side by side in two processes."""
import json

import pytest
from helpers import TINY, run_cli

from trainvitals.analyze import replay as replay_module
from trainvitals.analyze.beside import can_fork
from trainvitals.analyze.readers import read_run
from trainvitals.analyze.replay import AnalyzeConfig, replay


def _live_events(logdir):
    lines = (json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines())
    return [{k: v for k, v in r.items() if k != "type"} for r in lines if r.get("type") == "event"]


def _comparable(event):
    e = dict(event)
    if e.get("step") is not None:
        e.pop("epoch", None)  # a gradient or loss event's epoch: the log does not say
    values = e.pop("values")
    return json.dumps(e, sort_keys=True), {k: pytest.approx(v, rel=1e-6, nan_ok=True) if isinstance(v, float) else v
                                           for k, v in values.items()}


@pytest.mark.parametrize("lr", ["3e-3", "0.3"], ids=["healthy", "too-high-lr"])
def test_replay_raises_the_events_the_trainer_raised_live(tmp_path, lr, monkeypatch):
    logdir = tmp_path / "run"
    run_cli("train-lm", *TINY, "--epochs", "2", "--steps-per-epoch", "30", "--lr", lr, "--warmup-steps", "0",
            "--log-every", "1", "--logdir", str(logdir))
    live = _live_events(logdir)
    (logdir / "metrics.jsonl").unlink()  # replay from the TensorBoard file alone (our sink's layout)
    replayed = json.loads(run_cli("analyze", str(logdir), "--json").stdout)["events"]
    if lr == "0.3":
        assert any(e["severity"] == "alert" for e in live), "lr 0.3 should alert"
    _assert_same_events(replayed, live)
    if can_fork():  # the halves side by side, as a long log runs them: the same events and series
        in_turn = replay(read_run(logdir), AnalyzeConfig())
        monkeypatch.setattr(replay_module, "_SIDE_BY_SIDE_MIN_STEPS", 0)
        side_by_side = replay(read_run(logdir), AnalyzeConfig())
        _assert_same_events([e.to_dict() for e in side_by_side.events], live)
        assert [e.to_dict() for e in side_by_side.events] == [e.to_dict() for e in in_turn.events]
        assert list(side_by_side.series) == list(in_turn.series)  # the --json order too
        assert side_by_side.series == in_turn.series and side_by_side.problems == in_turn.problems


def _assert_same_events(replayed, live):
    assert len(replayed) == len(live)
    for got, want in zip(map(_comparable, replayed), map(_comparable, live)):
        assert got[0] == want[0]
        assert want[1] == got[1], got[0]
