"""Map another writer's tag names onto ours before `analyze` replays a run.

A role is what a series means to the detectors (the step loss, the learning rate, ...);
each has one canonical tag, ours (DESIGN.md's tag table). A run's series are renamed to
the canonical tags from, first to last: `--tag ROLE=TAG`, the canonical tag itself,
a known convention (HF `Trainer`, from its TensorBoard log or its `trainer_state.json`).
Settings HF left as text summaries (`analyze.host_settings`) join the run's settings.

An epoch series (`train/epoch` in HF's logs: progress in epochs at each logged step,
1.0 at the end of the first) turns the step losses into epoch losses at each epoch's
last logged step, so the post-epoch checks run on such logs too (where `eval/loss` is
logged at epoch ends, its steps are those; logged every N steps, the replay evaluates
at each of them instead, with `span_means` of the step losses between). Step losses
logged as N-step means (HF with `logging_steps=N`) are weighted by the steps each
covers; exact when N divides the epoch, the mean of what was logged otherwise.
"""
from __future__ import annotations

import math
from dataclasses import replace

from trainvitals.analyze.host_settings import hf_settings
from trainvitals.analyze.readers import RunLog
from trainvitals.errors import ConfigError

__all__ = ["ROLES", "CONVENTIONS", "parse_tags", "apply_roles", "span_means"]

ROLES = {
    "step_loss": "train/step_loss",
    "lr": "train/lr",
    "grad_norm": "gradient_monitor/grad_norm",
    "epoch_loss": "train/epoch_loss",
    "val_loss": "val/loss",
    "mean_gain": "gradient_monitor/mean_gain",
    "max_gain": "gradient_monitor/max_gain",
    "epoch": "train/epoch",  # epoch progress (HF) or epoch index (Lightning): gives epoch losses
}
# Known writers' names for the roles; the first present is taken.
CONVENTIONS = {
    "HF Trainer": {"step_loss": "train/loss", "grad_norm": "train/grad_norm", "lr": "train/learning_rate",
                   "val_loss": "eval/loss", "epoch": "train/epoch"},
}
# Tags the replay raises something from on their own (val/loss needs epoch losses).
_USABLE = ("train/step_loss", "train/epoch_loss", "gradient_monitor/mean_gain", "gradient_monitor/max_gain",
           "gradient_monitor/grad_norm")
_USABLE_PREFIXES = ("weight_monitor/update_ratio/", "gradient_monitor/gain/")  # replay reads gains alone too
_SHOWN_TAGS = 10


def parse_tags(specs: list[str] | None) -> dict[str, str]:
    """`["step_loss=train_loss", ...]` -> {role: tag}; a bad one is a ConfigError."""
    out: dict[str, str] = {}
    for spec in specs or ():
        role, eq, tag = spec.partition("=")
        role, tag = role.strip(), tag.strip()
        if not eq or not tag:
            raise ConfigError(f"--tag {spec!r}: expected ROLE=TAG, e.g. --tag step_loss=train_loss")
        if role not in ROLES:
            raise ConfigError(f"--tag {spec!r}: unknown role {role!r}; valid roles are: {', '.join(ROLES)}")
        if out.get(role, tag) != tag:
            raise ConfigError(f"--tag {spec!r}: role {role!r} is already mapped to {out[role]!r}")
        out[role] = tag
    return out


