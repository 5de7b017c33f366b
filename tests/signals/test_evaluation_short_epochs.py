"""Post-epoch evaluation judged by steps and LR phase, on epochs shorter than the warmup,
and a non-finite epoch caused by one bad batch.

Every table is a real `train-lm` run (2 blocks, d_model 32, batch 8x32 bytes, epochs of
10 steps, cosine schedule, seed 0): (step the epoch ended, train loss, val loss). The
unigram entropy of the training bytes is 3.264 nats.
"""
import math

from trainvitals.signals.evaluation import EpochEvaluator, format_report

UNIGRAM = 3.2641
LR = 2e-3

WARMUP_100 = [(10, 5.5300, 5.4582), (20, 5.3812, 5.2507), (30, 5.1573, 5.0089)]  # lr 2e-3, warmup 100
NO_WARMUP = [(10, 5.1220, 4.6827), (20, 4.3483, 4.0503), (30, 3.8417, 3.6981),      # lr 2e-3, warmup 0
             (40, 3.6089, 3.5357), (50, 3.5435, 3.4669), (60, 3.4660, 3.4348)]
COLLAPSE = [(10, 7.3278, 4.8730), (20, 4.0249, 3.7852), (30, 3.5230, 3.4357),       # lr 0.3, warmup 0
            (40, 3.4331, 3.3116), (50, 3.4729, 3.3212), (60, 3.4007, 3.4659), (70, 3.2680, 3.4509),
            (80, 3.4534, 3.2421)]
TOO_LOW = [(10, 5.5521, 5.5509), (20, 5.5471, 5.5434), (30, 5.5448, 5.5382)]        # lr 1e-5, warmup 10


def _run(table, warmup=None, lr=LR, with_steps=True, epochs=(2, 3)):
    ev = EpochEvaluator(list(epochs), 0.01, 0.3, 3, UNIGRAM)
    reports = []
    for epoch, (step, train, val) in enumerate(table):
        kw = {"step": step, "warmup_steps": warmup} if with_steps else {}
        reports.append(ev.update(epoch, train, val, lr=lr, **kw))
    return reports


def _findings(reports):
    return [(e.kind, e.epoch) for r in reports for e in r.events if e.severity != "info"]


def test_epochs_inside_the_warmup_raise_no_lr_or_no_learning_advice():
    # without the step the evaluator reads epoch 1 as a finished first epoch: the val loss
    # fell only 3.8% in it, so "no learning, reduce the LR", though the LR is at 20% of its peak
    assert ("no_learning", 1) in _findings(_run(WARMUP_100, with_steps=False))
    reports = _run(WARMUP_100, warmup=100)
    assert _findings(reports) == []
    assert "still warming up (step 30 of 100)" in format_report(reports[2])


def test_a_warmup_so_long_the_first_epoch_barely_moves_is_not_told_to_raise_the_lr():
    slow = [(10, 5.5510, 5.5463), (20, 5.5378, 5.5206)]  # lr 2e-3, warmup 1000: 0.24% in epoch 1
    assert ("lr_too_low", 1) in _findings(_run(slow, with_steps=False))
    assert _findings(_run(slow, warmup=1000)) == []


def test_short_epochs_after_the_warmup_are_judged_over_steps_not_one_epoch():
    # 4.4% in the 10 steps of epoch 3 is fast progress, not a loss stuck at the baseline
    assert ("no_learning", 3) in _findings(_run(NO_WARMUP, with_steps=False))
    assert _findings(_run(NO_WARMUP, warmup=0)) == []


def test_a_collapse_to_the_unigram_entropy_is_still_found():
    found = _findings(_run(COLLAPSE, warmup=0))
    assert found and found[0][0] == "no_learning" and found[0][1] <= 5  # step 60 at the latest
    event = next(e for r in _run(COLLAPSE, warmup=0, lr=0.3) for e in r.events if e.kind == "no_learning")
    assert event.suggestions[0].startswith("Reduce learning rate: 3.0e-01")


def test_a_too_low_lr_past_its_warmup_is_still_told_to_rise():
    found = _findings(_run(TOO_LOW, warmup=10, lr=1e-5))
    assert ("lr_too_low", 1) in found


# A corrupt batch at step 20 (the last of epoch 1): the loss is NaN there and the run stops.
BAD_BATCH_EPOCH_0 = 5.5300
BAD_BATCH_LAST_FINITE = 5.3018  # step 19


def _epoch_1_nonfinite(last_finite, epoch_0=BAD_BATCH_EPOCH_0):
    ev = EpochEvaluator([2, 3], 0.01, 0.3, 3, UNIGRAM)
    ev.update(0, epoch_0, 5.4582, lr=LR, step=10, warmup_steps=100)
    return ev.update(1, math.nan, math.nan, lr=LR, step=20, warmup_steps=100, last_finite_loss=last_finite)


def test_a_nan_right_after_a_healthy_step_blames_the_batch_not_the_lr():
    ev = EpochEvaluator([2, 3], 0.01, 0.3, 3, UNIGRAM)
    ev.update(0, BAD_BATCH_EPOCH_0, 5.4582, lr=LR)
    assert [e.kind for e in ev.update(1, math.nan, math.nan, lr=LR).events] == ["lr_too_high"]
    (event,) = _epoch_1_nonfinite(BAD_BATCH_LAST_FINITE).events
    assert event.kind == "bad_batch" and event.severity == "alert"
    assert "5.302" in event.message and "one bad batch" in event.message
    assert event.suggestions[0].startswith("Check the data")
    assert not any("learning rate" in s.lower() for s in event.suggestions)


def test_a_nan_after_the_loss_had_climbed_is_still_the_lr():
    # lr 1.0, no warmup: epoch 0 averaged 39.2 nats after a start at 5.55; had a NaN come
    # after a step like its 57.83 at step 8 (47% above that mean), the LR is to blame
    kinds = [e.kind for e in _epoch_1_nonfinite(last_finite=57.83, epoch_0=39.22).events]
    assert kinds == ["lr_too_high"]
