"""The post-epoch evaluation rules out the learning rate before it advises a cut or more
capacity, and calls a val loss above a uniform prediction's a failing run.

Every table is a real run of the advice benchmark's scenarios (benchmarks/advice,
160 steps, an evaluation every 40): (step, train loss, val loss). Our runs carry
`uniform_loss` (ln 256 bytes, ln 259 for translation) and the unigram entropy; HF runs
(GPT-2 from `GPT2Config`, byte vocabulary) carry `vocab_size`, as `analyze` reads it
from HF's model config.
"""
import math

from trainvitals.signals.evaluation import EpochEvaluator, format_report

LM_UNIGRAM, TR_UNIGRAM = 3.2641, 2.9780
# train-lm and train-translation at lr 1e-5 (warmup 20): the loss moves 1.5% in 160 steps
LM_LR_1E5 = [(40, 5.5390, 5.5271), (80, 5.5118, 5.4936), (120, 5.4879, 5.4720), (160, 5.4749, 5.4645)]
TR_LR_1E5 = [(40, 5.5499, 5.5353), (80, 5.5182, 5.5021), (120, 5.4902, 5.4813), (160, 5.4766, 5.4739)]
# train-lm at lr 3e-3, d_model 8, one layer: a fast fall, then a stall at the unigram entropy
LM_WIDTH_8 = [(40, 5.1301, 4.4109), (80, 3.8431, 3.5511), (120, 3.4057, 3.3387), (160, 3.3122, 3.2857)]
# HF Trainer at its default 5e-5 from scratch (width 32 and 48), and at 10x that (width 32)
HF_5E5 = [(40, 5.3028, 5.2120), (80, 5.1837, 5.1202), (120, 5.1097, 5.0755), (160, 5.0780, 5.0618)]
HF_5E5_W48 = [(40, 5.2206, 5.0492), (80, 5.0157, 4.9296), (120, 4.9220, 4.8696), (160, 4.8803, 4.8504)]
HF_5E4 = [(40, 4.8796, 4.5037), (80, 4.1790, 4.0270), (120, 3.8004, 3.8030), (160, 3.6466, 3.7394)]
# HF at lr 0.03, no warmup (width 48): fast to 3.17 by step 40, then slow
HF_3E2_W48 = [(40, 3.3177, 3.1694), (80, 3.1475, 3.1913), (120, 3.1221, 3.0403), (160, 3.0759, 3.0000)]
# HF at lr 1.0 (width 32, 48): val loss far above ln 256 = 5.545
HF_LR_1 = [(40, 61.7745, 65.8589), (80, 43.4169, 21.9306), (120, 17.1724, 9.6021), (160, 6.2921, 3.9288)]
HF_LR_1_W48 = [(40, 108.5807, 102.1015), (80, 79.3025, 56.5132), (120, 39.7560, 18.0658), (160, 11.5771, 5.9483)]


def _run(table, lr, info, baseline=None, warmup=0):
    ev = EpochEvaluator((2, 3), baseline_loss=baseline)
    info = {"lr": lr, "warmup_steps": warmup, **info}
    return [ev.update(i, t, v, lr=lr, run_info=info, step=s, warmup_steps=warmup)
            for i, (s, t, v) in enumerate(table)]


def _events(reports, severity=None):
    return [e for r in reports for e in r.events if e.severity != "info" and severity in (None, e.severity)]


def _suggestions(reports):
    return [str(s) for e in _events(reports) for s in e.suggestions]


def test_a_loss_that_never_left_its_start_is_told_to_raise_the_lr_not_cut_it():
    for table, unigram, uniform in ((LM_LR_1E5, LM_UNIGRAM, math.log(256)), (TR_LR_1E5, TR_UNIGRAM, math.log(259))):
        reports = _run(table, 1e-5, {"uniform_loss": uniform}, unigram, warmup=20)
        stuck = [e for e in _events(reports) if e.kind == "no_learning"]
        assert stuck and stuck[0].severity == "alert"
        first = stuck[0].suggestions[0]
        assert first.startswith("Increase learning rate: 1.0e-05 → 1.0e-04") and first.change == {"lr": 1e-4}
        assert "never left its starting level" in stuck[0].message
        assert not [s for s in _suggestions(reports) if s.startswith("Reduce learning rate")]


