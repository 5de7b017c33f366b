"""`auto_adjust`'s rollback: back to the last good state, skip the batches that did it,
cut the learning rate when the evidence says it is the cause.

With `auto_adjust` the `Monitor` keeps, in host memory, a ring of recent states (model,
optimizer, the step-level detectors, the epoch's loss tallies): one at the first step,
then one at the first logging step `rollback_every` steps after the previous one, the
last `rollback_keep` of them, each only when its parameters are finite and no trigger is
raised. When a trigger alert is raised (a loss spike, divergence or collapse, a
non-finite loss or gradients, a gradient-gain alert), the monitor, on every rank alike
(the detectors see the same reduced figures):

1. finds where the trouble began: the spike's step, the divergence's running minimum,
   the collapse's best step, then earlier still past any warning sign in between;
2. decides whether the LR is to blame: a divergence, a collapse, a drift of the gradient
   gain, trouble that came back within a ring's span of the previous rollback, or right
   after its skip at an LR the state restored never trained at (a single bad batch is not
   the LR's fault, nor trouble right after a skip at an LR already trained at: the next
   batches are bad too); then the cut is the change `trainvitals
   advise` recommends (`advise.recommend`, asked with the run's events and its peak LR,
   or the LR in use where the loop raised it higher: never a second opinion);
3. restores the newest state taken before the trouble (else the newest snapshot on disk
   before it, from `Rollback.disk`); with an LR cut, the newest of those whose weights
   never trained at more than twice the new LR, if the ring holds one (advise's finest
   cut is /2: above that the weights trained at an LR it calls too high). The step
   counter, the data position and the LR schedule go on: the batches of the steps in
   between are skipped, not replayed (as PaLM did); the LR cut applies from the next step.
   Where the data's trouble came back right after the previous skip and the host drops
   batches it has not fed (it asks `Monitor.skip_batch()`), the skip goes on past the
   alert: `every` steps, doubling with each recurrence in a row;
4. records it: an `action` event and the run directory's `rollbacks.json`.

After `max_rollbacks` rollbacks the next trigger stops the run (`StopReason.AUTO_ADJUST`),
the reason naming every rollback. A host that cannot restore in place (HF's `Trainer`)
sets `can_restore = False`: a trigger then stops the run, naming the step to go back
before and the steps whose batches to skip.
"""
from __future__ import annotations

import copy
import json
import math
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from trainvitals import distributed as dist
from trainvitals.events import ALERT, INFO, Event
from trainvitals.monitor.outbox import StopReason
from trainvitals.signals.advice import fmt_lr

if TYPE_CHECKING:
    from trainvitals.monitor.monitor import Monitor

__all__ = ["Rollback", "TRIGGERS", "FILE_NAME"]

TRIGGERS = ("loss_spike", "loss_divergence", "unigram_collapse", "nonfinite_loss", "nonfinite_gradients",
            "loss_above_init", "early_loss_jump", "mean_gain_absolute", "mean_gain_drift", "max_gain_jump",
            "grad_norm_jump")
# the learning rate's fault: the run drifted there (a single bad batch does not)
_LR_CAUSES = ("loss_divergence", "unigram_collapse", "early_loss_jump", "mean_gain_absolute", "mean_gain_drift")
# ... and so is a jump of the gradient that held for checks in a row (it grew over steps)
_JUMPS = ("max_gain_jump", "grad_norm_jump")
# trouble that starts within this many steps after a rollback's skip is the next batches'
# (or, at an LR the state restored never trained at, that LR's)
_DATA_AGAIN = 3
_GAIN = ("mean_gain_absolute", "mean_gain_drift") + _JUMPS
_CAUSES = {"data": "the data: a bad stretch of batches",
           "drift": "the learning rate: the run drifted there",
           "recurred": "the learning rate: the trouble came back after a rollback",
           "unseen": "the learning rate: the trouble came back right after the skip, at an LR the state "
                     "restored had never trained at"}
