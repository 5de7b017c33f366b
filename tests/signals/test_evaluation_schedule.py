"""The rate findings (slow improvement, plateau, underfitting) are left to the LR schedule
while it raises the LR and once it has annealed it to half its peak: a loss that slows then
is what the schedule does. The evaluations are HF run_clm.py's healthy runs (a 2-layer GPT-2,
eval every 100 steps; benchmarks/detection/REAL_SCRIPTS.md): (step, mean train loss since
the previous evaluation, eval loss, LR in use)."""
from trainvitals.signals.evaluation import EpochEvaluator

UNIGRAM = 5.8376  # of run_clm's training tokens
COSINE = [(100, 5.966, 5.495, 0.00297), (200, 5.181, 4.93, 0.00272), (300, 4.755, 4.727, 0.00226),
          (400, 4.476, 4.521, 0.00166), (500, 4.327, 4.376, 0.00104), (600, 4.183, 4.291, 0.000501),
          (700, 4.071, 4.258, 0.000132), (800, 4.082, 4.247, 1.32e-08)]  # lr 3e-3, cosine
RAMP = [(100, 6.522, 5.998, 0.000371), (200, 5.795, 5.588, 0.000746), (300, 5.394, 5.112, 0.00112),
        (400, 4.928, 4.799, 0.0015), (500, 4.627, 4.503, 0.00187), (600, 4.365, 4.395, 0.00225),
        (700, 4.179, 4.329, 0.00262), (800, 4.122, 4.236, 0.003)]  # warmup over the whole run to 3e-3


def _findings(evals, lr_of=lambda lr: lr):
    ev = EpochEvaluator(baseline_loss=UNIGRAM)
    return [(e.kind, e.step) for i, (s, t, v, lr) in enumerate(evals)
            for e in ev.update(i, t, v, lr_now=lr_of(lr), step=s, host_epoch=float("nan")).events
            if e.severity != "info"]


def test_an_annealed_cosine_run_is_not_told_it_plateaus_or_underfits():
    assert _findings(COSINE) == []
    # the same losses at a constant LR: the slowing is a finding (underfitting from step 600)
    flat = _findings(COSINE, lambda lr: 3e-3)
    assert ("underfitting", 600) in flat and ("plateau", 800) in flat


def test_a_run_whose_lr_still_rises_is_not_told_it_underfits():
    assert _findings(RAMP) == []
    assert ("underfitting", 800) in _findings(RAMP, lambda lr: 3e-3)


def test_the_schedule_state_survives_a_snapshot():
    ev = EpochEvaluator(baseline_loss=UNIGRAM)
    for i, (s, t, v, lr) in enumerate(COSINE[:5]):
        ev.update(i, t, v, lr_now=lr, step=s, host_epoch=float("nan"))
    back = EpochEvaluator(baseline_loss=UNIGRAM)
    back.load_state_dict(ev.state_dict())
    rest = [(e.kind, e.severity) for i, (s, t, v, lr) in enumerate(COSINE[5:], 5)
            for e in back.update(i, t, v, lr_now=lr, step=s, host_epoch=float("nan")).events]
    assert rest == []


def test_a_loss_that_barely_moves_while_the_lr_rises_is_not_lr_too_low():
    # run_clm.py's ramp to lr 0.5 over the whole run, scored from HF's trainer_state.json (no
    # warmup named): the loss barely moved from the 1st to the 2nd evaluation because the LR
    # was climbing past what the model takes, not because it was too low
    first, second = (100, 5.907, 5.718, 0.0825), (200, 5.867, 5.795, 0.166)

    def kinds(lr_second):
        ev = EpochEvaluator(baseline_loss=UNIGRAM)
        ev.update(0, first[1], first[2], lr_now=first[3], step=first[0], host_epoch=float("nan"))
        return [e.kind for e in ev.update(1, second[1], second[2], lr_now=lr_second, step=second[0],
                                          host_epoch=float("nan")).events]
    assert "lr_too_low" not in kinds(second[3])
    assert "lr_too_low" in kinds(first[3])  # the same losses at a constant LR
