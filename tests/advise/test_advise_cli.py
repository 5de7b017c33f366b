"""`trainvitals advise RUN` on our runs: one change, why, the evidence, a config for the
next run, and exit codes a script can use (0 nothing, 3 a change, 2 bad input)."""
import json

import pytest
from helpers import TINY, run_cli

from trainvitals.cli_config import load_toml

RUN_FLAGS = [*TINY, "--epochs", "3", "--steps-per-epoch", "20", "--warmup-steps", "5", "--seed", "3"]


@pytest.fixture(scope="module")
def low_lr_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("low") / "run"
    run_cli("train-lm", *RUN_FLAGS, "--lr", "1e-5", "--logdir", str(d))
    return d


def test_a_run_whose_lr_is_too_low_is_told_to_raise_it_with_evidence(low_lr_run):
    proc = run_cli("advise", str(low_lr_run), check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    first, why = proc.stdout.splitlines()[:2]
    assert first.endswith("Increase learning rate: 1.0e-05 → 3.0e-03")  # loss barely moved: to the usual top
    assert "too low" in why and "x300" in why
    assert "no_learning" in proc.stdout or "lr_too_low" in proc.stdout  # the evidence names the events
    assert "Reduce learning rate" not in proc.stdout  # no event of a run whose loss never moved cuts it
    data = json.loads(run_cli("advise", str(low_lr_run), "--json", check=False).stdout)
    assert data["change"] == {"lr": 3.0e-3} and data["host"] == "trainvitals"
    assert data["evidence"] and all(e["kind"] in ("no_learning", "lr_too_low") for e in data["evidence"])


def test_out_writes_the_runs_own_config_with_the_change_and_it_trains(low_lr_run, tmp_path):
    nxt = tmp_path / "next.toml"
    assert run_cli("advise", str(low_lr_run), "--out", str(nxt), check=False).returncode == 3
    config = load_toml(str(nxt))
    assert config["lr"] == 3e-3
    assert {k: config[k] for k in ("d_model", "n_layers", "n_heads", "block_size", "batch_size", "epochs",
                                   "steps_per_epoch", "warmup_steps", "seed")} == \
        {"d_model": 32, "n_layers": 2, "n_heads": 2, "block_size": 32, "batch_size": 8, "epochs": 3,
         "steps_per_epoch": 20, "warmup_steps": 5, "seed": 3}
    assert "logdir" not in config
    new = tmp_path / "new"
    run_cli("train-lm", "--config", str(nxt), "--logdir", str(new))
    settings = [json.loads(x) for x in (new / "metrics.jsonl").read_text().splitlines()
                if json.loads(x)["type"] == "settings"][0]["settings"]
    old = [json.loads(x) for x in (low_lr_run / "metrics.jsonl").read_text().splitlines()
           if json.loads(x)["type"] == "settings"][0]["settings"]
    assert {k for k in old if old[k] != settings.get(k)} == {"lr"}  # one setting changed, nothing else


def test_events_in_the_jsonl_carry_their_changes(low_lr_run):
    events = [json.loads(x) for x in (low_lr_run / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["type"] == "event"]
    with_changes = [e for e in events if any(e.get("changes") or [])]
    assert with_changes and all(len(e["changes"]) == len(e["suggestions"]) for e in events)


def test_a_healthy_log_gets_no_change_and_exit_0(tmp_path):
    csv = tmp_path / "ok.csv"
    csv.write_text("epoch,train/epoch_loss,val/loss\n0,3.0,3.1\n1,2.5,2.6\n2,2.1,2.2\n3,1.8,1.9\n")
    proc = run_cli("advise", str(csv), check=False)
    assert proc.returncode == 0 and "nothing to change" in proc.stdout
    assert json.loads(run_cli("advise", str(csv), "--json", check=False).stdout)["change"] == {}


@pytest.mark.parametrize("args, needle", [
    (["/no/such/run"], "no such file or directory"),
    (["{csv}", "--out", "{tmp}/x.toml"], "--out writes a train-lm/train-translation config"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    csv = tmp_path / "ok.csv"
    csv.write_text("epoch,train/epoch_loss,val/loss\n0,3.0,3.1\n1,2.5,2.6\n")
    proc = run_cli("advise", *[a.format(csv=csv, tmp=tmp_path) for a in args], check=False)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_run_at_a_high_lr_with_clipping_off_gets_both_in_one_change_and_config(tmp_path):
    run = tmp_path / "run"
    run_cli("train-lm", *RUN_FLAGS, "--lr", "0.05", "--gradient-clip", "0", "--logdir", str(run))
    nxt = tmp_path / "next.toml"
    proc = run_cli("advise", str(run), "--out", str(nxt), check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "and enable gradient clipping: none → 1.0" in proc.stdout.splitlines()[0]
    config = load_toml(str(nxt))
    assert config["gradient_clip"] == 1.0 and 3e-3 <= config["lr"] <= 1e-2
    data = json.loads(run_cli("advise", str(run), "--json", check=False).stdout)
    assert data["change"] == {"lr": config["lr"], "gradient_clip": 1.0}
    assert data["host_settings"] == [f"lr = {config['lr']:g}", "gradient_clip = 1"]


def test_advise_takes_analyzes_settings_so_a_stall_at_a_given_unigram_entropy_is_told(tmp_path):
    # the shape of HF run_clm.py at lr 0.05 (benchmarks/detection/REAL_SCRIPTS.md): the loss falls
    # to the unigram entropy (5.84) in 25 steps and stays there; its log names no entropy
    rows = ["step,train/step_loss,train/lr"]
    for s in range(1, 301):
        loss = 6.93 - (6.93 - 5.80) * s / 25 if s <= 25 else 5.80 + 0.02 * ((s * 7) % 5 - 2)
        rows.append(f"{s},{loss:.4f},0.05")
    csv = tmp_path / "stuck.csv"
    csv.write_text("\n".join(rows) + "\n")
    assert run_cli("advise", str(csv), check=False).returncode == 0  # nothing to compare the plateau with
    proc = run_cli("advise", str(csv), "--baseline-loss", "5.84", "--json", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["change"]["lr"] < 0.05 and data["evidence"][0]["kind"] == "unigram_stall"
    bad = run_cli("advise", str(csv), "--baseline-loss", "-1", check=False)
    assert bad.returncode == 2 and "baseline_loss" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
