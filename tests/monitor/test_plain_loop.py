"""A plain loop gets TensorBoard, JSONL and the console from one argument, `logdir=`; the
directory is this run's alone (resume explicit); `with` closes it, so the last steps are
logged; the loop may number steps its own way."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F

from trainvitals import Monitor, MonitorConfig
from trainvitals.analyze.readers import read_run
from trainvitals.errors import ConfigError
from trainvitals.tasks.lm.model import GPT, GPTConfig


def setup():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layers=2, d_model=16, n_heads=2, block_size=8, dropout=0.0))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def train(model, opt, monitor, steps, first=0, nan_at=None, own_steps=False):
    for i in range(first, first + steps):
        batch = torch.randint(0, 256, (4, 9), generator=torch.Generator().manual_seed(i))  # batch i, always
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        monitor.after_backward()
        opt.step()
        opt.zero_grad()
        monitor.step_end(loss * float("nan") if i + 1 == nan_at else loss, step=i + 1 if own_steps else None)


def jsonl_steps(d, tag="train/step_loss"):
    lines = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in lines if r.get("tag") == tag]


def test_sinks_are_importable_from_trainvitals_sinks():
    from trainvitals.sinks import ConsoleSink, JSONLSink, Sink, SinkHub, TensorBoardSink, open_sinks  # noqa: F401
    assert issubclass(TensorBoardSink, Sink) and issubclass(ConsoleSink, Sink)


def test_logdir_gives_tensorboard_jsonl_and_console_and_with_logs_the_last_step(tmp_path, capsys):
    d = tmp_path / "run"
    model, opt = setup()
    with Monitor(model, opt, MonitorConfig(on_nonfinite_loss="warn"), logdir=d) as monitor:
        train(model, opt, monitor, 7, nan_at=5)  # log_every=10: nothing is reported before the block ends
    assert jsonl_steps(d) == list(range(1, 8))
    tb = read_run(d).series  # the event files (and the JSONL's events beside them)
    assert [s for s, _ in tb["train/step_loss"]] == list(range(1, 8))
    out, err = capsys.readouterr()
    assert "nonfinite_loss" in out  # the console is there
    assert "step/s" not in err and "step/s" not in out  # and prints no progress bar nobody moves
    assert not (d / ".trainvitals.lock").exists()  # closed: the directory is free


def test_sinks_given_as_a_list_keep_the_console(capsys):
    from trainvitals.sinks import Sink

    class Memory(Sink):
        seen: list = []

        def log(self, tag, value, step):
            self.seen.append((tag, step))

    model, opt = setup()
    with Monitor(model, opt, MonitorConfig(on_nonfinite_loss="warn"), sinks=[Memory()]) as monitor:
        train(model, opt, monitor, 3, nan_at=2)
    assert ("train/step_loss", 3) in Memory.seen
    assert "nonfinite_loss" in capsys.readouterr().out


def test_a_directory_holding_another_run_is_refused_and_left_as_it_was(tmp_path):
    d = tmp_path / "run"
    model, opt = setup()
    with Monitor(model, opt, logdir=d) as monitor:
        train(model, opt, monitor, 3)
    before = {p.name: p.stat().st_size for p in d.iterdir()}
    with pytest.raises(ConfigError, match=r"logdir=.*already holds another run's logs .*resume="):
        Monitor(model, opt, logdir=d)
    assert {p.name: p.stat().st_size for p in d.iterdir()} == before
    with pytest.raises(ConfigError, match="whole set of sinks"):
        from trainvitals.sinks import SinkHub
        Monitor(model, opt, logdir=tmp_path / "other", sinks=SinkHub())


def test_resume_continues_the_run_and_drops_what_the_logs_hold_after_its_state(tmp_path):
    """A crash after step 7 with the last checkpoint at step 4: the resumed run rewrites
    steps 5..; every step is logged once, and the EMA equals an uninterrupted run's."""
    model, opt = setup()
    with Monitor(model, opt, logdir=tmp_path / "straight") as straight:
        train(model, opt, straight, 10)

    d = tmp_path / "run"
    model, opt = setup()
    with Monitor(model, opt, logdir=d) as monitor:
        train(model, opt, monitor, 4)
        checkpoint = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict(),
                                    "monitor": monitor.state_dict()})
        train(model, opt, monitor, 3, first=4)  # lost in the crash
    model, opt = setup()
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["opt"])
    with Monitor(model, opt, logdir=d, resume=checkpoint["monitor"]) as monitor:
        train(model, opt, monitor, 6, first=4)
    assert jsonl_steps(d) == list(range(1, 11))
    assert [s for s, _ in read_run(d).series["train/step_loss"]] == list(range(1, 11))
    assert monitor.loss.signals.value == pytest.approx(straight.loss.signals.value, rel=1e-6)


def test_the_loop_may_pass_its_own_step_numbers(tmp_path):
    """nanoGPT resumed at iter_num 100 without our state: steps 101.. are logged, measured
    from the first, then every gradient_monitor_interval-th."""
    d = tmp_path / "run"
    model, opt = setup()
    with Monitor(model, opt, MonitorConfig(gradient_monitor_interval=3), logdir=d) as monitor:
        train(model, opt, monitor, 7, first=100, own_steps=True)
        with pytest.raises(ConfigError, match=r"step_end\(step=107\): expected an int above the previous step \(107\)"):
            monitor.step_end(1.0, step=107)
    assert jsonl_steps(d) == list(range(101, 108))
    assert jsonl_steps(d, "gradient_monitor/grad_norm") == [101, 103, 106]
