"""Resume: N steps, a fresh process with --resume, N more == 2N straight."""
import json

from helpers import TINY, jsonl_scalars, run_cli, tb_scalars

N = 10
COMMON = [*TINY, "--epochs", "3", "--steps-per-epoch", "7", "--lr-decay-steps", str(2 * N), "--warmup-steps", "4",
          "--log-every", "3"]


def test_resumed_run_equals_uninterrupted(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_cli("train-lm", *COMMON, "--max-steps", str(2 * N), "--logdir", str(straight))
    run_cli("train-lm", *COMMON, "--max-steps", str(N), "--logdir", str(split))
    # a later crash after the snapshot leaves steps the resumed run must not repeat
    with open(split / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"type": "scalar", "tag": "train/step_loss", "step": N + 1, "value": 99.0}) + "\n")
    run_cli("train-lm", "--resume", "--logdir", str(split), "--max-steps", str(2 * N), "--no-progress-bar")

    a, b = jsonl_scalars(straight / "metrics.jsonl"), jsonl_scalars(split / "metrics.jsonl")
    # evaluation/improvement_rate at epoch 1 (step 14) needs epoch 0 from the snapshot's history
    for tag in ("train/step_loss", "train/step_loss_ema", "train/lr", "val/loss", "train/epoch_loss",
                "evaluation/improvement_rate", "gradient_monitor/mean_gain", "gradient_monitor/mean_gain_ma"):
        assert [s for s, _ in a[tag]] == [s for s, _ in b[tag]], tag
        for (_, x), (_, y) in zip(a[tag], b[tag]):
            assert abs(x - y) <= 1e-6 * max(1.0, abs(x)), (tag, x, y)

    tb = tb_scalars(split)
    for tag, points in tb.items():
        steps = [s for s, _ in points]
        assert steps == sorted(set(steps)), f"{tag}: repeated or backwards steps {steps}"
    assert [s for s, _ in tb["train/step_loss"]] == list(range(1, 2 * N + 1))


def test_resume_refuses_changed_config(tmp_path):
    run_cli("train-lm", *COMMON, "--max-steps", "3", "--logdir", str(tmp_path))
    proc = run_cli("train-lm", "--resume", "--logdir", str(tmp_path), "--lr", "0.1", check=False)
    assert proc.returncode == 2
    assert "lr: cannot be changed on --resume" in proc.stderr
