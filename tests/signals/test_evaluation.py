"""Post-epoch evaluation: the seed's three scenarios are acceptance tests."""
import json

import pytest

from trainvitals.errors import ConfigError
from trainvitals.events import Event
from trainvitals.signals.evaluation import EpochEvaluator, EpochReport, format_report
from trainvitals.signals.lr_policy import PlateauLRPolicy

# The seed's Scenario tables, verbatim: (train, val) per epoch 0..3.
SCENARIO_1 = [(3.2, 3.5), (2.1, 2.8), (2.0, 2.7), (1.98, 2.68)]   # LR too high -> slow
SCENARIO_2 = [(4.5, 4.6), (4.2, 4.4), (4.0, 4.2), (3.9, 4.1)]     # underfitting
SCENARIO_3 = [(3.5, 3.6), (2.1, 2.8), (1.2, 2.6), (0.8, 2.7)]     # overfitting
HEALTHY = [(3.0, 3.1), (2.6, 2.7), (2.3, 2.4), (2.05, 2.15), (1.85, 1.95)]
RUN_INFO = {"lr": 3e-4, "scheduler": "constant", "dropout": 0.0, "weight_decay": 0.0,
            "d_model": 512, "n_layers": 6, "warmup_steps": 1000, "label_smoothing": 0.0,
            "epochs": 10}


def run(table, run_info=None, **kw):
    ev = EpochEvaluator(**kw)
    return [ev.update(e, t, v, run_info=run_info) for e, (t, v) in enumerate(table)]


def kinds(report):
    return [e.kind for e in report.events]


def all_kinds(reports):
    return {k for r in reports for k in kinds(r)}


def suggestions(report, kind):
    return [s for e in report.events if e.kind == kind for s in e.suggestions]


def test_scenario_1_is_slow_improvement_with_lr_and_schedule_advice_not_overfitting():
    reports = run(SCENARIO_1, RUN_INFO)
    assert kinds(reports[3]) == ["slow_improvement"]
    assert {"underfitting", "overfitting"}.isdisjoint(all_kinds(reports))
    sugg = suggestions(reports[3], "slow_improvement")
    assert "Reduce learning rate: 3.0e-04 → 1.5e-04" in sugg
    assert "Add a learning-rate decay schedule (cosine)" in sugg
    event = reports[3].events[0]
    assert event.severity == "warning" and event.epoch == 3
    assert "not overfitting" in event.message  # the 35% gap is named, and explained
    assert "0.7%" in event.message


def test_scenario_1_offline_gives_generic_lr_advice():
    sugg = suggestions(run(SCENARIO_1)[3], "slow_improvement")
    assert "Reduce learning rate by 0.5x" in sugg
    assert any("decay schedule" in s for s in sugg)


def test_scenario_2_is_underfitting_with_capacity_advice():
    reports = run(SCENARIO_2, RUN_INFO)
    assert kinds(reports[3]) == ["underfitting"]
    assert "overfitting" not in all_kinds(reports)
    sugg = suggestions(reports[3], "underfitting")
    assert "Increase d_model: 512 → 768" in sugg
    assert "Add layers: 6 → 8" in sugg
    assert "Train longer: 10 → 20 epochs" in sugg
    generic = suggestions(run(SCENARIO_2)[3], "underfitting")
    assert any("d_model" in s for s in generic) and any("layers" in s for s in generic)


def test_scenario_3_is_overfitting_with_regularization_advice():
    reports = run(SCENARIO_3, RUN_INFO)
    assert kinds(reports[3]) == ["overfitting"]
    assert "underfitting" not in all_kinds(reports)
    sugg = suggestions(reports[3], "overfitting")
    assert "Add dropout: 0.0 → 0.1 in attention and FFN layers" in sugg
    assert "Add weight decay: 0.0 → 0.01" in sugg
    assert any("epoch 2" in s for s in sugg)  # val was best at epoch 2: keep that snapshot
    assert "237.5%" in reports[3].events[0].message
    # Dropout already on: raise it rather than "add" it.
    more = suggestions(run(SCENARIO_3, {"dropout": 0.1})[3], "overfitting")
    assert "Increase dropout: 0.1 → 0.2 in attention and FFN layers" in more


def test_scenario_3_console_block_matches_the_seed_layout():
    lines = format_report(run(SCENARIO_3, RUN_INFO)[3]).split("\n")
    assert lines[0] == lines[2] == lines[-1] == "=" * 70
    assert lines[1] == "POST-EPOCH EVALUATION (Epoch 3)"
    assert lines[3] == "🔴 1 issue(s) detected:"
    assert lines[5].startswith("1. Overfitting")
    assert lines[6] == "   Suggestions:"
    assert lines[7] == "     • Add dropout: 0.0 → 0.1 in attention and FFN layers"


