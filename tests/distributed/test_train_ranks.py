"""`torchrun --nproc_per_node 2 -m trainvitals train-lm` on CPU (gloo): the same run as one
process with twice the batch, one writer, and a resume that continues every rank."""
import pytest
from helpers import TINY, jsonl_scalars, run_cli
from launch import torchrun

ARGS = [a for a in TINY if a not in ("--batch-size", "8")] + ["--epochs", "2", "--steps-per-epoch", "10",
                                                              "--log-every", "5", "--val-fraction", "0.02"]


def _close(a, b, tags, rel=1e-4):
    for tag in tags:
        pa, pb = a[tag], b[tag]
        assert [s for s, _ in pa] == [s for s, _ in pb], tag
        for (s, x), (_, y) in zip(pa, pb):
            assert y == pytest.approx(x, rel=rel, abs=1e-7), (tag, s, x, y)


def test_two_ranks_train_what_one_process_with_twice_the_batch_trains(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli("train-lm", *ARGS, "--batch-size", "8", "--logdir", str(one))
    proc = torchrun("-m", "trainvitals", "train-lm", *ARGS, "--batch-size", "4", "--logdir", str(two))
    a, b = jsonl_scalars(one / "metrics.jsonl"), jsonl_scalars(two / "metrics.jsonl")
    assert set(a) == set(b)
    _close(a, b, ["train/step_loss", "val/loss", "gradient_monitor/gain/0", "gradient_monitor/gain/1",
                  "gradient_monitor/grad_norm", "weight_monitor/update_ratio/0", "train/epoch_loss"])
    # one voice: one event file, one summary, every step logged once
    assert len(list(two.glob("events.out.tfevents.*"))) == 1
    assert proc.stdout.count("Training stopped: completed") == 1
    assert [s for s, _ in b["train/step_loss"]] == list(range(1, 21))
    assert (two / "report.md").exists() and sorted(p.name for p in (two / "snapshots").iterdir()) == \
        ["best.pt", "step_0000010.pt", "step_0000020.pt"]


def test_a_resumed_two_rank_run_equals_the_uninterrupted_one(tmp_path):
    args = [*ARGS, "--batch-size", "4", "--dropout", "0.1"]  # dropout: every rank's RNG stream matters
    whole, part = tmp_path / "whole", tmp_path / "part"
    torchrun("-m", "trainvitals", "train-lm", *args, "--logdir", str(whole))
    torchrun("-m", "trainvitals", "train-lm", *args, "--epochs", "1", "--logdir", str(part))
    torchrun("-m", "trainvitals", "train-lm", "--resume", "--logdir", str(part), "--epochs", "2")
    a, b = jsonl_scalars(whole / "metrics.jsonl"), jsonl_scalars(part / "metrics.jsonl")
    assert [s for s, _ in b["train/step_loss"]] == list(range(1, 21))
    _close(a, b, ["train/step_loss", "val/loss", "gradient_monitor/gain/0", "train/step_loss_ema"], rel=1e-6)


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    run = tmp_path / "run"
    torchrun("-m", "trainvitals", "train-lm", *ARGS, "--batch-size", "4", "--epochs", "1", "--logdir", str(run))
    proc = torchrun("-m", "trainvitals", "train-lm", "--resume", "--logdir", str(run), "--epochs", "2",
                    nproc=1, check=False)
    # our process exits 2 with one line; torchrun reports a failed child as its own exit 1
    assert proc.returncode != 0 and "exitcode  : 2" in proc.stderr, proc.stderr[-2000:]
    assert "error: resume: the snapshot was written by 2 process(es); resume it with the same number " \
           "(torchrun --nproc_per_node 2), not 1" in proc.stderr
