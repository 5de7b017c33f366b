"""`analyze` reads the run's settings from our own logs, so advice replayed offline is
the live run's, word for word; a flag given on the command line wins over the log."""
import io
import json

import pytest
from helpers import TINY, run_cli

from trainvitals.analyze.command import analyze
from trainvitals.analyze.readers import read_run
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.sinks.base import SETTINGS_TAG

LR, WARMUP, CLIP = 0.3, 30, 1.0  # too high an LR: alerts with LR advice within 40 steps


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "r"
    run_cli("train-lm", *TINY, "--lr", str(LR), "--warmup-steps", str(WARMUP), "--gradient-clip", str(CLIP),
            "--epochs", "2", "--steps-per-epoch", "20", "--on-nonfinite-loss", "warn", "--logdir", str(d))
    return d


def _live(rundir):
    rows = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]
    return rows, [(e["kind"], e["step"], e["suggestions"]) for e in rows if e["type"] == "event"]


def _replayed(path, *flags):
    """`trainvitals analyze PATH --json`: in this process without flags, else the command."""
    if flags:
        out = json.loads(run_cli("analyze", str(path), *flags, "--json").stdout)
    else:
        buf = io.StringIO()
        analyze(str(path), AnalyzeConfig(), as_json=True, out=buf)
        out = json.loads(buf.getvalue())
    return [(e["kind"], e["step"], e["suggestions"]) for e in out["events"]]


def test_the_run_writes_its_settings_once(rundir):
    rows, _ = _live(rundir)
    (settings,) = [r["settings"] for r in rows if r["type"] == "settings"]
    assert {k: settings[k] for k in ("lr", "warmup_steps", "gradient_clip", "num_layers")} == \
        {"lr": LR, "warmup_steps": WARMUP, "gradient_clip": CLIP, "num_layers": 2}
    assert read_run(rundir / "metrics.jsonl").settings == settings


def test_tensorboard_settings_read_as_tensorboard_reads_them(rundir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(rundir), size_guidance={"tensors": 0})
    acc.Reload()
    (text,) = acc.Tensors(SETTINGS_TAG + "/text_summary")
    reference = json.loads(text.tensor_proto.string_val[0].decode())
    assert text.step == 0 and reference["lr"] == LR
    assert read_run(rundir).settings == reference


def test_replay_gives_the_live_advice_word_for_word(rundir):
    _, live = _live(rundir)
    named = [s for _, _, sugg in live for s in sugg if s.startswith("Reduce learning rate: 3.0e-01 →")]
    assert named, live  # the advice names the configured peak LR...
    assert any("(now " in s for s in named)  # ...and the LR in use beside it
    for path in (rundir, rundir / "metrics.jsonl"):  # TensorBoard, then JSONL; no flags
        assert _replayed(path) == live


def test_a_flag_wins_over_the_logged_setting(rundir):
    replayed = _replayed(rundir, "--lr", "0.01", "--gradient-clip", "0.5")
    suggestions = [s for _, _, sugg in replayed for s in sugg]
    assert any(s.startswith("Reduce learning rate: 1.0e-02 →") for s in suggestions)
    assert not any("3.0e-01 →" in s for s in suggestions)
    assert "Tighten gradient clipping: 0.5 → 0.35" in suggestions
    assert "Tighten gradient clipping: 1.0 → 0.7" not in suggestions


def test_a_bad_logged_setting_is_left_out_with_one_line(tmp_path):
    log = tmp_path / "m.jsonl"
    lines = [{"type": "settings", "step": 0, "settings": {"lr": "fast", "warmup_steps": 10}}]
    lines += [{"type": "scalar", "tag": "train/step_loss", "step": s, "value": 3.0} for s in range(1, 5)]
    log.write_text("\n".join(map(json.dumps, lines)) + "\n")
    analysis = replay(read_run(log), AnalyzeConfig())
    assert analysis.problems == ["settings in the log: lr='fast' is not a float >= 0, left out"]
