"""A short real training run, read back through TensorBoard's own reader and the JSONL log."""
import math

import pytest
from helpers import TINY, jsonl_scalars, run_cli, tb_scalars


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("run")
    proc = run_cli("train-lm", *TINY, "--epochs", "3", "--steps-per-epoch", "20", "--lr", "3e-3",
                   "--warmup-steps", "5", "--logdir", str(logdir))
    return logdir, proc


def test_loss_falls_and_every_step_is_logged(run):
    logdir, _ = run
    tb = tb_scalars(logdir)
    steps = [s for s, _ in tb["train/step_loss"]]
    assert steps == list(range(1, 61)), "one point per optimizer step, numbered from 1"
    assert [s for s, _ in tb["train/lr"]] == steps
    losses = [v for _, v in tb["train/step_loss"]]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10
    assert len(tb["train/epoch_loss"]) == 3 and len(tb["val/loss"]) == 3
    val = [v for _, v in tb["val/loss"]]
    assert val[-1] < val[0]


def test_jsonl_and_tensorboard_agree(run):
    logdir, _ = run
    tb, js = tb_scalars(logdir), jsonl_scalars(logdir / "metrics.jsonl")
    assert set(js) == set(tb)
    for tag in tb:
        assert [s for s, _ in js[tag]] == [s for s, _ in tb[tag]], tag
        for (_, a), (_, b) in zip(js[tag], tb[tag]):
            same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
            assert same, (tag, a, b)  # TB stores float32


def test_console_and_summary(run):
    logdir, proc = run
    assert "Epoch 0 | Step 10/60 | Loss:" in proc.stdout
    assert f"tensorboard --logdir {logdir}" in proc.stdout
    assert "snapshots" in proc.stdout and (logdir / "snapshots" / "best.pt").is_file()


def test_report_is_written_at_the_end(run):
    logdir, proc = run
    png, md = logdir / "report.png", logdir / "report.md"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = md.read_text()
    assert "# Run report" in text and "optimizer steps: 60" in text and "## Events" in text
    assert str(md) in proc.stdout


def test_sample_prints_a_continuation(run):
    logdir, _ = run
    out = run_cli("sample", "--snapshot", str(logdir / "snapshots" / "best.pt"), "--prompt", "The ",
                  "--max-new-tokens", "40").stdout
    assert out.startswith("The ") and len(out.rstrip("\n")) >= 20


def test_analyze_replays_the_same_ema_as_the_live_run(run):
    """One implementation of each detector: the offline EMA equals the logged live one."""
    import json
    logdir, _ = run
    out = json.loads(run_cli("analyze", str(logdir), "--json").stdout)
    live = tb_scalars(logdir)["train/step_loss_ema"]
    offline = out["series"]["train/step_loss_ema"]
    assert [s for s, _ in offline] == [s for s, _ in live]
    for (_, a), (_, b) in zip(offline, live):
        assert math.isclose(a, b, rel_tol=1e-6)  # TB stores float32
