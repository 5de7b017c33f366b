"""A run directory belongs to one run: a second run is refused, a live one is locked,
a branch from an older snapshot moves the newer ones aside, orphaned temp files go."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import TINY, jsonl_scalars, run_cli

from trainvitals.analyze.readers import read_run
from trainvitals.errors import RunDirError
from trainvitals.training.rundir import LOCK_NAME, RunDir

RUN = [*TINY, "--steps-per-epoch", "3", "--warmup-steps", "2", "--log-every", "1"]


def _tree(d):
    """Every file under d with its content hash: what "nothing is touched" means."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _one_line_error(proc, command="train-lm"):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainvitals {command}: error: "), proc.stderr
    return lines[0]


def test_second_run_in_a_run_directory_is_refused_and_nothing_is_touched(tmp_path):
    d = tmp_path  # exists and is empty: a fresh run may use it
    run_cli("train-lm", *RUN, "--epochs", "2", "--seed", "1", "--logdir", str(d))
    assert not (d / LOCK_NAME).exists(), "the lock goes when the run ends"
    before = _tree(d)
    proc = run_cli("train-lm", *RUN, "--epochs", "1", "--seed", "2", "--logdir", str(d), check=False)
    line = _one_line_error(proc)
    assert "already holds a run" in line and "--resume --logdir" in line and "another --logdir" in line
    assert _tree(d) == before
    assert [s for s, _ in jsonl_scalars(d / "metrics.jsonl")["train/step_loss"]] == list(range(1, 7))


def test_crash_before_the_first_snapshot_is_refused_too(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "metrics.jsonl").write_text('{"type": "scalar", "tag": "train/step_loss", "step": 1, "value": 5.0}\n')
    line = _one_line_error(run_cli("train-lm", *RUN, "--max-steps", "2", "--logdir", str(d), check=False))
    assert "saved no snapshot" in line and "another --logdir" in line


_HOLDER = textwrap.dedent("""
    import sys, time
    from trainvitals.training.rundir import RunDir
    RunDir(sys.argv[1]).claim(resume=False)
    print("locked", flush=True)
    time.sleep(60)
""")


def test_a_live_run_locks_its_directory_and_a_stale_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for resume in (False, True):
            with pytest.raises(RunDirError, match=rf"in use by a live run \(pid {holder.pid} "):
                RunDir(tmp_path).claim(resume=resume)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"{holder.pid} "), "kill -9 leaves the lock file"
    taken = RunDir(tmp_path)
    taken.claim(resume=True)
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"{os.getpid()} ")
    taken.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_orphaned_temp_files_are_removed_when_a_run_resumes(tmp_path):
    d = tmp_path / "run"
    run_cli("train-lm", *RUN, "--max-steps", "3", "--logdir", str(d))
    orphans = [d / "snapshots" / ".step_0000004.pt.k2j3h.tmp", d / "snapshots" / ".best.pt.x8a1.tmp",
               d / "metrics.jsonl.tmp"]
    for o in orphans:
        o.write_bytes(b"\0" * 1000)
    out = run_cli("train-lm", "--resume", "--logdir", str(d), "--max-steps", "4", "--no-progress-bar").stdout
    assert "removed 3 temp file(s)" in out
    assert not any(o.exists() for o in orphans)


def test_branching_from_an_older_snapshot_leaves_a_consistent_run(tmp_path):
    d = tmp_path / "run"
    snaps = d / "snapshots"
    run_cli("train-lm", *RUN, "--epochs", "2", "--logdir", str(d))  # snapshots at steps 3 and 6
    assert sorted(p.name for p in snaps.iterdir()) == ["best.pt", "step_0000003.pt", "step_0000006.pt"]
    # branch at step 3 and stop at 4: the abandoned step 6 must not be what --resume picks next
    out = run_cli("train-lm", "--resume", str(snaps / "step_0000003.pt"), "--max-steps", "4",
                  "--no-progress-bar").stdout
    moved = [line for line in out.splitlines() if "moved" in line]
    assert len(moved) == 1 and "resuming from step 3" in moved[0] and "step_0000006.pt" in moved[0]
    aside = [p for p in snaps.iterdir() if p.name.startswith("abandoned-")]
    assert len(aside) == 1 and (aside[0] / "step_0000006.pt").is_file(), "moved, not deleted"
    assert (snaps / "step_0000004.pt").is_file() and not (snaps / "step_0000006.pt").exists()

    run_cli("train-lm", "--resume", "--logdir", str(d), "--max-steps", "6", "--no-progress-bar")
    js = jsonl_scalars(d / "metrics.jsonl")
    tb = read_run(d).series
    for series in (js, tb):
        assert [s for s, _ in series["train/step_loss"]] == list(range(1, 7))
        # the epoch-1 values (step 6) are the new branch's only
        assert [s for s, _ in series["train/epoch_loss"]] == [3, 6]
