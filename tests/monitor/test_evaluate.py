"""A plain loop that validates every N iterations, as nanoGPT does (`eval_interval`,
`estimate_loss()` returning 0-dim tensors): the post-epoch checks run at each of those
evaluations, live and in `analyze` of the same log alike."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainvitals.analyze.readers import read_run
from trainvitals.analyze.replay import AnalyzeConfig, replay
from trainvitals.errors import ConfigError
from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.tasks.lm.model import GPT, GPTConfig

EVAL_INTERVAL, ITERS = 5, 60


class Said(JSONLSink):
    """The JSONL log, and the report blocks the console would print."""

    def __init__(self, path):
        super().__init__(path)
        self.lines = []

    def text(self, line):
        self.lines.append(line)


def memorizing_loop(tmp_path, config=None):
    """A tiny GPT on 4 random sequences: it memorizes them, so the loss on 4 others
    climbs. Returns the monitor, the JSONL path and the printed report blocks."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = {"train": torch.randint(0, 64, (4, 17), generator=g), "val": torch.randint(0, 64, (4, 17), generator=g)}
    model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layers=2, n_heads=2, d_model=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    path = tmp_path / "metrics.jsonl"
    said = Said(path)
    monitor = Monitor(model, opt, config or MonitorConfig(), sinks=SinkHub([said]))

    def loss_of(split):
        x = data[split]
        return F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())

    @torch.no_grad()
    def estimate_loss():  # nanoGPT's: a 0-dim tensor per split
        model.eval()
        out = {split: torch.stack([loss_of(split) for _ in range(2)]).mean() for split in data}
        model.train()
        return out

    for it in range(1, ITERS + 1):
        loss = loss_of("train")
        loss.backward()
        monitor.after_backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        monitor.step_end(loss)
        if it % EVAL_INTERVAL == 0:
            monitor.evaluate(estimate_loss()["val"])
    monitor.close()
    said.close()
    return monitor, path, said.lines


def _found(events):
    return [(e.kind, e.severity, e.step, e.epoch) for e in events if e.source == "evaluation"]


def test_evaluations_every_n_iterations_with_a_0dim_tensor_run_the_checks(tmp_path):
    monitor, path, printed = memorizing_loop(tmp_path)
    text = "\n".join(printed)
    assert "Cannot evaluate" not in text
    val = dict(read_run(path).series["val/loss"])
    assert sorted(val) == list(range(EVAL_INTERVAL, ITERS + 1, EVAL_INTERVAL))  # every evaluation logged
    best = min(val, key=val.get)
    found = _found(monitor.events)
    over = [step for kind, sev, step, _ in found if kind == "overfitting" and sev == "warning"]
    assert over and over[0] == best + EVAL_INTERVAL, (best, found)  # the first evaluation past the best
    alert = [step for kind, sev, step, _ in found if kind == "val_loss_above_best" and sev == "alert"]
    # at the third evaluation in a row 10% above the best, the first time that holds
    above = [s for s in sorted(val) if s > best and val[s] > 1.1 * val[best]]
    assert alert == [above[2]] and above[:3] == [above[0] + k * EVAL_INTERVAL for k in range(3)]
    # named by number and step: the loop has no epochs (the 3rd evaluation is at step 15)
    assert f"POST-EPOCH EVALUATION (evaluation 3, step {3 * EVAL_INTERVAL})" in text
    assert all(e.epoch is None for e in monitor.events if e.source == "evaluation")
    # the same log, replayed, finds the same
    assert _found(replay(read_run(path), AnalyzeConfig()).events) == found


def test_the_train_loss_of_an_evaluation_is_the_mean_since_the_previous_one(tmp_path):
    monitor, path, _ = memorizing_loop(tmp_path)
    s = read_run(path).series
    losses = dict(s["train/step_loss"])
    for step, train in s["evaluation/train_loss"]:
        since = [losses[k] for k in range(step - EVAL_INTERVAL + 1, step + 1)]
        assert train == pytest.approx(sum(since) / len(since), rel=1e-5)


@pytest.mark.parametrize("value", [2.5, np.float32(2.5), np.float64(2.5), np.array(2.5), torch.tensor(2.5),
                                   torch.tensor(2.5, dtype=torch.bfloat16)])
def test_a_val_loss_may_be_a_float_a_0dim_tensor_or_a_numpy_scalar(value):
    model = torch.nn.Linear(2, 1)
    monitor = Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), blocks=[], sinks=SinkHub())
    monitor.step_end(3.0)
    monitor.end_epoch(val_loss=value)
    assert monitor.scalars["val/loss"] == (1, 2.5)


@pytest.mark.parametrize("value, shown", [(torch.tensor([2.5, 2.6]), "shape (2,)"), ("2.5", "'2.5'"),
                                          ([2.5], "[2.5]"), (True, "True")])
def test_anything_else_is_refused_in_one_line_naming_it(value, shown):
    model = torch.nn.Linear(2, 1)
    monitor = Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), blocks=[], sinks=SinkHub())
    with pytest.raises(ConfigError, match=r"val_loss=.*0-dim tensor") as info:
        monitor.evaluate(value)
    assert shown in str(info.value) and "\n" not in str(info.value)