def test_healthy_run_passes_every_check():
    reports = run(HEALTHY, RUN_INFO, evaluation_epochs=range(5))
    assert all_kinds(reports) == set()
    text = format_report(reports[3])
    assert "✅ All checks passed - training progressing well" in text
    assert "issue" not in text


def test_metrics_are_logged_every_epoch_when_computable():
    reports = run(SCENARIO_1)
    assert set(reports[0].metrics) == {"train_val_gap"}
    assert reports[1].metrics["improvement_rate"] == pytest.approx(0.2)
    assert reports[3].metrics == pytest.approx(
        {"improvement_rate": 0.02 / 2.7, "train_val_gap": 0.7 / 1.98, "plateau_detected": 0.0})
    assert not reports[1].evaluated and reports[2].evaluated
    assert format_report(reports[1]) == ""  # nothing to say on an unevaluated quiet epoch


def test_plateau_is_flagged_after_the_window_of_flat_val_losses():
    flat = [(2.0, 2.2), (1.99, 2.19), (1.985, 2.185), (1.98, 2.18)]
    reports = run(flat, evaluation_epochs=(3,))
    assert reports[3].metrics["plateau_detected"] == 1.0
    assert "plateau" in kinds(reports[3])
    assert "Loss plateau detected (< 1% change for 3 epochs)" in format_report(reports[3])
    # A window of 4 epochs needs 3 flat steps: epoch 0 -> 1 was not flat here.
    assert run(flat[:1] + [(1.5, 1.7)] + flat[2:], plateau_window=4)[3].metrics[
        "plateau_detected"] == 0.0


@pytest.mark.parametrize("lr, suggestion", [(1e-5, "Increase learning rate: 1.0e-05 → 3.0e-05"),
                                            (None, "Increase learning rate by 3x")])
def test_flat_first_epoch_is_lr_too_low_even_outside_evaluation_epochs(lr, suggestion):
    ev = EpochEvaluator(evaluation_epochs=(2, 3))
    ev.update(0, 3.20, 3.30, lr=lr)
    report = ev.update(1, 3.19, 3.29, lr=lr)
    assert not report.evaluated
    assert kinds(report) == ["lr_too_low"]
    assert report.events[0].severity == "warning"
    assert suggestion in report.events[0].suggestions
    assert "Training loss barely moved" in format_report(report)


@pytest.mark.parametrize("epoch_1_train", [3.6, float("nan")])
def test_rising_first_epoch_is_lr_too_high_alert(epoch_1_train):
    ev = EpochEvaluator(evaluation_epochs=(2, 3))
    ev.update(0, 3.2, 3.3, lr=3e-4)
    report = ev.update(1, epoch_1_train, 3.5, lr=3e-4)
    assert kinds(report) == ["lr_too_high"]
    assert report.events[0].severity == "alert"
    assert "Reduce learning rate: 3.0e-04 → 1.0e-04" in report.events[0].suggestions


def test_lr_check_only_after_epoch_1():
    ev = EpochEvaluator(evaluation_epochs=())
    for e, (t, v) in enumerate([(3.2, 3.3), (2.5, 2.6), (2.6, 2.7), (2.6, 2.7)]):
        # the later rise is a finding of the diagnosis (every evaluation), not of the LR check
        assert not {"lr_too_high", "lr_too_low"} & set(kinds(ev.update(e, t, v)))


def test_no_learning_fires_at_the_unigram_entropy_and_not_below_it():
    stuck = [(3.30, 3.30), (3.26, 3.25), (3.25, 3.24), (3.25, 3.24)]
    reports = run(stuck, baseline_loss=3.26, evaluation_epochs=(3,))
    assert [kinds(r) for r in reports] == [[], ["no_learning"], [], ["no_learning"]]
    assert reports[1].events[0].severity == "alert"
    assert not reports[2].events  # persisting: not repeated between evaluations
    learning = run(HEALTHY, baseline_loss=3.26, evaluation_epochs=range(5))
    assert "no_learning" not in all_kinds(learning)


def test_no_learning_clears_with_an_info_event_when_the_model_starts_learning():
    reports = run([(3.3, 3.3), (3.25, 3.25), (2.5, 2.6)], baseline_loss=3.26)
    assert [(e.kind, e.severity) for e in reports[2].events] == [("no_learning", "info")]
    assert "✅ All checks passed" in format_report(reports[2])


