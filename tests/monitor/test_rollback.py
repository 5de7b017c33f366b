"""auto_adjust's rollback in a plain loop: the monitor restores the model and optimizer it
was given, in place, to the last good state before the trouble; the loop's data goes on
(the batches in between are skipped); the LR cut is the change `advise` recommends."""
import copy
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from trainvitals import Monitor, MonitorConfig
from trainvitals.advise.recommend import recommend
from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.replay import Analysis
from trainvitals.errors import ConfigError
from trainvitals.events import ALERT, Event
from trainvitals.monitor.outbox import StopReason
from trainvitals.tasks.lm.model import GPT, GPTConfig

LR = 1e-3


def setup(**over):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layers=2, d_model=16, n_heads=2, block_size=8, dropout=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    cfg = MonitorConfig(**{"auto_adjust": True, "log_every": 5, "rollback_every": 5, "rollback_keep": 3,
                           "enable_gradient_monitor": False, **over})
    return model, opt, Monitor(model, opt, cfg, console=False, run_info={"lr": LR})


def train(model, opt, monitor, steps, first=0, nan_at=(), saved=None, lr_at=None, fed=None):
    """Steps first+1..first+steps on batch i at step i; `saved[step]`: the weights and
    optimizer state after each step (before a rollback can change them); `lr_at(step)`:
    the LR of each step (default: the optimizer's, left alone). With `fed` (a list), the
    loop asks `skip_batch()` before each step, as the docs show, and lists the steps it trained."""
    for i in range(first, first + steps):
        if fed is not None:
            if monitor.skip_batch():
                continue
            fed.append(i + 1)
        if lr_at is not None:
            for g in opt.param_groups:
                g["lr"] = lr_at(i + 1)
        batch = torch.randint(0, 256, (4, 9), generator=torch.Generator().manual_seed(i))
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        if i + 1 in nan_at:
            loss = loss * float("nan")  # NaN gradients: the update makes every weight NaN
        loss.backward()
        monitor.after_backward()
        opt.step()
        opt.zero_grad()
        if saved is not None:
            saved[i + 1] = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()["state"]))
        monitor.step_end(loss)


def assert_replayed(model, opt, state, first, steps):
    """The weights equal `state` (weights, optimizer state) trained on batches first+1..first+steps."""
    replay_model, replay_opt, replay_monitor = setup()
    replay_model.load_state_dict(state[0])
    replay_opt.load_state_dict({"state": copy.deepcopy(state[1]), "param_groups": opt.state_dict()["param_groups"]})
    train(replay_model, replay_opt, replay_monitor, steps, first=first)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, replay_model.state_dict()[k], rtol=0, atol=0)


def actions(monitor):
    return [e for e in monitor.events if e.kind == "action"]


def test_a_nonfinite_loss_restores_the_weights_and_optimizer_of_the_last_good_state():
    model, opt, monitor = setup()
    saved = {}
    train(model, opt, monitor, 20, nan_at={13}, saved=saved)
    assert monitor.stop_reason is None  # healed, not stopped
    (r,) = monitor.rollback.done
    # NaN from step 13, seen at the logging step 15: back to the state of step 10, steps 11-15 skipped
    assert (r["trigger_step"], r["restored_step"], r["skipped_steps"]) == (13, 10, [11, 15])
    assert r["lr_before"] == r["lr_after"] == LR  # one bad batch: the LR is not blamed
    # after the rollback at step 15, steps 16..20 trained on from the state of step 10, so
    # replaying batches 16..20 from that state gives the same weights
    assert_replayed(model, opt, saved[10], first=15, steps=5)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    (event,) = actions(monitor)
    assert "restored the state of step 10" in event.message and "steps 11-15" in event.message
    assert event.step == 15 and event.source == "auto_adjust"


def test_a_healthy_run_is_never_touched():
    model, opt, monitor = setup()
    train(model, opt, monitor, 30)
    assert actions(monitor) == [] and monitor.rollback.done == []
    assert [s.step for s in monitor.rollback.ring] == [20, 25, 30]  # every 5 steps, the last 3


def _divergence(step, min_step):
    return Event("loss_divergence", ALERT, f"Loss divergence at step {step}", step,
                 values={"min_step": min_step, "ratio": 1.3})


