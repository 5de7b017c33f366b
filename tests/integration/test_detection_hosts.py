"""The detection benchmark scores the other hosts from the logs they write: a tiny
GPT-2 under HF `transformers.Trainer` (its TensorBoard run, and its own
trainer_state.json with 10-step mean losses) and our byte GPT under Lightning, each run
by the real library with the TrainvitalsCallback, replayed through `analyze`'s code."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "detection"))

from trainvitals.analyze.replay import AnalyzeConfig, replay  # noqa: E402

from generate import generate  # noqa: E402
from scenarios import RunSpec  # noqa: E402
from scoring import detection_step, failure_step, load_own_log, load_run, replay_suite  # noqa: E402

TINY = {"n_layers": 2, "d_model": 32, "n_heads": 2, "block_size": 16}
SHORT = {"epochs": 2, "steps_per_epoch": 15, "batch_size": 8, "warmup_steps": 0, "logging_steps": 10}


def _alerts(events):
    # nonfinite_gradients needs per-parameter gradient norms, which no log holds
    return {(e.kind, e.step) for e in events if e.severity == "alert" and e.kind != "nonfinite_gradients"}


def test_an_hf_trainer_run_is_scored_from_the_logs_hf_writes(tmp_path):
    pytest.importorskip("transformers")
    spec = RunSpec("hf-tiny-huge-lr", "early_divergence", "holdout", 5, "lm", TINY,
                   {**SHORT, "lr": 1.0, "gradient_monitor_interval": 10}, {}, "hf")
    run = load_run(generate(spec, tmp_path))
    # HF's run directory: HF's own tags beside the callback's per-step ones
    assert "train/loss" in run.log.series and [s for s, _ in run.losses] == list(range(1, 31))
    failed, rule = failure_step(run)
    assert failed is not None and failed <= 10, rule  # fails in its first 10 steps
    replayed = replay_suite(run)
    assert _alerts(replayed) == _alerts(run.live) != set()
    assert detection_step(replayed, run.mode) <= failed
    # HF's own log: a loss every 10 steps (the mean of those steps), epochs from train/epoch
    own = load_own_log(tmp_path / spec.name, run)
    assert [s for s, _ in own.log.series["train/step_loss"]] == [10, 20, 30]
    assert len(own.log.series["train/epoch_loss"]) == 2 and not own.live
    assert own.losses == run.losses  # judged against the per-step truth
    replayed_own = replay(own.log, AnalyzeConfig(baseline_loss=own.unigram_entropy, evaluation_epochs=[0, 1]))
    assert [s for s, _ in replayed_own.series["train/step_loss_ema"]] == [10, 20, 30]
    assert [s for s, _ in replayed_own.series["evaluation/train_val_gap"]] == [15, 30]  # the post-epoch checks ran
    # scored at the first point that can show the failure, with the uniform loss the user knows
    assert failure_step(own)[0] == 10 and "first logged at 10" in failure_step(own)[1]
    assert detection_step(replay_suite(own), own.mode) == 10  # loss_above_init: 1.5x ln 256 passed

def test_a_lightning_run_is_scored_from_its_logger_s_tensorboard_run(tmp_path):
    pytest.importorskip("lightning")
    spec = RunSpec("pl-tiny-bad-batch", "bad_batch", "holdout", 6, "lm", TINY,
                   {**SHORT, "lr": 3e-3, "gradient_monitor_interval": 1}, {"bad_step": 5}, "lightning")
    logdir = generate(spec, tmp_path)
    run = load_run(logdir)
    assert "lightning_logs" in run.info["view"] and "train_loss" in run.log.series  # the module's own tag too
    assert failure_step(run) == (5, "non-finite loss")
    replayed = replay_suite(run)
    assert _alerts(replayed) == _alerts(run.live)
    assert ("nonfinite_loss", 5) in _alerts(replayed)
    assert detection_step(replayed, run.mode) <= 5


def test_a_plain_loop_run_of_our_gpt_is_scored_from_its_jsonl(tmp_path):
    # the creeping runs' second host: the plain loop on Monitor training our byte GPT
    spec = RunSpec("loop-gpt-tiny", "lr_ramp_too_high", "holdout", 7, "lm", {**TINY, "arch": "gpt"},
                   {**SHORT, "lr": 0.3, "gradient_monitor_interval": 3, "weight_decay": 0.1, "adam_beta2": 0.99},
                   {}, "loop")
    run = load_run(generate(spec, tmp_path))
    assert run.n_layers == 2 and [s for s, _ in run.losses] == list(range(1, 31))
    assert "gradient_monitor/gain/gpt.1" in run.log.series  # our GPT's blocks, named by the monitor
    assert _alerts(replay_suite(run)) == _alerts(run.live) != set()