def apply_roles(run: RunLog, tags: dict[str, str] | None = None) -> RunLog:
    """A copy of `run` with its series under the canonical tags (see the module doc).

    Raises ConfigError when the run has series but none that analyze can use, naming
    the tags it saw and the --tag syntax. A run with nothing at all is returned as is.
    """
    tags = tags or {}
    series = dict(run.series)
    problems = list(run.problems)
    for role, canonical in ROLES.items():
        source = tags.get(role)
        if source is not None and source not in series:
            problems.append(f"--tag {role}={source}: no such tag in this run")
            source = None
        if source is None and canonical not in series:
            source = next((c[role] for c in CONVENTIONS.values() if c.get(role) in series), None)
        if source is not None and source != canonical:
            series[canonical] = series.pop(source)
    if "train/epoch_loss" not in series and series.get("train/epoch") and series.get("train/step_loss"):
        epoch_losses = _epoch_losses(series["train/step_loss"], series["train/epoch"])
        if epoch_losses:
            series["train/epoch_loss"] = epoch_losses
    # settings another writer left (HF's args): ours, where written, win
    settings = {**hf_settings(getattr(run, "texts", {})), **run.settings}
    out = replace(run, series=dict(sorted(series.items())), problems=problems, settings=settings)
    if any(run.series.values()) and not _usable(out) and not any(map(_ours, out.series)):
        raise ConfigError(_no_usable_tag(run))  # ours but too short (e.g. only train/lr): no error
    return out


def _usable(run: RunLog) -> bool:
    return any(run.series.get(t) for t in _USABLE) or any(
        v for t, v in run.series.items() if t.startswith(_USABLE_PREFIXES))


def _ours(tag: str) -> bool:
    return tag in ROLES.values() or tag.startswith(("train/step_loss", "gradient_monitor/", "weight_monitor/",
                                                     "evaluation/", "data/"))


def _no_usable_tag(run: RunLog) -> str:
    seen = sorted(t for t, v in run.series.items() if v)
    shown = ", ".join(seen[:_SHOWN_TAGS]) + (f", ... ({len(seen)} in all)" if len(seen) > _SHOWN_TAGS else "")
    return (f"run {run.name}: no tag analyze knows (tags seen: {shown}); map yours with --tag ROLE=TAG, "
            f"e.g. --tag step_loss={seen[0]} (roles: {', '.join(ROLES)})")


def _epoch_index(values: list[float]):
    """(epoch index of a logged epoch value, whether values are progress).

    HF logs progress, k + the fraction done, so (k, k + 1] is epoch k (1.0 is the last
    step of epoch 0); Lightning logs the 0-based index itself. Integer values starting
    at 0 are read as the latter."""
    if min(values) == 0 and all(float(v).is_integer() for v in values):
        return int, False
    return (lambda e: math.ceil(e - 1e-6) - 1), True  # older HF versions round progress


def _epoch_losses(losses: list[tuple[int, float]], epochs: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Mean step loss of each complete epoch, at the epoch's last logged step.

    A logged loss stands for the steps since the previous one (an N-step mean), so each
    is weighted by its gap. An epoch is complete when a later one was logged, or when
    the progress reached its end. A non-finite loss makes its epoch's loss non-finite,
    as in the trainer. Nothing is derived if a complete epoch holds no logged loss (the
    replay numbers epochs by their order).
    """
    losses = list(losses)  # indexed one by one below: a list's items are the cheapest
    epochs = [(s, e) for s, e in epochs if math.isfinite(e) and e >= 0]
    if not epochs:
        return []
    index, progress = _epoch_index([e for _, e in epochs])
    last_step: dict[int, int] = {}
    for s, e in epochs:
        if index(e) >= 0:
            last_step[index(e)] = max(s, last_step.get(index(e), s))
    if not last_step:
        return []
    top, reached = max(last_step), max(e for _, e in epochs)
    ends = [last_step[k] for k in sorted(last_step) if k < top or (progress and reached >= k + 1 - 1e-6)]
    means = span_means(losses, ends)
    return [] if None in means else list(zip(ends, means))


def span_means(losses: list[tuple[int, float]], ends: list[int]) -> list[float | None]:
    """The mean step loss of each span (previous end, end] (None for a span with no
    logged loss), each logged loss weighted by the steps it stands for (an N-step mean)."""
    out, prev_step, i = [], 0, 0
    for end in ends:
        total = weight = 0.0
        while i < len(losses) and losses[i][0] <= end:
            step, value = losses[i]
            gap = max(1, step - prev_step)
            total, weight, prev_step, i = total + gap * value, weight + gap, step, i + 1
        out.append(total / weight if weight else None)
    return out