def _advised(events, steps, lr=LR):
    return recommend(Analysis("x", events=events, steps=steps), RunLog("x", settings={"lr": lr}), "trainvitals",
                     settable={"lr"}).change["lr"]


@pytest.mark.parametrize("total_steps", [None, 100])
def test_a_divergence_cuts_the_lr_by_the_change_advise_recommends(total_steps):
    model, opt, monitor = setup()
    saved = {}
    train(model, opt, monitor, 20, saved=saved)
    monitor.total_steps = total_steps
    alert = _divergence(20, min_step=12)
    monitor.emit(alert)
    monitor.rollback.check(monitor, [alert])
    (r,) = monitor.rollback.done
    assert r["restored_step"] == 10  # before the loss's minimum, where the climb began
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, saved[10][0][k], rtol=0, atol=0)
    # advise's own rule: a late failure (at the end of a 20-step run) halves the LR, an early
    # one (20% into 100 steps) cuts it /10
    new = _advised([alert], total_steps or 20)
    assert new == pytest.approx(LR * (0.5 if total_steps is None else 0.1))
    assert monitor.lr_scale == pytest.approx(new / LR) and r["lr_after"] == pytest.approx(new)
    assert "learning rate" in r["cause"]


def test_a_large_cut_goes_back_past_the_states_trained_at_more_than_twice_the_new_lr():
    # a warmup to 10x the LR advise will set: the state of step 5 trained at 2.5x it already,
    # the start of the run did not (the benchmark's LR-too-high-after-warmup runs: the state
    # before the first warning sign, trained at 5x, ended 4-9% above the healthy twin)
    model, opt, monitor = setup(rollback_keep=5)
    train(model, opt, monitor, 20, lr_at=lambda step: LR * step / 20)
    monitor.total_steps = 100  # an early failure: advise cuts /10, to 1e-4
    alert = _divergence(20, min_step=12)
    monitor.emit(alert)
    monitor.rollback.check(monitor, [alert])
    (r,) = monitor.rollback.done
    assert r["lr_after"] == pytest.approx(LR / 10)
    assert (r["restored_step"], r["skipped_steps"]) == (0, [1, 20])  # not 10, the newest before step 12
    assert "the newest trained at an LR under 2.0e-04" in actions(monitor)[0].message


def test_a_late_halving_keeps_the_newest_state_before_the_trouble():
    # a /2 cut (advise's finest) blames no state trained at up to the old LR: all are kept
    model, opt, monitor = setup(rollback_keep=5)
    train(model, opt, monitor, 20)
    alert = _divergence(20, min_step=12)
    monitor.emit(alert)
    monitor.rollback.check(monitor, [alert])
    assert monitor.rollback.done[0]["restored_step"] == 10 and monitor.lr_scale == pytest.approx(0.5)


def test_an_lr_raised_above_the_one_set_is_the_one_cut():
    # the loop runs at 30x the LR it declared (raised on a resume): advise sizes the cut from
    # the LR in use, and the states trained at it are passed over
    model, opt, monitor = setup(rollback_keep=5)
    train(model, opt, monitor, 20, lr_at=lambda step: LR * (30 if step > 12 else 1))
    alert = _divergence(20, min_step=17)
    monitor.emit(alert)
    monitor.rollback.check(monitor, [alert])
    (r,) = monitor.rollback.done
    assert r["lr_before"] == pytest.approx(30 * LR)
    assert r["lr_after"] == pytest.approx(3e-3)  # advise: a late failure from above 1e-2, into the usual range
    assert monitor.lr_scale == pytest.approx(0.1)
    assert r["restored_step"] == 10  # trained at 1e-3: the newest state before the raise


def test_a_spike_skips_its_batches_and_keeps_the_lr():
    model, opt, monitor = setup()
    train(model, opt, monitor, 20)
    spike = Event("loss_spike", ALERT, "Loss spike at step 18", 18, values={"ratio": 5.0})
    monitor.rollback.check(monitor, [spike])
    (r,) = monitor.rollback.done
    assert (r["restored_step"], r["skipped_steps"], r["lr_after"]) == (15, [16, 20], LR)
    assert monitor.lr_scale == 1.0 and r["cause"].startswith("the data")


