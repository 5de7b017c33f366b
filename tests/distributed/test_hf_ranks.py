"""The HF callback under HF's own DDP (torchrun, 2 CPU processes, gloo): our figures are
the global ones HF itself logs, and only the main process writes."""
import json

import pytest
from launch import HERE, torchrun

pytest.importorskip("transformers")
from trainvitals.analyze.readers import read_run  # noqa: E402


def test_hf_callback_logs_global_loss_and_grad_norm_from_rank_zero_only(tmp_path):
    torchrun(str(HERE / "hf_worker.py"), str(tmp_path), "--batch", "4")
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = read_run(run_dir).series
    steps = list(range(1, 9))
    # HF reduces its train/loss over the ranks and takes train/grad_norm after DDP's
    # all-reduce, before clipping (max_grad_norm 0.5): ours must be those figures
    assert [st for st, _ in s["train/step_loss"]] == [st for st, _ in s["train/loss"]] == steps
    assert [v for _, v in s["train/step_loss"]] == pytest.approx([v for _, v in s["train/loss"]], rel=1e-5)
    assert [v for _, v in s["gradient_monitor/grad_norm"]] == \
        pytest.approx([v for _, v in s["train/grad_norm"]], rel=1e-5)
    assert all(v > 0.5 for _, v in s["train/grad_norm"])  # clipped steps: read before clipping
    assert len(s["gradient_monitor/gain/transformer.0"]) == 8
    writers = {p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")}
    assert len(writers) == 1, writers  # one process wrote HF's events and ours
    events = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert events[0] == events[1]
