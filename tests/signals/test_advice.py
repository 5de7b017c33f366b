"""Advice names what the user sets: the peak LR, the LR now where it differs, the clip."""
import math

from trainvitals.signals.advice import fmt_lr, learning_rate, lr_value, reduce_lr
from trainvitals.signals.divergence import LossDivergenceDetector
from trainvitals.signals.unigram import UnigramCollapseDetector
from trainvitals.signals.loss_signals import LossSignals

PEAK, WARMUP = 2e-3, 100


def _in_warmup(step: int):
    return learning_rate(PEAK * step / WARMUP, PEAK, step, WARMUP)


def test_lr_advice_in_warmup_names_the_peak_and_the_lr_now():
    # the demo's case: lr 2e-3 with 100 warmup steps, advice given at step 46
    assert reduce_lr(_in_warmup(46)) == "Reduce learning rate: 2.0e-03 → 1.0e-03 (now 9.2e-04, in warmup)"


def test_lr_advice_after_warmup_names_the_lr_now_only_where_it_differs():
    assert reduce_lr(learning_rate(PEAK, PEAK, 300, WARMUP)) == "Reduce learning rate: 2.0e-03 → 1.0e-03"
    decayed = learning_rate(5e-4, PEAK, 300, WARMUP)
    assert reduce_lr(decayed, 1 / 3) == "Reduce learning rate: 2.0e-03 → 6.7e-04 (now 5.0e-04, on the schedule)"


def test_lr_advice_without_a_peak_names_the_lr_in_use_or_says_nothing_made_up():
    assert reduce_lr(learning_rate(3e-4)) == "Reduce learning rate: 3.0e-04 → 1.5e-04"
    assert reduce_lr(learning_rate(None)) == "Reduce learning rate by 0.5x"
    assert reduce_lr(learning_rate(0.0, None, 1, WARMUP)) == "Reduce learning rate by 0.5x"  # HF's step 1
    # a peak with an LR of 0 in use (a warmup from 0): the peak, and the 0
    assert reduce_lr(learning_rate(0.0, PEAK, 1, WARMUP)).endswith("(now 0.0e+00, in warmup)")
    assert lr_value(_in_warmup(46)) == PEAK * 46 / WARMUP and lr_value(1e-3) == 1e-3


def _spike(detector_update, lr, clip):
    events = []
    for step in range(1, 31):
        events += detector_update(2.0 + 0.01 * math.sin(step), step, lr=lr, gradient_clip=clip)
    events += detector_update(40.0, 31, lr=lr, gradient_clip=clip)
    return [e for e in events if e.kind == "loss_spike"]


def test_loss_spike_advice_names_the_peak_lr_and_the_clip():
    (spike,) = _spike(LossDivergenceDetector().update, _in_warmup(31), 1.0)
    assert spike.suggestions[:2] == (f"Reduce learning rate: 2.0e-03 → 1.0e-03 (now {fmt_lr(PEAK * 0.31)}, in warmup)",
                                     "Tighten gradient clipping: 1.0 → 0.7")
    assert not any("by 0.5x" in s for s in spike.suggestions)


def test_loss_spike_advice_says_enable_clipping_when_it_is_off():
    (spike,) = _spike(LossDivergenceDetector().update, learning_rate(PEAK, PEAK), None)
    assert "Enable gradient clipping: none → 1.0" in spike.suggestions


def test_loss_divergence_advice_names_lr_warmup_and_clip():
    d = LossDivergenceDetector(patience=5)
    events = []
    for step in range(1, 61):
        loss = 3.0 - 0.02 * step if step <= 30 else 2.4 + 0.1 * (step - 30)  # falls, then climbs
        events += d.update(loss, step, lr=learning_rate(PEAK, PEAK, step, WARMUP), gradient_clip=0.5)
    (div,) = [e for e in events if e.kind == "loss_divergence"]
    assert div.suggestions[0].startswith("Reduce learning rate: 2.0e-03 → 1.0e-03, and resume from a snapshot")
    assert div.suggestions[1:] == ("Lengthen warmup: 100 → 250 steps", "Tighten gradient clipping: 0.5 → 0.35")


def test_unigram_collapse_advice_names_the_peak_lr():
    c = UnigramCollapseDetector(3.0, patience=3)
    events = []
    for step, loss in enumerate([2.0] * 5 + [3.0] * 5, 1):
        events += c.update(loss, step, lr=learning_rate(1e-3, PEAK, step, WARMUP), gradient_clip=1.0)
    (col,) = [e for e in events if e.kind == "unigram_collapse"]
    assert col.suggestions[0].startswith("Reduce learning rate: 2.0e-03 → 1.0e-03 (now 1.0e-03, in warmup), and resume")
    assert "Tighten gradient clipping: 1.0 → 0.7" in col.suggestions


def test_loss_signals_hand_the_lr_and_clip_to_the_spike_check_and_keep_values_plain():
    s = LossSignals()
    events = []
    for step in range(1, 31):
        events += s.update(2.0 + 0.01 * math.sin(step), step, lr=_in_warmup(step), gradient_clip=1.0)[1]
    events += s.update(float("nan"), 31, lr=_in_warmup(31), gradient_clip=1.0)[1]
    (bad,) = [e for e in events if e.kind == "nonfinite_loss"]
    assert bad.suggestions[0] == f"Reduce learning rate: 2.0e-03 → 1.0e-03 (now {fmt_lr(PEAK * 0.31)}, in warmup)"
    assert bad.values["lr"] == PEAK * 31 / WARMUP  # the LR in use, a plain float
