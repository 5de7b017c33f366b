import json
import math

from trainvitals.events import Event
from trainvitals.signals.advice import (
    fmt_clip,
    fmt_lr,
    increase_lr,
    lengthen_warmup,
    reduce_lr,
    tighten_clip,
)
from trainvitals.signals.nonfinite import NonFiniteLossCheck


def test_one_alert_per_run_then_info_when_finite():
    check = NonFiniteLossCheck()
    assert check.update(2.5, step=410) == []
    assert check.update(2.4, step=411) == []
    (alert,) = check.update(math.nan, step=412, epoch=1)
    assert alert.kind == "nonfinite_loss" and alert.severity == "alert"
    assert alert.message == "Non-finite loss nan at step 412"
    assert alert.step == 412 and alert.epoch == 1
    assert math.isnan(alert.values["loss"])
    assert "Check the batch at step 412 for extreme values" in alert.suggestions
    # A thousand NaN steps must not print a thousand alerts.
    for s in range(413, 1413):
        assert check.update(math.inf if s % 2 else math.nan, step=s) == []
    (info,) = check.update(2.3, step=1413)
    assert info.severity == "info" and info.kind == "nonfinite_loss"
    assert info.values["repeats"] == 1000
    assert "1001 non-finite steps" in info.message
    assert check.update(2.2, step=1414) == []
    # It can fire again after clearing.
    (again,) = check.update(-math.inf, step=1500)
    assert again.severity == "alert" and "-inf" in again.message
    assert check.total == 1002


def test_suggestions_name_current_and_proposed_values():
    (ev,) = NonFiniteLossCheck().update(math.nan, step=3, lr=3e-4, gradient_clip=1.0)
    assert "Reduce learning rate: 3.0e-04 → 1.5e-04" in ev.suggestions
    assert "Tighten gradient clipping: 1.0 → 0.7" in ev.suggestions
    (ev,) = NonFiniteLossCheck().update(math.nan, step=3, lr=3e-4, gradient_clip=0.0)
    assert "Enable gradient clipping: none → 1.0" in ev.suggestions
    (ev,) = NonFiniteLossCheck().update(math.nan, step=3)
    assert any(s.startswith("Reduce learning rate") for s in ev.suggestions)


def test_event_survives_json():
    (ev,) = NonFiniteLossCheck().update(math.inf, step=9, lr=1e-3)
    back = Event.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back == ev


def test_resume_mid_run_keeps_counting_instead_of_realerting():
    losses = [1.0, math.nan, math.nan, math.nan, math.nan, 0.9, math.nan, 0.8]
    whole = NonFiniteLossCheck()
    expected = [whole.update(x, step=i) for i, x in enumerate(losses)]

    part = NonFiniteLossCheck()
    got = [part.update(x, step=i) for i, x in enumerate(losses[:3])]
    resumed = NonFiniteLossCheck()
    resumed.load_state_dict(json.loads(json.dumps(part.state_dict())))
    got += [resumed.update(x, step=i) for i, x in enumerate(losses[3:], start=3)]
    assert got == expected
    assert [e.severity for evs in got for e in evs] == ["alert", "info", "alert", "info"]


def test_advice_wording():
    assert fmt_lr(3e-4) == "3.0e-04"
    assert fmt_clip(1.0) == "1.0" and fmt_clip(0.7) == "0.7" and fmt_clip(0.49) == "0.49"
    assert reduce_lr(3e-4) == "Reduce learning rate: 3.0e-04 → 1.5e-04"
    assert reduce_lr(None) == "Reduce learning rate by 0.5x"
    assert increase_lr(1e-4) == "Increase learning rate: 1.0e-04 → 2.0e-04"
    assert tighten_clip(1.0) == "Tighten gradient clipping: 1.0 → 0.7"
    assert tighten_clip(0.5) == "Tighten gradient clipping: 0.5 → 0.35"
    assert tighten_clip(None) == tighten_clip(0) == "Enable gradient clipping: none → 1.0"
    assert lengthen_warmup(2000) == "Lengthen warmup: 2000 → 5000 steps"
    assert lengthen_warmup(2000, 3000) == "Lengthen warmup: 2000 → 3000 steps"
    assert lengthen_warmup(0, 500) == "Add warmup: none → 500 steps"
    assert "warmup" in lengthen_warmup(None)


def test_a_non_finite_validation_loss_is_an_alert_once_then_cleared():
    # HF's own log of a run whose batch 6 overflowed: the step loss it logs is the mean of the
    # finite ones (`logging_nan_inf_filter`), 4.93; the evaluation at step 10 gives eval_loss NaN
    from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
    from trainvitals.monitor.outbox import Outbox

    part, out = PostEpochEvaluationCallback(), Outbox()
    seen = []
    out.emit = lambda events, echo=True: seen.extend([events] if isinstance(events, Event) else events)
    part.report(out, 0, 10, 4.93, math.nan, 5e-4)
    part.report(out, 1, 20, math.nan, math.nan, 5e-4)
    (alert,) = [e for e in seen if e.kind == "nonfinite_loss"]
    assert alert.severity == "alert" and alert.step == 10
    assert alert.message == "Non-finite validation loss nan at step 10"
    # a healthy evaluation raises nothing; a finite one after the NaN clears it
    part.report(out, 2, 30, 3.1, 3.2, 5e-4)
    assert [(e.kind, e.severity, e.step) for e in seen if e.kind == "nonfinite_loss"][1:] == [
        ("nonfinite_loss", "info", 30)]
    healthy, quiet = PostEpochEvaluationCallback(), []
    out.emit = lambda events, echo=True: quiet.extend([events] if isinstance(events, Event) else events)
    healthy.report(out, 0, 10, 4.9, 4.8, 5e-4)
    assert [e for e in quiet if e.kind == "nonfinite_loss"] == []