# signs the trouble had begun: the state restored must be older than the first
_SIGNS = TRIGGERS + ("bad_batch",)
# where each trigger says the trouble began, when it is not the alert's own step
_ORIGIN = {"loss_divergence": "min_step", "unigram_collapse": "best_step"}
FILE_NAME = "rollbacks.json"


@dataclass
class _State:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    detectors: dict[str, Any]  # the step-level detectors' state_dicts: "loss", "gradients"
    tallies: dict[str, Any]  # the monitor's epoch and evaluation-span loss sums
    lr_max: float | None = None  # the highest LR in use of the updates that made these weights (None: unknown)
    scaler: dict[str, Any] | None = None  # the GradScaler's state (its loss scale), where one is in use
    source: str = "memory"


class Rollback:
    """The ring of good states and the rollbacks made; the `Monitor` drives it."""

    def __init__(self, every: int, keep: int, limit: int) -> None:
        self.every, self.limit = every, limit
        self.ring: deque[_State] = deque(maxlen=keep)
        self.done: list[dict[str, Any]] = []  # the rollbacks made (JSON-safe; kept across a resume)
        self.can_restore = True
        self.path: Path | None = None  # where rollbacks.json goes (the run directory), rank 0
        self.disk: Callable[[], list[tuple[int, Path]]] | None = None  # (step, path) of on-disk snapshots
        self._last_kept: int | None = None
        self._lr_max = 0.0  # the highest LR in use of the updates that made the weights now
        self._restored_lr: float | None = None  # the lr_max of the state the last rollback restored
        self.drops = False  # the host drops the batches of steps ahead (it asks `Monitor.skip_batch()`)
        self.scaler: torch.amp.GradScaler | None = None  # the loop's enabled GradScaler, restored with the optimizer

    # --- keeping states ------------------------------------------------------------------
    def before_update(self, monitor: Monitor, lr: float | None, grad_scale: Any = None) -> None:
        """Every step, before its update at LR `lr` (the one in use): the state to fall back
        to at the start of this session (at its first step), and the LR the weights saw.
        `grad_scale`: what the loop passed `after_backward` (a GradScaler is kept with the states)."""
        if isinstance(grad_scale, torch.amp.GradScaler) and grad_scale.is_enabled():
            self.scaler = grad_scale
        if not self.ring and monitor.optimizer is not None and self.can_restore:
            self._keep(monitor)
        if isinstance(lr, (int, float)) and math.isfinite(lr):
            self._lr_max = max(self._lr_max, float(lr))

    def check(self, monitor: Monitor, events: list[Event]) -> None:
        """After a logging step's detectors: roll back on a trigger, else maybe keep a state."""
        policy = monitor.config.on_nonfinite_loss
        triggers = [e for e in events if e.kind in TRIGGERS and e.severity == ALERT and e.step is not None
                    and not (e.kind == "nonfinite_loss" and policy == "skip_step")  # a skipped step did no harm
                    and not (e.kind == "loss_above_init" and e.step <= 1)]  # the initialisation's: no state fixes it
        if triggers:
            if monitor.stop_reason is None:
                self._roll_back(monitor, triggers)
        elif (self._last_kept is None or monitor.step - self._last_kept >= self.every) and self.can_restore \
                and monitor.optimizer is not None and not any(e.kind in _SIGNS and e.severity != INFO for e in events):
            self._keep(monitor)

    def _keep(self, monitor: Monitor) -> None:
        from trainvitals.training.snapshot import params_finite
        if not params_finite(monitor.model):
            return
        self.ring.append(_State(monitor.step, _copy(monitor.model.state_dict(), "cpu"),
                                _copy(monitor.optimizer.state_dict(), "cpu"),
                                {k: copy.deepcopy(p.state_dict()) for k, p in _detectors(monitor).items()},
                                _tallies(monitor), self._lr_max,
                                # a host sync (the scale's .item()), on the steps a state is kept only
                                self.scaler.state_dict() if self.scaler is not None else None))
        self._last_kept = monitor.step

    # --- rolling back --------------------------------------------------------------------
    def _roll_back(self, monitor: Monitor, triggers: list[Event]) -> None:
        first = min(triggers, key=lambda e: e.step)
        now, kinds = monitor.step, sorted({e.kind for e in triggers})
        start = min(_origin(e) for e in triggers)
        what = f"{', '.join(kinds)} at step {first.step}"
        before = _peak_lr(monitor)
        cause, (after, change) = self._cause(triggers, start), (None, "")
        if cause != "data":
            after, change = _advised_lr(monitor)
            after = after if after is not None and before and after < before else None
            if after is None and all(e.kind in _GAIN for e in triggers):
                return  # gain alerts alone that advise finds too weak to change the LR for: no failure yet
        if len(self.done) >= self.limit:
            made = "; ".join(_short(r) for r in self.done)
            return self._stop(monitor, f"auto_adjust: {what}, after {len(self.done)} rollback(s), the most "
                                       f"max_rollbacks={self.limit} allows ({made or 'none'}); stopping")
        if not self.can_restore or monitor.optimizer is None:
            return self._stop(monitor, f"auto_adjust: {what}; this host cannot restore a state in place: resume "
                                       f"from a checkpoint taken before step {start} and skip the batches from "
                                       f"there to step {now}" + (f"; {change}" if after is not None else "")
                                       + "; stopping")
        # a cut of the LR says the weights trained at more than twice the new one (advise's finest
        # cut is /2: within that, the LR is as right as advise can tell) are suspect too
        state, start, why = self._pick(start, monitor.events, 2 * after if after is not None else None)
        if state is None:
            return self._stop(monitor, f"auto_adjust: {what}; no state taken before step {start} is left to roll "
                                       f"back to (in memory: steps {[s.step for s in self.ring]}); stopping")
        _restore(monitor, state)
        if self.scaler is not None and state.scaler:  # the loss scale goes back with the optimizer state
            self.scaler.load_state_dict(copy.deepcopy(state.scaler))
        self._lr_max = state.lr_max if state.lr_max is not None else self._lr_max
        while self.ring and self.ring[-1].step > state.step:  # taken inside the trouble
            self.ring.pop()
        self._last_kept = now
        self._restored_lr = state.lr_max
        if after is not None and not monitor.scale_lr(after / before):
            change += " (this host cannot set the LR: set it yourself)"
        ahead = self._ahead(monitor) if cause == "data" and self._again(start) else 0
        record = {"rollback": len(self.done) + 1, "at_step": now, "trigger": kinds, "trigger_step": first.step,
                  "trouble_from": start, "restored_step": state.step, "restored_from": state.source,
                  "skipped_steps": [state.step + 1, now + ahead], "skipped_ahead": ahead, "cause": _CAUSES[cause],
                  "lr_before": before, "lr_after": after if after is not None else before, "change": change}
        self.done.append(record)
        lr = (f"learning rate {fmt_lr(before)} → {fmt_lr(after)} ({change})" if after is not None
              else "learning rate kept" + (f" ({change or 'advise recommends no LR change'})"
                                           if cause != "data" else ""))
        monitor.emit(Event("action", INFO, f"auto_adjust: rollback {len(self.done)}/{self.limit} at step {now}: "
                                           f"{what}; restored the state of step {state.step} ({state.source}{why}), "
                                           f"skipping the batches of steps {state.step + 1}-{now + ahead}"
                                           + (f" ({ahead} past the alert: the trouble came back right after "
                                              f"the previous skip)" if ahead else "") + "; cause: "
                                           f"{_CAUSES[cause]}; {lr}", now, monitor.epoch, values=record,
                           source="auto_adjust"))
        self.write()

    def _cause(self, triggers: list[Event], start: int) -> str:
        """"data", or the learning rate's fault: "drift", "recurred", "unseen"."""
        last = self.done[-1]["skipped_steps"][1] if self.done else None
        if self._again(start):
            # from the first batches after a skip, on a state that was good: the next batches
            # are bad too, unless the run met an LR there that the state restored never trained
            # at (a warmup, a raise): then that LR is the new thing
            seen = self._restored_lr
            return "unseen" if seen is not None and self._lr_max > seen else "data"
        if last is not None and start - last <= self.every * self.ring.maxlen:
            return "recurred"
        return "drift" if any(_blames_lr(e) for e in triggers) else "data"

    def _again(self, start: int) -> bool:
        """Whether trouble beginning at `start` came back within `_DATA_AGAIN` steps after the last skip."""
        return bool(self.done) and start - self.done[-1]["skipped_steps"][1] <= _DATA_AGAIN

    def _ahead(self, monitor: Monitor) -> int:
        """Steps to skip past the alert, the data's trouble having come back right after the
        previous skip: `every` the first time, doubling with each recurrence in a row (a stretch
        longer than one skip is passed within a few rollbacks; PaLM skipped 200-500 batches).
        0 where the host does not drop batches it has not fed (it never asked `skip_batch`)."""
        if not self.drops:
            return 0
        streak = 0
        for r in reversed(self.done):
            if not r.get("skipped_ahead"):
                break
            streak += 1
        ahead = self.every * 2 ** streak
        end = monitor.total_steps
        return max(0, min(ahead, end - monitor.step)) if end else ahead

    def skipping(self, step: int) -> bool:
        """Whether step `step`'s batches are skipped: inside the last rollback's skip, past its alert."""
        return bool(self.done) and self.done[-1]["at_step"] < step <= self.done[-1]["skipped_steps"][1]

    def _pick(self, start: int, events: list[Event], lr_limit: float | None) -> tuple[_State | None, int, str]:
        """The newest state older than the trouble, which began at its first warning sign:
        the first of the signs before `start`, each within `every` steps of the next; with
        `lr_limit`, the newest of those trained at no higher an LR, if one is left."""
        signs = sorted({e.step for e in events if e.kind in _SIGNS and e.severity != INFO and e.step is not None})
        for step in reversed(signs):
            if start - self.every <= step < start:
                start = step
        before = [s for s in self.ring if s.step < start]
        calm = [s for s in before if lr_limit is not None and s.lr_max is not None and s.lr_max <= lr_limit]
        if calm or before:
            return (calm or before)[-1], start, (f", the newest trained at an LR under {fmt_lr(lr_limit)}"
                                                  if calm and calm[-1] is not before[-1] else "")
        for step, path in reversed(self.disk() if self.disk is not None else []):
            if step < start:
                return _from_snapshot(step, path), start, ""
        return None, start, ""

    def _stop(self, monitor: Monitor, message: str) -> None:
        monitor.emit(Event("action", INFO, message, monitor.step, monitor.epoch,
                           values={"rollbacks": len(self.done)}, source="auto_adjust"))
        monitor.request_stop(StopReason.AUTO_ADJUST, message)

    # --- state ---------------------------------------------------------------------------
    def write(self) -> None:
        """rollbacks.json in the run directory: every rollback, its skipped steps (rank 0)."""
        if self.path is None or not dist.is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"rollbacks": self.done}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"done": copy.deepcopy(self.done), "lr_max": self._lr_max, "restored_lr": self._restored_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = copy.deepcopy(state.get("done", []))
        self.ring.clear()  # the states of the run before: this one keeps its own
        self._last_kept = None
        self._lr_max = float(state.get("lr_max", 0.0))
        self._restored_lr = state.get("restored_lr")
        self.write()


