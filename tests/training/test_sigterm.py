"""SIGTERM (a scheduler's warning before it kills) ends the run like Ctrl-C: the step
finishes, a final snapshot is written, the reason is said."""
import json
import os
import signal
import subprocess
import sys
import time

from helpers import TINY

from trainvitals.training import snapshot as snap
from trainvitals.training.rundir import LOCK_NAME


def _logged_steps(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("tag") == "train/step_loss":
            out.append(r["step"])
    return out


def test_sigterm_finishes_the_step_snapshots_and_says_why(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "trainvitals", "train-lm", *TINY, "--epochs", "1",
                             "--steps-per-epoch", "500", "--log-every", "1", "--logdir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while len(_logged_steps(tmp_path / "metrics.jsonl")) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "Training stopped: interrupted (terminated by SIGTERM)" in out
    steps = _logged_steps(tmp_path / "metrics.jsonl")
    latest = snap.latest_snapshot(tmp_path / "snapshots")
    assert latest is not None and 3 <= snap.snapshot_step(latest) < 500
    assert snap.snapshot_step(latest) == steps[-1], "the snapshot holds every logged step"
    assert not (tmp_path / LOCK_NAME).exists()
