"""auto_adjust in the framework hosts, with the real libraries: Lightning restores the
state in place from the callback and trains on; HF's loop cannot be rewound from a
callback, so the run stops, naming where to resume and which batches to skip."""
import torch

from hosts import run_hf, run_lightning
from trainvitals.monitor.config import MonitorConfig

CONFIG = MonitorConfig(auto_adjust=True)
BLOW_UP = (30,)  # the 30th training forward returns its loss x 1e4: a loss spike at step 30


def test_lightning_rolls_back_in_place_and_finishes(tmp_path):
    events, series = run_lightning(BLOW_UP, tmp_path, CONFIG)
    (action,) = [e for e in events if e.kind == "action"]
    r = action.values
    assert (r["trigger_step"], r["restored_step"], r["skipped_steps"]) == (30, 20, [21, 30])
    losses = series["train/step_loss"]
    assert [s for s, _ in losses][-1] == 40  # it trained to the end
    assert all(torch.isfinite(torch.tensor(v)) for s, v in losses if s > 30)


def test_hf_stops_and_names_where_to_resume(tmp_path):
    events, series = run_hf(BLOW_UP, tmp_path, CONFIG)
    (action,) = [e for e in events if e.kind == "action"]
    assert "resume from a checkpoint taken before step 30" in action.message
    assert "skip the batches from there to step 30" in action.message
    assert max(s for s, _ in series["train/step_loss"]) == 30  # stopped at the trigger's logging step