def test_missing_val_loss_cannot_evaluate():
    ev = EpochEvaluator()
    for e in range(2):
        ev.update(e, 3.0 - e * 0.3, 3.1 - e * 0.3)
    report = ev.update(2, 2.2, None)
    assert report.reason == "no validation loss" and report.events == []
    assert format_report(report) == "⚠️  Epoch 2: Cannot evaluate (no validation loss)"


def test_resume_from_state_equals_uninterrupted():
    whole = run(SCENARIO_3, RUN_INFO, baseline_loss=3.4)
    first = EpochEvaluator(baseline_loss=3.4)
    for e, (t, v) in enumerate(SCENARIO_3[:2]):
        first.update(e, t, v, run_info=RUN_INFO)
    resumed = EpochEvaluator(baseline_loss=3.4)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    tail = [resumed.update(e, t, v, run_info=RUN_INFO) for e, (t, v) in enumerate(SCENARIO_3)
            if e >= 2]
    assert tail == whole[2:]


def test_replaying_an_epoch_after_restoring_an_older_snapshot_replaces_it():
    ev = EpochEvaluator()
    for e, (t, v) in enumerate(SCENARIO_1[:3]):
        ev.update(e, t, v)
    ev.update(2, 2.0, 2.7)  # epoch 2 again (crash and resume): no double-counting
    assert kinds(ev.update(3, *SCENARIO_1[3])) == kinds(run(SCENARIO_1)[3])


@pytest.mark.parametrize("kwargs, field", [
    ({"improvement_threshold": -1}, "improvement_threshold"),
    ({"plateau_window": 1}, "plateau_window"),
    ({"gap_threshold": 0}, "gap_threshold"),
    ({"evaluation_epochs": (2, -1)}, "evaluation_epochs"),
    ({"evaluation_epochs": 3}, "evaluation_epochs"),
    ({"baseline_loss": 0.0}, "baseline_loss"),
])
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        EpochEvaluator(**kwargs)


# --- PlateauLRPolicy ------------------------------------------------------------------
def report(epoch, val, *kinds_):
    events = [Event(k, "warning", k, epoch=epoch) for k in kinds_]
    return EpochReport(epoch, True, events, {}, None, val + 0.1, val)


def test_policy_halves_lr_on_a_plateau_and_says_so():
    policy = PlateauLRPolicy()
    assert policy.update(report(3, 2.0), 3e-4) == []
    (action,) = policy.update(report(4, 1.99, "plateau"), 3e-4)
    assert action.kind == "reduce_lr"
    assert (action.old_lr, action.new_lr) == (3e-4, pytest.approx(1.5e-4))
    assert action.event.kind == "action" and action.event.severity == "info"
    assert action.event.message == "auto_adjust: learning rate 3.0e-04 → 1.5e-04 after plateau at epoch 4"


def test_policy_respects_cooldown_and_min_lr():
    policy = PlateauLRPolicy(cooldown=1, min_lr=1e-4, early_stop_patience=None)
    lr, cuts = 4e-4, []
    for epoch in range(6):  # a plateau finding every epoch, val still creeping down
        actions = policy.update(report(epoch, 2.0 - 0.001 * epoch, "plateau"), lr)
        if actions:
            lr = actions[0].new_lr
            cuts.append((epoch, lr))
    # Cut, skip one epoch of cooldown, cut to the floor, then nothing left to cut.
    assert cuts == [(0, 2e-4), (2, 1e-4)]


def test_policy_leaves_a_val_loss_still_reaching_new_bests_alone_however_slowly():
    # a healthy run's decaying schedule ends in slow improvement: not a plateau to cut for
    policy = PlateauLRPolicy()
    vals = [2.97, 2.53, 2.39, 2.38, 2.375]
    assert [policy.update(report(e, v, *(("slow_improvement",) if e >= 3 else ())), 3e-3)
            for e, v in enumerate(vals)] == [[]] * 5
    (action,) = policy.update(report(5, 2.376), 3e-3)  # no new best: a plateau
    assert action.kind == "reduce_lr" and action.reason == "no val improvement"


