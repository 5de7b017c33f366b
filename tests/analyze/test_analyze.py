"""`trainvitals analyze`: the same detectors over CSV / JSONL / TensorBoard logs."""
import json

import pandas as pd
import pytest
from helpers import run_cli
from torch.utils.tensorboard import SummaryWriter


def _analyze_json(*args):
    return json.loads(run_cli("analyze", *args, "--json").stdout)


def test_step_csv_gives_the_ema_series_and_nonfinite_events(tmp_path):
    losses = [3.0, 2.8, 2.9, float("nan"), 2.7, 2.5, float("inf"), float("nan"), 2.4]
    csv = tmp_path / "run.csv"
    csv.write_text("step,train/step_loss\n" + "".join(f"{i + 1},{v}\n" for i, v in enumerate(losses)))
    for alpha, init, adjust in ((0.99, "debiased", True), (0.5, "first", False)):
        out = _analyze_json(str(csv), "--ema-alpha", str(alpha), "--ema-init", init)
        ema = out["series"]["train/step_loss_ema"]
        finite = pd.Series([v for v in losses if v == v and abs(v) != float("inf")])
        expected = finite.ewm(alpha=1 - alpha, adjust=adjust).mean().tolist()
        assert [s for s, _ in ema] == [1, 2, 3, 5, 6, 9]
        assert [v for _, v in ema] == pytest.approx(expected, rel=1e-12)
        alerts = [e for e in out["events"] if e["kind"] == "nonfinite_loss" and e["severity"] == "alert"]
        assert [e["step"] for e in alerts] == [4, 7], "one alert per run of non-finite steps"


def test_epoch_csv_scenario_3_reports_overfitting(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,train/epoch_loss,val/loss\n0,3.5,3.6\n1,2.1,2.8\n2,1.2,2.6\n3,0.8,2.7\n")
    human = run_cli("analyze", str(csv)).stdout
    assert "POST-EPOCH EVALUATION (Epoch 3)" in human and "Overfitting" in human
    out = _analyze_json(str(csv), "--evaluation-epochs", "3")
    kinds = {(e["kind"], e["epoch"]) for e in out["events"]}
    assert ("overfitting", 3) in kinds and not any(k == "underfitting" for k, _ in kinds)
    assert [p[0] for p in out["series"]["evaluation/train_val_gap"]] == [0, 1, 2, 3]


def test_multi_run_directory_prints_one_row_per_run(tmp_path):
    for name, losses in (("good", [3.0 - 0.01 * i for i in range(100)]),
                         ("bad", [3.0 - 0.01 * i for i in range(60)] + [float("nan")] * 40)):
        with SummaryWriter(str(tmp_path / name)) as w:
            for i, v in enumerate(losses, 1):
                w.add_scalar("train/step_loss", v, i)
    out = run_cli("analyze", str(tmp_path)).stdout.splitlines()
    assert out[0].split()[:2] == ["run", "steps"]
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"good", "bad"}
    assert "nonfinite_loss@61" in rows["bad"] and rows["good"].rstrip().endswith("none")
    as_json = _analyze_json(str(tmp_path))
    assert set(as_json) == {"good", "bad"} and "events" in as_json["bad"]


def test_unreadable_path_is_one_line_exit_2(tmp_path):
    proc = run_cli("analyze", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_analyze_defaults_are_the_trainers():
    # `analyze` must replay a run with the thresholds the trainer used live
    import dataclasses

    from trainvitals.analyze.replay import AnalyzeConfig
    from trainvitals.config import TrainerConfig
    trainer = TrainerConfig()
    shared = [f.name for f in dataclasses.fields(AnalyzeConfig) if hasattr(trainer, f.name)
              and f.name not in ("lr", "gradient_clip", "warmup_steps")]  # run facts, read from the run
    assert len(shared) >= 8
    for name in shared:
        assert getattr(AnalyzeConfig(), name) == getattr(trainer, name), name


def test_replay_finds_a_parameter_that_never_moves():
    # the weight monitor logs each parameter's update ratio; exactly 0 = not updated
    from trainvitals.analyze.readers import RunLog
    from trainvitals.analyze.replay import AnalyzeConfig, replay
    steps = [1, 4, 7, 10]
    log = RunLog("r", {"weight_monitor/update_ratio/blocks.2.w": [(s, 0.0) for s in steps],
                       "weight_monitor/update_ratio/blocks.1.w": [(s, 1e-3) for s in steps]})
    events = [e for e in replay(log, AnalyzeConfig()).events if e.kind == "frozen_parameters"]
    assert [(e.step, e.severity) for e in events] == [(7, "warning")]  # 3 checks in a row
    assert "blocks.2.w" in events[0].message and "blocks.1.w" not in events[0].message