def test_a_fast_fall_that_stalls_at_the_unigram_entropy_is_no_lr_cut():
    reports = _run(LM_WIDTH_8, 3e-3, {"uniform_loss": math.log(256), "d_model": 8, "n_layers": 1},
                   LM_UNIGRAM, warmup=20)
    stuck = [e for e in _events(reports) if e.kind == "no_learning"]
    assert stuck and stuck[0].suggestions[0].startswith("Increase model capacity: d_model: 8 →")
    assert not [s for s in _suggestions(reports) if "learning rate:" in s]


def test_hf_default_lr_from_scratch_is_told_to_raise_the_lr_not_to_add_capacity():
    for table, width in ((HF_5E5, 32), (HF_5E5_W48, 48)):
        reports = _run(table, 5e-5, {"vocab_size": 256, "d_model": width, "n_layers": 2})
        found = _events(reports)
        assert found and {e.kind for e in found} <= {"slow_improvement", "plateau", "underfitting"}
        for e in found:  # every finding puts the raise first, and none cuts or resizes
            assert e.suggestions[0].startswith("Increase learning rate: 5.0e-05 → 5.0e-04"), e
            assert "learning rate is too low" in e.message
        sugg = _suggestions(reports)
        assert not [s for s in sugg if s.startswith("Reduce learning rate") or "d_model" in s or "layers" in s]
    # 10x that LR (5e-4) ends at val 3.74, 26% under 5e-5's 5.06: no finding left to raise it
    assert not _events(_run(HF_5E4, 5e-4, {"vocab_size": 256, "d_model": 32, "n_layers": 2}))


def test_underfitting_after_a_fast_fall_rules_the_lr_out_before_capacity():
    reports = _run(HF_3E2_W48, 0.03, {"vocab_size": 256, "d_model": 48, "n_layers": 2})
    under = [e for e in _events(reports) if e.kind == "underfitting"]
    assert under and under[0].suggestions[0].startswith("Reduce learning rate: 3.0e-02")
    assert [str(s) for s in under[0].suggestions].index("Increase d_model: 48 → 64") > 0


def test_a_val_loss_above_a_uniform_prediction_is_an_alert_with_a_strong_cut():
    info = {"vocab_size": 256, "d_model": 48, "n_layers": 2}
    reports = _run(HF_LR_1_W48, 1.0, info)
    for r in reports[2:]:  # the full reports (evaluations 2 and 3): val 18.07 and 5.95, over 5.545
        text = format_report(r)
        assert "All checks passed" not in text and "No learning" in text
    alert = next(e for e in _events(reports, "alert") if e.kind == "no_learning")
    assert alert.step == 80 and "worse than no model at all" in alert.message
    assert alert.suggestions[0].startswith("Reduce learning rate: 1.0e+00 → 1.0e-01")
    # our runs name the uniform loss themselves; once under it (val 3.93) the alert clears
    reports = _run(HF_LR_1, 1.0, {"uniform_loss": math.log(256)})
    assert [(e.kind, e.severity, e.step) for e in reports[3].events if e.kind == "no_learning"] == \
        [("no_learning", "info", 160)]
    assert "No learning" in format_report(reports[2])


def test_hf_default_lr_from_scratch_is_told_so_while_its_linear_schedule_decays():
    # HF's default schedule is linear to 0 over the run: the LR in use at the evaluations of
    # steps 40-160 of 160 is 75%, 50%, 25%, 0% of 5e-5. Annealing explains a slowing run that
    # learned, not a loss still near a uniform prediction's (ln 256 = 5.545; val 5.06)
    for table, width in ((HF_5E5, 32), (HF_5E5_W48, 48)):
        ev = EpochEvaluator((2, 3))
        info = {"lr": 5e-5, "warmup_steps": 0, "vocab_size": 256, "d_model": width, "n_layers": 2}
        reports = [ev.update(i, t, v, lr=5e-5, run_info=info, step=s, warmup_steps=0,
                             lr_now=5e-5 * (1 - s / 160)) for i, (s, t, v) in enumerate(table)]
        found = _events(reports)
        assert found and all(e.suggestions[0].startswith("Increase learning rate: 5.0e-05") for e in found)
