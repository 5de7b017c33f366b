"""The learning-rate check of the post-epoch evaluation: the train loss of the first two
evaluations (epochs 0 and 1, where evaluations are epoch ends).

A rise is `lr_too_high` (an alert), or `bad_batch` when the loss turned non-finite right
after a healthy step; a fall under `improvement_threshold` past the warmup is
`lr_too_low` (a warning). A rise smaller than the threshold is no move either way.
"""
from __future__ import annotations

from trainvitals.events import ALERT, WARNING, Event
from trainvitals.signals.advice import lengthen_warmup, shorten_warmup
from trainvitals.signals.evaluation_advice import LR_CUT_HARD, LR_RAISE, lr_change, num, tighten
from trainvitals.signals.evaluation_report import EpochReport, finite, improvement, report_event

__all__ = ["check_lr"]

# A step loss at most this far above the first evaluation's mean is healthy (the
# divergence check's climb): a non-finite loss right after it came from its batch.
_HEALTHY_CLIMB = 0.2


def check_lr(t0: float, raw_train: float, report: EpochReport, info: dict, threshold: float,
             last_finite: float | None = None) -> list[Event]:
    """`t0`: the first evaluation's train loss; `raw_train`: the second's (maybe non-finite);
    `last_finite`: then, the last finite step loss before the first non-finite one."""
    # a named warmup, or an LR in use higher than at the previous evaluation (a warmup the log does not name)
    warming = info["learning_rate"].in_warmup or bool(info.get("lr_rising"))
    t1 = finite(raw_train)
    lr, warmup = num(info, "lr"), num(info, "warmup_steps")
    span = "in epoch 1" if report.host_epoch is None else f"from the 1st to the 2nd evaluation ({report.where})"
    values = {"train_loss_0": t0, "train_loss_1": t1, "lr": lr}
    if t1 is None and last_finite is not None and last_finite <= (1 + _HEALTHY_CLIMB) * t0:
        return [_bad_batch_event(report, span, raw_train, last_finite, t0, values)]
    # A rise smaller than the improvement threshold is no move either way (a LoRA
    # fine-tune's first epochs: 5.952 -> 5.964, +0.2%); a too-high LR climbs by several %.
    if t1 is None or t1 > t0 * (1 + threshold):
        sugg = [lr_change(info, LR_CUT_HARD), lengthen_warmup(int(warmup), factor=2) if warmup
                else "Add or lengthen learning-rate warmup", tighten(info)]
        shown = raw_train if t1 is None else f"{t1:.3f}"
        return [report_event("lr_too_high", ALERT, f"Training loss rose {span}: {t0:.3f} → {shown}: "
                             "learning rate too high (instability)", report, sugg, values)]
    drop = improvement(t0, t1)
    if drop is None or drop >= threshold or warming:
        return []
    sugg = [lr_change(info, LR_RAISE),
            shorten_warmup(int(warmup)) if warmup
            else "Check warmup: a long warmup keeps the learning rate near zero early",
            "Check that the parameters are updating (frozen_parameters events)"]
    return [report_event("lr_too_low", WARNING, f"Training loss barely moved {span}: {t0:.3f} → {t1:.3f} "
                         f"({100 * drop:.1f}%, threshold: {100 * threshold:.1f}%): learning rate may be too "
                         "low (cold start)", report, sugg, {**values, "improvement": drop})]


def _bad_batch_event(report: EpochReport, span: str, raw_train: float, last: float, t0: float,
                     values: dict) -> Event:
    first = "epoch 0" if report.host_epoch is None else "1st evaluation"
    return report_event("bad_batch", ALERT, f"Training loss became {raw_train} {span} right after a healthy "
                        f"step loss {last:.3f} ({first} mean: {t0:.3f}): one bad batch, not the learning rate",
                        report,
                        ["Check the data of the step that went non-finite (the nonfinite_loss event names "
                         "it): extreme values, empty or corrupt sequences, wrong token ids",
                         "Resume from the last finite snapshot, skipping that batch",
                         "Set on_nonfinite_loss = \"skip_step\" so such a step is not applied"],
                        {**values, "last_finite_loss": last})
