"""The detection benchmark's scoring replays a run through `trainvitals analyze`'s code;
its table is only honest if that replay raises the alerts the trainer raised live."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "detection"))

from generate import generate  # noqa: E402
from scenarios import RunSpec  # noqa: E402
from scoring import load_run, replay_suite  # noqa: E402

TINY = {"n_layers": 2, "d_model": 32, "n_heads": 2, "block_size": 32}


def _alerts(events):
    return {(e.kind, e.step) for e in events if e.severity == "alert"}


def test_replay_raises_the_alerts_the_trainer_raised_live(tmp_path):
    spec = RunSpec("tiny-lr-too-high", "lr_too_high", "tune", 3, "lm", TINY,
                   {"epochs": 2, "steps_per_epoch": 60, "batch_size": 8, "lr": 0.3, "warmup_steps": 0})
    run = load_run(generate(spec, tmp_path))
    live = _alerts(run.live)
    assert live, "lr 0.3 should alert"
    assert _alerts(replay_suite(run)) == live