def _blames_lr(e: Event) -> bool:
    return e.kind in _LR_CAUSES or (e.kind in _JUMPS and (e.values.get("checks_in_a_row") or 1) >= 2)


def _origin(e: Event) -> int:
    at = e.values.get(_ORIGIN.get(e.kind, ""))
    return int(at) if isinstance(at, (int, float)) and not isinstance(at, bool) and at < e.step else e.step


def _short(r: dict[str, Any]) -> str:
    lr = f", LR {fmt_lr(r['lr_before'])} → {fmt_lr(r['lr_after'])}" if r["lr_before"] != r["lr_after"] else ""
    return (f"#{r['rollback']} at step {r['at_step']}: {'/'.join(r['trigger'])}, restored step "
            f"{r['restored_step']}, skipped {r['skipped_steps'][0]}-{r['skipped_steps'][1]}{lr}")


def _peak_lr(monitor: Monitor) -> float | None:
    """The peak LR the run now has: the one set times the cuts made, or the one in use
    where that is higher (raised on a resume or by the loop: the run trains at it)."""
    peak, now = monitor.run_info.get("lr"), monitor.current_lr()
    if not (isinstance(peak, (int, float)) and peak):
        return now
    peak *= monitor.lr_scale
    return max(peak, now) if isinstance(now, (int, float)) and math.isfinite(now) else peak


