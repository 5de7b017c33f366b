"""auto_adjust's skip ahead in a plain loop: trouble that comes back right after a skip
(a stretch of bad data longer than the skip) makes the next rollback skip past its alert,
`rollback_every` steps the first time and twice as many with each recurrence in a row,
and the loop that asks `monitor.skip_batch()` drops those batches unfed. At an LR the
state restored never trained at, the recurrence is the LR's instead (a cut, no skip ahead)."""
import copy
import json

import pytest
import torch
from test_rollback import LR, assert_replayed, setup, train

from trainvitals import Monitor
from trainvitals.events import ALERT, Event

STRETCH = set(range(13, 35))  # 22 bad batches: NaN losses from step 13 to 34


def test_a_stretch_longer_than_one_skip_is_passed_skipping_further_each_time():
    model, opt, monitor = setup()
    fed = []
    train(model, opt, monitor, 50, nan_at=STRETCH, fed=fed)
    assert monitor.stop_reason is None  # passed within max_rollbacks=3, not stopped
    done = monitor.rollback.done
    # seen at 15, back to the state of step 10; back at 16, seen at 20: 5 past it; back at 26:
    # 10 past the alert at 30, which is past the stretch
    assert [(r["at_step"], r["restored_step"], r["skipped_steps"], r["skipped_ahead"]) for r in done] == [
        (15, 10, [11, 15], 0), (20, 10, [11, 25], 5), (30, 10, [11, 40], 10)]
    assert all(r["lr_after"] == r["lr_before"] == LR and r["cause"].startswith("the data") for r in done)
    # the batches past each alert were never fed; all the others were
    assert fed == [s for s in range(1, 51) if not 21 <= s <= 25 and not 31 <= s <= 40]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any("skipping the batches of steps 11-40 (10 past the alert" in e.message for e in monitor.events)


def test_the_weights_are_the_restored_state_trained_on_the_batches_after_the_skip_only():
    model, opt, monitor = setup()
    saved = {}
    train(model, opt, monitor, 50, nan_at=STRETCH, saved=saved, fed=[])
    assert_replayed(model, opt, saved[10], first=40, steps=10)  # batches 41-50, after the last skip


def test_a_loop_that_never_asks_skip_batch_gets_no_skip_ahead_and_stops_at_max_rollbacks():
    # its batches past the alert would be fed anyway: a range that said "skipped" would lie
    model, opt, monitor = setup()
    train(model, opt, monitor, 50, nan_at=STRETCH)
    assert [r["skipped_steps"] for r in monitor.rollback.done] == [[11, 15], [11, 20], [11, 25]]
    assert all(r["skipped_ahead"] == 0 for r in monitor.rollback.done)
    assert monitor.stop_reason is not None and "max_rollbacks=3" in monitor.stop_message


def test_the_skip_ahead_ends_at_the_runs_last_step():
    model, opt, monitor = setup()
    monitor.total_steps = 23
    train(model, opt, monitor, 23, nan_at=STRETCH, fed=[])
    assert monitor.rollback.done[-1]["skipped_steps"] == [11, 23] and monitor.step == 23


def _spike(step):
    return Event("loss_spike", ALERT, f"Loss spike at step {step}", step, values={"ratio": 5.0})


@pytest.mark.parametrize("warmup", [False, True])
def test_trouble_back_right_after_a_skip_is_the_data_unless_the_lr_is_new_to_the_state_restored(warmup):
    # constant LR: the state of step 10 trained at the LR the run meets after the skip, so the
    # next batches are bad too (skip ahead); in a warmup the run meets an LR that state never
    # trained at: that LR is the new thing (no skip ahead; the cut is advise's)
    lr_at = (lambda step: LR * step / 40) if warmup else None
    model, opt, monitor = setup()
    train(model, opt, monitor, 20, lr_at=lr_at, fed=[])
    monitor.rollback.check(monitor, [_spike(18)])
    train(model, opt, monitor, 5, first=20, lr_at=lr_at, fed=[])
    monitor.rollback.check(monitor, [_spike(22)])
    first, second = monitor.rollback.done
    assert first["cause"].startswith("the data") and first["skipped_steps"] == [16, 20]
    if warmup:
        assert second["cause"].startswith("the learning rate: the trouble came back right after the skip")
        assert second["skipped_ahead"] == 0 and second["skipped_steps"][1] == 25
    else:
        assert second["cause"].startswith("the data") and second["skipped_steps"] == [16, 30]


def test_a_resume_inside_a_skip_goes_on_skipping_and_keeps_the_ranges(tmp_path):
    model, opt, monitor = setup()
    monitor.close()
    with Monitor(model, opt, monitor.config, logdir=tmp_path / "run", console=False, run_info={"lr": LR}) as m:
        train(model, opt, m, 20, nan_at=STRETCH, fed=[])
        state = copy.deepcopy(m.state_dict())  # at step 20, inside the skip to step 25
    assert state["rollback"]["done"][-1]["skipped_steps"] == [11, 25]
    fed = []
    with Monitor(model, opt, monitor.config, logdir=tmp_path / "run", resume=state, console=False,
                 run_info={"lr": LR}) as resumed:
        train(model, opt, resumed, 30, first=20, nan_at=STRETCH, fed=fed)
    assert fed[:2] == [26, 27] and 31 not in fed and fed[-1] == 50  # 21-25 and 31-40 dropped
    # the resumed run's ring starts at its first step (25: the state of step 10, as restored);
    # the recurrence count goes on from the snapshot's rollbacks (10 past the alert)
    written = json.loads((tmp_path / "run" / "rollbacks.json").read_text())["rollbacks"]
    assert [(r["skipped_steps"], r["skipped_ahead"]) for r in written] == [([11, 15], 0), ([11, 25], 5),
                                                                            ([26, 40], 10)]
