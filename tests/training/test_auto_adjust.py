"""`trainvitals train-lm --auto-adjust`: a run that fails is rolled back, its batches
skipped and its LR cut by advise's change; it says so on the console, in the JSONL log,
the report and rollbacks.json; `--resume` keeps the rollbacks made."""
import json
import shutil

import pytest

from helpers import TINY, run_cli
from trainvitals.training.snapshot import latest_snapshot, read_snapshot

# LR 0.5 from the first step: the loss climbs above its initial level at step 3
FAILING = [*TINY, "--auto-adjust", "--lr", "0.5", "--warmup-steps", "0", "--steps-per-epoch", "30"]


@pytest.fixture(scope="module")
def healed(tmp_path_factory):
    d = tmp_path_factory.mktemp("heal") / "run"
    proc = run_cli("train-lm", *FAILING, "--epochs", "1", "--logdir", str(d))
    return d, proc


def test_a_failing_run_is_rolled_back_its_lr_cut_and_it_finishes(healed):
    d, proc = healed
    (r,) = json.loads((d / "rollbacks.json").read_text())["rollbacks"]
    assert r["restored_step"] == 0 and r["skipped_steps"] == [1, r["at_step"]]
    assert r["lr_before"] == 0.5 and r["lr_after"] == pytest.approx(3e-3)  # advise: /10, to the usual AdamW top
    assert "auto_adjust: rollback 1/3" in proc.stdout and "Training stopped: completed" in proc.stdout
    records = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    actions = [x for x in records if x.get("type") == "event" and x["kind"] == "action"]
    assert actions and actions[0]["values"]["skipped_steps"] == r["skipped_steps"]
    lrs = [x["value"] for x in records if x.get("tag") == "train/lr" and x["step"] > r["at_step"]]
    assert lrs and max(lrs) <= 3e-3 * 1.0001  # the cut applies from the next step
    losses = [x["value"] for x in records if x.get("tag") == "train/step_loss"]
    assert losses[-1] < 5.545  # below a uniform prediction again: it learns
    assert "## Actions taken" in (d / "report.md").read_text()


def test_resume_keeps_the_rollbacks_made(healed):
    d, _ = healed
    before = json.loads((d / "rollbacks.json").read_text())["rollbacks"]
    run_cli("train-lm", *FAILING, "--epochs", "2", "--resume", "--logdir", str(d))
    saved = read_snapshot(latest_snapshot(d / "snapshots"))
    assert saved["monitor"]["rollback"]["done"][:1] == before
    assert json.loads((d / "rollbacks.json").read_text())["rollbacks"][:1] == before
    assert saved["monitor"]["lr_scale"] == pytest.approx(3e-3 / 0.5)  # the cut survives the resume


def test_resume_takes_the_given_max_rollbacks_and_keeps_the_count(healed, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(healed[0], d)
    before = json.loads((d / "rollbacks.json").read_text())["rollbacks"]
    proc = run_cli("train-lm", *FAILING, "--epochs", "2", "--resume", "--max-rollbacks", "7", "--logdir", str(d))
    assert "cannot be changed" not in proc.stderr
    saved = read_snapshot(latest_snapshot(d / "snapshots"))
    assert saved["trainer_config"]["max_rollbacks"] == 7
    assert saved["monitor"]["rollback"]["done"][:1] == before