def _detectors(monitor: Monitor) -> dict[str, Any]:
    return {k: p for k, p in (("loss", monitor.loss), ("gradients", monitor.gradients)) if p is not None}


def _tallies(monitor: Monitor) -> dict[str, Any]:
    m = monitor
    return {"epoch": m.epoch, "evaluations": m._evaluations, "epoch_loss": list(m._epoch_loss),
            "eval_loss": list(m._eval_loss), "last_finite": m._last_finite, "before_nonfinite": m._before_nonfinite}


def _restore(monitor: Monitor, state: _State) -> None:
    """The state's weights, optimizer state and detectors, in place; the LR in use stays
    (the schedule goes on from here: the skipped steps are not replayed)."""
    monitor.model.load_state_dict(state.model)
    lrs = [{k: v for k, v in g.items() if k != "params"} for g in monitor.optimizer.param_groups]
    monitor.optimizer.load_state_dict(_copy(state.optimizer))  # a copy: the optimizer updates it in place
    for group, hyper in zip(monitor.optimizer.param_groups, lrs):
        group.update(hyper)
    for key, part in _detectors(monitor).items():
        if key in state.detectors:
            part.load_state_dict(copy.deepcopy(state.detectors[key]))
    t = state.tallies
    if t and (t["epoch"], t["evaluations"]) == (monitor.epoch, monitor._evaluations):
        # the skipped steps leave the epoch's and the evaluation span's train loss
        monitor._epoch_loss, monitor._eval_loss = list(t["epoch_loss"]), list(t["eval_loss"])
        monitor._last_finite, monitor._before_nonfinite = t["last_finite"], t["before_nonfinite"]