def test_policy_takes_no_action_at_the_last_evaluation():
    # a cut or a stop there changes nothing: no step is left (the healthy run the benchmark
    # saw cut at its last evaluation); the best is still tracked
    policy = PlateauLRPolicy()
    policy.update(report(0, 2.0), 1e-3)
    assert policy.update(report(1, 2.1, "plateau"), 1e-3, final=True) == []
    assert policy.best == 2.0 and policy.epochs_since_best == 1
    stopping = PlateauLRPolicy(early_stop_patience=1, patience=5)
    stopping.update(report(0, 2.0), 1e-3)
    assert stopping.update(report(1, 2.1), 1e-3, final=True) == []
    assert [a.kind for a in stopping.update(report(1, 2.1), 1e-3)] == ["stop"]


def test_policy_cuts_after_patience_epochs_without_a_new_best():
    policy = PlateauLRPolicy(patience=2, early_stop_patience=None)
    assert policy.update(report(0, 2.0), 1e-3) == []
    assert policy.update(report(1, 2.1), 1e-3) == []
    (action,) = policy.update(report(2, 2.05), 1e-3)
    assert action.new_lr == pytest.approx(5e-4) and action.reason == "no val improvement"


def test_policy_stops_after_early_stop_patience_epochs_without_improvement():
    policy = PlateauLRPolicy(early_stop_patience=3)
    vals = [2.0, 1.8, 1.85, 1.9, 1.82]
    actions = [policy.update(report(e, v), 1e-3) for e, v in enumerate(vals)]
    stops = [a for acts in actions for a in acts if a.kind == "stop"]
    assert [s.epoch for s in stops] == [4]
    assert "best 1.800 at epoch 1" in stops[0].event.message
    assert policy.update(report(5, 1.9), 1e-3) == []  # stopped once, not again


def test_policy_resume_from_state_equals_uninterrupted():
    seq = [(0, 2.0, ()), (1, 1.99, ("plateau",)), (2, 1.99, ("plateau",)),
           (3, 1.985, ("plateau",)), (4, 2.0, ()), (5, 2.1, ())]

    def drive(policy, items, lr=1e-3):
        return [policy.update(report(e, v, *k), lr) for e, v, k in items]

    whole = drive(PlateauLRPolicy(), seq)
    first = PlateauLRPolicy()
    drive(first, seq[:2])
    resumed = PlateauLRPolicy()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert drive(resumed, seq[2:]) == whole[2:]


def test_evaluator_and_policy_together_cut_the_lr_on_scenario_1():
    # epoch 3 improves slowly (a new best still: no cut); epoch 4, flat, is a plateau
    ev, policy = EpochEvaluator(), PlateauLRPolicy()
    actions = [policy.update(ev.update(e, t, v, lr=3e-4), 3e-4)
               for e, (t, v) in enumerate(SCENARIO_1 + [(1.97, 2.681)])]
    assert actions[:4] == [[], [], [], []]
    assert actions[4][0].event.message == "auto_adjust: learning rate 3.0e-04 → 1.5e-04 after plateau at epoch 4"


@pytest.mark.parametrize("kwargs, field", [({"factor": 1.0}, "factor"), ({"patience": 0}, "patience"),
                                           ({"cooldown": -1}, "cooldown"), ({"min_lr": -1}, "min_lr"),
                                           ({"early_stop_patience": 0}, "early_stop_patience")])
def test_policy_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        PlateauLRPolicy(**kwargs)


def test_no_learning_waits_while_val_loss_is_still_falling_fast():
    ev = EpochEvaluator(evaluation_epochs=(1, 2, 3), baseline_loss=3.26)
    reports = [ev.update(e, t, v) for e, (t, v) in enumerate([(5.6, 5.3), (5.0, 4.9), (4.6, 4.5)])]
    assert not [e for r in reports for e in r.events if e.kind == "no_learning"]
    stuck = ev.update(3, 4.5, 4.49)  # stalled far above the unigram entropy
    assert [e.kind for e in stuck.events if e.severity == "alert"] == ["no_learning"]


def test_memorizing_run_is_overfitting_not_no_learning():
    # measured on the benchmark's label-noise run (3 KB of text, 25 passes an epoch): train
    # loss falls far under the unigram entropy (3.10) while val climbs back over it
    epochs = [(4.16, 3.12), (3.07, 3.30), (2.57, 3.65), (1.94, 4.02), (1.34, 4.29)]
    reports = run(epochs, baseline_loss=3.10, evaluation_epochs=range(5))
    # epoch 1 (train 3.07, at the baseline; val 3.30) may say no_learning; once train is
    # well under the baseline that clears and the diagnosis is overfitting
    later = [(e.kind, e.severity) for r in reports[2:] for e in r.events]
    assert ("no_learning", "alert") not in later
    assert ("overfitting", "warning") in later
