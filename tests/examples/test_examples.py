"""The scripts in examples/ run as a user runs them (subprocesses, at a tiny size), write
what their docstrings promise, and mark the few trainvitals lines the README shows."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from distributed.launch import single, torchrun
from helpers import EXAMPLES, snippets
from trainvitals.analyze.readers import read_run

TINY = ["--batch-size", "4", "--block-size", "16", "--n-layer", "2", "--n-head", "2", "--n-embd", "32"]


def steps(series, tag):
    return [step for step, _ in series[tag]]


def jsonl(path: Path, tag: str) -> list[int]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["step"] for r in records if r.get("tag") == tag]


def test_every_example_marks_one_snippet_that_stands_alone():
    assert sorted(snippets()) == ["hf_trainer", "lightning", "plain_loop"]
    for name, code in snippets().items():
        ast.parse(code)  # whole statements, dedented
        assert len(code.splitlines()) <= 25, f"snippet {name!r} is too long for a README"


@pytest.mark.parametrize("how", ["eager", "compile", "torchrun"])
def test_plain_loop(tmp_path, how):
    args = [str(EXAMPLES / "plain_loop.py"), "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "2",
            "--gradient-accumulation-steps", "2", "--device", "cpu", "--logdir", str(tmp_path / "run"), *TINY]
    if how == "compile":  # aot_eager: dynamo traces the model as inductor would, without a C++ toolchain
        args += ["--compile", "--compile-backend", "aot_eager"]
    torchrun(*args) if how == "torchrun" else single(*args)
    log = tmp_path / "run" / "metrics.jsonl"
    assert jsonl(log, "train/step_loss") == list(range(1, 7))  # every step once, the last one too
    assert jsonl(log, "val/loss") == [3, 6]  # each evaluation, at the step it follows
    assert jsonl(log, "gradient_monitor/grad_norm") == [1, 4]
    assert len(jsonl(log, "gradient_monitor/gain/0")) == 2
    assert steps(read_run(tmp_path / "run").series, "train/step_loss") == list(range(1, 7))  # TensorBoard too


def test_hf_trainer_and_its_resume(tmp_path):
    args = [str(EXAMPLES / "hf_trainer.py"), "--eval-steps", "3", "--eval-batches", "1",
            "--output-dir", str(tmp_path), *TINY]
    single(*args, "--max-steps", "6")
    single(*args, "--max-steps", "9", "--resume")  # from checkpoint-6, with HF's defaults
    runs = [read_run(d).series for d in sorted((tmp_path / "runs").iterdir())]
    ours = [s for run in runs for s in steps(run, "train/step_loss")]
    assert sorted(ours) == list(range(1, 10))  # continued, not restarted at 1
    assert [s for run in runs for s in steps(run, "val/loss")] == [3, 6, 9]
    assert all("eval/loss" in run and "gradient_monitor/mean_gain" in run for run in runs)


def test_lightning_demo(tmp_path):
    single(str(EXAMPLES / "lightning_demo.py"), "--max-steps", "6", "--val-check-interval", "3",
           "--val-batches", "1", "--logdir", str(tmp_path), *TINY)
    s = read_run(tmp_path / "lightning_logs" / "version_0").series
    assert steps(s, "train/step_loss") == list(range(1, 7))
    assert steps(s, "val/loss") == [3, 6]
    assert steps(s, "gradient_monitor/grad_norm") == [1, 4]
