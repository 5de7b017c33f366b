"""The Lightning callback under Lightning's DDP strategy (torchrun, 2 CPU processes):
the step loss is the mean of the ranks' losses, the grad norm the all-reduced one the
module sees, every rank raises the same events, and only rank 0 logs."""
import json

import pytest
from launch import HERE, torchrun

pytest.importorskip("lightning.pytorch")
from trainvitals.analyze.readers import read_run  # noqa: E402


def test_lightning_callback_logs_global_figures_from_rank_zero(tmp_path):
    torchrun(str(HERE / "lightning_worker.py"), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    s = read_run(ranks[0]["logdir"]).series
    steps = [str(st) for st in range(1, 9)]
    mean_loss = [(ranks[0]["losses"][st] + ranks[1]["losses"][st]) / 2 for st in steps]
    assert ranks[0]["losses"]["1"] != pytest.approx(ranks[1]["losses"]["1"])  # the ranks saw other batches
    assert [v for _, v in s["train/step_loss"]] == pytest.approx(mean_loss, rel=1e-6)
    assert [v for _, v in s["gradient_monitor/grad_norm"]] == pytest.approx(
        [ranks[0]["norms"][st] for st in steps], rel=1e-5)
    assert all(v > 0.01 for _, v in s["gradient_monitor/grad_norm"])  # before clipping to 0.01
    assert ranks[0]["events"] == ranks[1]["events"]
    assert len(list((tmp_path / "lightning_logs").iterdir())) == 1
