"""What one evaluation found, how it is named, and the seed's console block for it.

An evaluation is named as its host names it: "Epoch 3" where evaluations are epoch ends
(the seed's naming, our `Trainer`), else by its number, step and the host's epoch:
"evaluation 4, step 400, epoch 0.64" (HF `eval_steps`, nanoGPT's `eval_interval`,
Lightning's `val_check_interval`). Numbers count from 1; `evaluation_epochs` counts
from 0 like epochs, so its default [2, 3] is the 3rd and 4th evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainvitals.events import INFO, Event

__all__ = ["EpochReport", "format_report", "evaluation_label", "evaluation_where", "report_event", "finite",
           "improvement"]

_RULE = "=" * 70
_SOURCE = "evaluation"


def evaluation_label(index: int, step: int | None = None, host_epoch: float | None = None) -> str:
    """The report's name of evaluation `index` (0-based): "Epoch 3" for an epoch end
    (`host_epoch` None), else "evaluation 4, step 400, epoch 0.64" ("evaluation 4, step
    400" where `host_epoch` is NaN: a host without epochs)."""
    if host_epoch is None:
        return f"Epoch {index}"
    parts = [f"evaluation {index + 1}"] + ([f"step {step}"] if step is not None else [])
    return ", ".join(parts + ([f"epoch {_epoch_text(host_epoch)}"] if math.isfinite(host_epoch) else []))


def evaluation_where(index: int, step: int | None = None, host_epoch: float | None = None) -> str:
    """Where an evaluation was, inside a sentence: "epoch 3", or "step 400"."""
    if host_epoch is None:
        return f"epoch {index}"
    return f"step {step}" if step is not None else f"evaluation {index + 1}"


def _epoch_text(epoch: float) -> str:
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:.2f}"


@dataclass
class EpochReport:
    """What the evaluator found at one evaluation (`epoch`: its 0-based number, the
    epoch where evaluations are epoch ends; `host_epoch`: the host's epoch, None there,
    NaN for a host without epochs)."""
    epoch: int
    evaluated: bool
    events: list[Event] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    step: int | None = None
    host_epoch: float | None = None

    @property
    def label(self) -> str:
        return evaluation_label(self.epoch, self.step, self.host_epoch)

    @property
    def where(self) -> str:
        return evaluation_where(self.epoch, self.step, self.host_epoch)

    @property
    def event_epoch(self) -> int | None:
        """The epoch an event of this evaluation carries: the host's, whole (None: it has none)."""
        if self.host_epoch is None:
            return self.epoch
        return int(math.floor(self.host_epoch)) if math.isfinite(self.host_epoch) else None


def format_report(report: EpochReport) -> str:
    """The seed's console block for one report: on the evaluations `evaluation_epochs`
    names, and on any other that raised a finding ('' for the rest)."""
    name = report.label
    cannot = f"⚠️  {name[0].upper()}{name[1:]}: Cannot evaluate ({report.reason})" if report.reason else ""
    issues = [e for e in report.events if e.severity != INFO]
    if not issues and (cannot or not report.evaluated):  # a finding that cleared is echoed as an event
        return cannot
    lines = [_RULE, f"POST-EPOCH EVALUATION ({name})", _RULE]
    lines += [cannot] if cannot else []
    if not issues and not cannot:
        lines.append("✅ All checks passed - training progressing well")
    elif issues:
        lines.append(f"🔴 {len(issues)} issue(s) detected:")
        for i, event in enumerate(issues, 1):
            lines += ["", f"{i}. {event.message}", "   Suggestions:"]
            lines += [f"     • {s}" for s in event.suggestions]
        lines.append("")
    lines += [f"ℹ️  {e.message}" for e in report.events if e.severity == INFO]
    return "\n".join(lines + [_RULE])


def report_event(kind: str, severity: str, message: str, report: EpochReport, suggestions, values) -> Event:
    """An event of the evaluation `report` describes, at its step and the host's epoch."""
    return Event(kind, severity, message, report.step, report.event_epoch, tuple(suggestions), values, _SOURCE)


def finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def improvement(before: float | None, after: float | None) -> float | None:
    """Relative improvement, positive when the loss fell."""
    if before is None or after is None or before <= 0:
        return None
    return (before - after) / before
