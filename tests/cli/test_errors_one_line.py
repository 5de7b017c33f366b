"""Bad inputs a user can give: one line `trainvitals <command>: error: ...`, exit 2, no
traceback, and no half-made run directory left behind."""
import os
import resource
import subprocess
import sys

import pytest
import torch
from helpers import TINY, run_cli

from trainvitals.training.snapshot import atomic_save

GOOD_PAIRS = "".join(f"{i} red cars\t{i} voitures rouges\n" for i in range(40))
TR_TINY = ["--d-model", "32", "--n-heads", "2", "--n-encoder-layers", "1", "--n-decoder-layers", "1",
           "--batch-size", "4", "--no-progress-bar"]


def one_line_error(proc, command):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trainvitals {command}: error: "), proc.stderr
    return lines[0]


def _files(tmp_path):
    files = {
        "notab.tsv": b"one\tun\ntwo deux\n",
        "emptytarget.tsv": b"one\tun\ntwo\t \n",
        "badutf8.tsv": b"one\tun\ntwo\tdeux \xff\xfe\n",
        "pairs.tsv": GOOD_PAIRS.encode(),
        "empty.txt": b"",
        "latin1.toml": "lr = 0.001 # caf\xe9\n".encode("latin-1"),
        "logdir5.toml": b"logdir = 5\n",
        "data5.toml": b"data = 5\n",
        "emano.toml": b'enable_ema_loss = "no"\n',
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


CASES = [  # command, arguments ({d} = the test's files), what the line must say
    ("train-translation", ["--data", "{d}/notab.tsv"], "notab.tsv:2: expected 'source<TAB>target', found 0 tabs"),
    ("train-translation", ["--data", "{d}/emptytarget.tsv"], "emptytarget.tsv:2: the target side is empty"),
    ("train-translation", ["--data", "{d}/badutf8.tsv"], "badutf8.tsv:2: not valid UTF-8"),
    ("train-translation", ["--data", "/dev/null"], "data='/dev/null': not a regular file"),
    ("train-translation", ["--data", "{d}/pairs.tsv", "--vocab-size", "100"], "vocab_size=100: the data has token ids"),
    ("train-translation", ["--data", "{d}/pairs.tsv", "--max-len", "8"], "max_len=8: the data's longest sequence"),
    ("train-lm", ["--data", "{d}/empty.txt"], "empty.txt'" + ": empty"),
    ("train-lm", ["--data", "/dev/null"], "data='/dev/null': empty"),
    ("train-lm", ["--vocab-size", "10"], "vocab_size=10: the data holds byte values up to"),
    ("train-lm", ["--device", "mps"], "device='mps': MPS (Apple GPU) is not available here"),
    ("train-lm", ["--config", "{d}/latin1.toml"], "not UTF-8"),
    ("train-lm", ["--config", "{d}/logdir5.toml"], "logdir=5: expected str"),
    ("train-lm", ["--config", "{d}/data5.toml"], "data=5: expected str"),
    ("train-lm", ["--config", "{d}/emano.toml"], "enable_ema_loss='no': expected bool"),
]


@pytest.mark.parametrize("command, args, needle", CASES, ids=[c[2][:40] for c in CASES])
def test_train_commands_refuse_bad_input_in_one_line(tmp_path, command, args, needle):
    if args[1] == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    d = _files(tmp_path)
    logdir = tmp_path / "run"
    tiny = TR_TINY if command == "train-translation" else TINY
    # a --logdir flag would override the file's `logdir = 5`
    where = [] if "logdir5" in args[-1] else ["--logdir", str(logdir)]
    proc = run_cli(command, *tiny, "--max-steps", "2", *[a.format(d=d) for a in args], *where, check=False)
    assert needle in one_line_error(proc, command)
    assert not logdir.exists(), "an error before training leaves no run directory"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/sys is read-only on Linux")
def test_read_only_logdir_says_nothing_was_written():
    proc = run_cli("train-lm", *TINY, "--max-steps", "2", "--logdir", "/sys/trainvitals-test/run", check=False)
    line = one_line_error(proc, "train-lm")
    assert "cannot write there" in line and "nothing was written" in line


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # logs fit, a snapshot (~0.5 MB) does not


def test_full_disk_while_training_is_one_line_and_leaves_no_temp_file(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "trainvitals", "train-lm", *TINY, "--max-steps", "3",
                           "--logdir", str(tmp_path)], capture_output=True, text=True, env=env,
                          preexec_fn=_limit_file_size)
    line = one_line_error(proc, "train-lm")
    assert "step_0000003.pt failed (File too large)" in line and "no snapshot had been written yet" in line
    assert not list((tmp_path / "snapshots").glob("*")), "the failed write's temp file is removed"
    assert (tmp_path / "metrics.jsonl").stat().st_size > 0, "what was logged stays"


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    run_cli("train-lm", *TINY, "--max-steps", "2", "--logdir", str(d))
    good = d / "snapshots" / "step_0000002.pt"
    state = torch.load(good, weights_only=True)
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    state.pop("format")
    bad = atomic_save(state, d / "nan.pt")
    return d, good, bad


@pytest.mark.parametrize("args, needle", [
    (["--temperature", "nan"], "temperature=nan: expected a finite number"),
    (["--temperature", "-1"], "temperature=-1.0: allowed is 0 <= temperature"),
    (["--max-new-tokens", "-5"], "max_new_tokens=-5: allowed is 0 <= max_new_tokens"),
])
def test_sample_refuses_bad_settings(snapshots, args, needle):
    _, good, _ = snapshots
    assert needle in one_line_error(run_cli("sample", "--snapshot", str(good), *args, check=False), "sample")


def test_sample_refuses_a_nan_snapshot(snapshots):
    _, _, bad = snapshots
    line = one_line_error(run_cli("sample", "--snapshot", str(bad), check=False), "sample")
    assert "non-finite weights" in line


def test_report_on_a_file(snapshots):
    d, _, _ = snapshots
    line = one_line_error(run_cli("report", str(d / "metrics.jsonl"), check=False), "report")
    assert "a file; give the run directory" in line
