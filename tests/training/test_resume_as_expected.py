"""--resume as users expect: the same command line with --resume added is accepted, a
changed value is refused naming it, --data is checked by content, a capped --epochs is said."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import TINY, jsonl_scalars, run_cli

import trainvitals

RUN = [*TINY, "--steps-per-epoch", "3", "--warmup-steps", "2", "--log-every", "1"]
TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(120))


def _cli_in(cwd, *args):
    # this checkout's package, whatever the working directory
    src = str(Path(trainvitals.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "trainvitals", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_same_command_line_and_config_file_with_resume_added(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("lr = 0.003\nbatch_size = 8\nevaluation_epochs = [1, 2]\n")
    d = tmp_path / "run"
    command = ["train-lm", *RUN, "--config", str(cfg), "--epochs", "2", "--seed", "3", "--logdir", str(d)]
    run_cli(*command, "--max-steps", "3")
    run_cli(*command, "--max-steps", "5", "--resume")
    assert [s for s, _ in jsonl_scalars(d / "metrics.jsonl")["train/step_loss"]] == list(range(1, 6))

    proc = run_cli(*command, "--resume", "--lr", "0.1", "--batch-size", "4", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "lr: cannot be changed on --resume (saved 0.003, given 0.1)" in proc.stderr
    assert "batch_size: cannot be changed on --resume (saved 8, given 4)" in proc.stderr


def test_relative_data_resumes_from_elsewhere_and_moved_data_is_checked_by_content(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "corpus.txt").write_text(TEXT)
    d = tmp_path / "run"
    proc = _cli_in(tmp_path / "a", "train-lm", *RUN, "--data", "corpus.txt", "--max-steps", "2", "--logdir", str(d))
    assert proc.returncode == 0, proc.stderr
    # another working directory: the stored path is absolute
    proc = _cli_in(tmp_path, "train-lm", "--resume", "--logdir", str(d), "--max-steps", "3", "--no-progress-bar")
    assert proc.returncode == 0, proc.stderr

    shutil.move(tmp_path / "a" / "corpus.txt", tmp_path / "moved.txt")
    proc = run_cli("train-lm", "--resume", "--logdir", str(d), "--max-steps", "4", check=False)
    assert proc.returncode == 2 and "no longer there; give --data PATH with the same content" in proc.stderr
    (tmp_path / "other.txt").write_text(TEXT.upper())
    proc = run_cli("train-lm", "--resume", "--logdir", str(d), "--max-steps", "4", "--data",
                   str(tmp_path / "other.txt"), check=False)
    assert proc.returncode == 2 and "not the data the run trained on" in proc.stderr
    run_cli("train-lm", "--resume", "--logdir", str(d), "--max-steps", "4", "--data", str(tmp_path / "moved.txt"),
            "--no-progress-bar")
    assert [s for s, _ in jsonl_scalars(d / "metrics.jsonl")["train/step_loss"]] == list(range(1, 5))


def test_epochs_on_resume_capped_by_saved_max_steps_is_said(tmp_path):
    run_cli("train-lm", *RUN, "--epochs", "1", "--max-steps", "3", "--logdir", str(tmp_path))
    proc = run_cli("train-lm", "--resume", "--logdir", str(tmp_path), "--epochs", "3", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "saved max_steps=3 caps it" in proc.stderr and "--max-steps" in proc.stderr