def test_the_state_restored_is_older_than_the_first_warning_sign():
    model, opt, monitor = setup()
    train(model, opt, monitor, 20)
    warn = Event("grad_norm_jump", "warning", "Gradient norm jumped at step 14", 14)
    monitor.emit(warn)
    spike = Event("loss_spike", ALERT, "Loss spike at step 18", 18)
    monitor.rollback.check(monitor, [spike])
    assert monitor.rollback.done[0]["restored_step"] == 10  # not 15: the trouble showed at step 14


def test_past_max_rollbacks_the_run_stops_naming_every_rollback():
    model, opt, monitor = setup(max_rollbacks=1)
    train(model, opt, monitor, 20, nan_at={13})
    assert len(monitor.rollback.done) == 1 and monitor.stop_reason is None
    train(model, opt, monitor, 10, first=20, nan_at={23})
    assert monitor.stop_reason is StopReason.AUTO_ADJUST
    assert "max_rollbacks=1" in monitor.stop_message
    assert "#1 at step 15: nonfinite_loss, restored step 10, skipped 11-15" in monitor.stop_message


def test_resume_keeps_the_count_and_the_skip_list(tmp_path):
    model, opt, monitor = setup()
    monitor.close()
    cfg = monitor.config
    with Monitor(model, opt, cfg, logdir=tmp_path / "run", console=False, run_info={"lr": LR}) as monitor:
        train(model, opt, monitor, 20, nan_at={13})
        state = copy.deepcopy(monitor.state_dict())
    written = json.loads((tmp_path / "run" / "rollbacks.json").read_text())["rollbacks"]
    assert [(r["restored_step"], r["skipped_steps"]) for r in written] == [(10, [11, 15])]
    with Monitor(model, opt, cfg, logdir=tmp_path / "run", resume=state, console=False,
                 run_info={"lr": LR}) as resumed:
        assert resumed.rollback.done == monitor.rollback.done
        train(model, opt, resumed, 10, first=20, nan_at={23})
        assert [r["rollback"] for r in resumed.rollback.done] == [1, 2]
    written = json.loads((tmp_path / "run" / "rollbacks.json").read_text())["rollbacks"]
    assert [r["skipped_steps"] for r in written] == [[11, 15], [21, 25]]


def test_a_resume_with_a_lower_max_rollbacks_stops_at_the_next_trigger_naming_the_earlier_one():
    model, opt, monitor = setup()
    train(model, opt, monitor, 20, nan_at={13})
    state = copy.deepcopy(monitor.state_dict())
    resumed = Monitor(model, opt, dataclasses.replace(monitor.config, max_rollbacks=1), resume=state,
                      console=False, run_info={"lr": LR})
    train(model, opt, resumed, 10, first=20, nan_at={23})
    assert resumed.stop_reason is StopReason.AUTO_ADJUST and len(resumed.rollback.done) == 1
    assert "max_rollbacks=1" in resumed.stop_message and "#1 at step 15" in resumed.stop_message


def test_the_grad_scalers_loss_scale_goes_back_with_the_optimizer():
    # two overflowing steps halve the loss scale twice (the scaler skips them); the rollback
    # to the state of step 10 restores its scale too, as the optimizer state it goes with
    model, opt, monitor = setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1000)
    for i in range(15):
        batch = torch.randint(0, 256, (4, 9), generator=torch.Generator().manual_seed(i))
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        if i + 1 in (13, 14):
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        monitor.after_backward(grad_scale=scaler)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        if i + 1 == 14:
            assert scaler.get_scale() == 2.0 ** 8
        monitor.step_end(loss)
    (r,) = monitor.rollback.done
    assert (r["restored_step"], r["trigger"]) == (10, ["nonfinite_loss"])
    assert scaler.get_scale() == 2.0 ** 10


@pytest.mark.parametrize("field,value", [("max_rollbacks", -1), ("rollback_every", 0), ("rollback_keep", 0)])
def test_bad_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"{field}={value}: allowed is"):
        MonitorConfig(auto_adjust=True, **{field: value})
