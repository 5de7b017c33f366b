"""Events: every alert or finding a detector raises.

An event has a stable ``kind`` (never renamed), a ``severity``, a step and/or epoch,
a one-line message, concrete suggestions and the values it was computed from.
Detectors return events; they never print or log them (sinks do).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["Event", "Suggestion", "INFO", "WARNING", "ALERT", "SEVERITIES", "KINDS"]

INFO = "info"
WARNING = "warning"
ALERT = "alert"
SEVERITIES = (INFO, WARNING, ALERT)

# Stable event kinds (DESIGN.md). Add kinds as needed; never rename one.
KINDS = (
    "nonfinite_loss",
    "loss_spike",
    "loss_divergence",
    "unigram_collapse",
    "loss_above_init",
    "early_loss_jump",
    "mean_gain_absolute",
    "mean_gain_drift",
    "nonfinite_gradients",
    "vanishing_gradients",
    "grad_norm_jump",
    "frozen_parameters",
    "intentionally_frozen",
    "slow_improvement",
    "overfitting",
    "plateau",
    "underfitting",
    "lr_too_low",
    "lr_too_high",
    "no_learning",
    "bad_batch",
    "gain_not_measurable",
    "val_loss_above_best",
    "unigram_stall",
    "unigram_plateau",
    "loss_creep",
    "action",
    "cleared",
)


class Suggestion(str):
    """A suggestion's sentence (the `str` itself) and `change`, the settings it proposes
    in host-neutral names (`{"lr": 1.0e-03}`; empty for a check such as "Check the
    batch at step 52"). Built by `trainvitals.signals.advice`, so the two agree; a plain
    `str` among an event's suggestions is a suggestion with no change."""
    change: Mapping[str, Any]

    def __new__(cls, text: str, change: Mapping[str, Any] | None = None) -> "Suggestion":
        obj = super().__new__(cls, text)
        obj.change = MappingProxyType(dict(change or {}))
        return obj

    def __add__(self, more: str) -> "Suggestion":
        """The sentence extended ("..., and resume from a snapshot"), the same change."""
        return Suggestion(str(self) + more, self.change)

    def __reduce__(self):
        return (Suggestion, (str(self), dict(self.change)))


def change_of(suggestion: str) -> dict[str, Any] | None:
    """The change `suggestion` proposes (None: none, a check or a plain sentence)."""
    change = getattr(suggestion, "change", None)
    return dict(change) if change else None


@dataclass(frozen=True)
class Event:
    kind: str
    severity: str
    message: str
    step: int | None = None
    epoch: int | None = None
    suggestions: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity={self.severity!r}: allowed values are {SEVERITIES}")
        object.__setattr__(self, "suggestions", tuple(self.suggestions))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (non-finite floats become the strings 'nan', 'inf', '-inf')."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "step": self.step,
            "epoch": self.epoch,
            "message": self.message,
            "suggestions": [str(s) for s in self.suggestions],
            "changes": [change_of(s) for s in self.suggestions],  # one per suggestion, None: no change
            "values": {k: _json_safe(v) for k, v in self.values.items()},
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Event":
        return cls(
            kind=d["kind"],
            severity=d["severity"],
            message=d.get("message", ""),
            step=d.get("step"),
            epoch=d.get("epoch"),
            suggestions=_suggestions(d.get("suggestions", ()), d.get("changes")),
            values={k: _from_json(v) for k, v in d.get("values", {}).items()},
            source=d.get("source", ""),
        )

    def where(self) -> str:
        parts = []
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)


def _suggestions(texts, changes) -> tuple[str, ...]:
    changes = list(changes or ())
    return tuple(Suggestion(t, changes[i] if i < len(changes) and changes[i] else None)
                 for i, t in enumerate(texts))


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _from_json(v: Any) -> Any:
    if v in ("nan", "inf", "-inf"):
        return float(v)
    return v