def _from_snapshot(step: int, path: Path) -> _State:
    from trainvitals.training.snapshot import read_snapshot
    saved = read_snapshot(path, map_location="cpu")
    m = saved["monitor"]
    tallies = {"epoch": m["epoch"], "evaluations": m.get("evaluations", m["epoch"]),
               "epoch_loss": m["epoch_loss"], "eval_loss": m.get("eval_loss", m["epoch_loss"]),
               "last_finite": m["last_finite"], "before_nonfinite": m["before_nonfinite"]}
    detectors = {k: m[k] for k in ("loss", "gradients") if m.get(k) is not None}
    return _State(step, saved["model"], saved["optimizer"], detectors, tallies,
                  scaler=saved.get("grad_scaler") or None, source=str(path))


def _advised_lr(monitor: Monitor) -> tuple[float | None, str]:
    """The LR `trainvitals advise` recommends for this run now (its `recommend`, given the
    run's events and settings, allowed to change the LR only), and its sentence."""
    from trainvitals.advise.recommend import recommend
    from trainvitals.analyze.readers import RunLog
    from trainvitals.analyze.replay import Analysis
    settings = {k: v for k, v in monitor.run_info.items() if isinstance(v, (int, float, str, bool))}
    settings["lr"] = _peak_lr(monitor)
    analysis = Analysis("live", events=list(monitor.events), steps=max(monitor.total_steps or 0, monitor.step))
    rec = recommend(analysis, RunLog("live", settings=settings), "trainvitals", settable={"lr"})
    new = rec.change.get("lr")
    return (float(new) if isinstance(new, (int, float)) else None), rec.sentence


def _copy(obj: Any, device: str | None = None) -> Any:
    """A deep copy whose tensors are new ones (on `device`: host memory for the ring)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device or obj.device, copy=True)
    if isinstance(obj, dict):
        return {k: _copy(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v, device) for v in obj)
    return copy.deepcopy(obj)
