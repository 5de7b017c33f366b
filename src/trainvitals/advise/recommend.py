"""The one change a run should make next, chosen from the events its replay raised.

Detectors speak for themselves, each with its own suggestions; this module weighs
them into one recommendation for the run, in this order (the first that the evidence
supports and the host can apply wins):

1. **initialisation**: a first loss far above a uniform prediction (`loss_above_init`
   at the first step) is fixed at its root: `init_std`.
2. **learning rate too high**: an alert the loss itself shows (non-finite loss or
   gradients, spike, divergence, unigram collapse, a jump in the first steps), or a
   gradient gain that exploded (a block gain >= 50, a mean gain >= 10). The cut fits
   the evidence: /10 (from an LR above 3e-3, the top of the usual AdamW range, to a
   target kept between 3e-3 and 1e-2) when the run failed early (first such alert within the first quarter of
   its steps), when the loss went non-finite or collapsed, or when the model learned
   nothing; /2 for a late failure. Where the run's settings record clipping off, this
   cut (and 3's) also turns it on at 1.0: one change, both keys (a cut alone leaves
   the unclipped steps that blow the weights up).
   A failure the run got past (all of that evidence in its first quarter, at an LR
   inside the usual range, and the loss then fell far below where it was) is no
   collapse: /2, with the warmup lengthened x2.5 in the same change (the climb to the
   peak is what failed).
3. **a run that did not learn enough** (`no_learning`, `lr_too_low`, `underfitting`,
   `plateau`, `slow_improvement`). An LR that reached the floor of its decay in the
   first half of the run means the schedule decays too early (decay over the whole
   run). Otherwise the findings say which way (the post-epoch evaluation rules a
   too-low LR out before a cut or more capacity: its first suggestion), and this sizes
   it: a raise, under a 25% drop of the loss from initialisation, goes to 3e-3, the top
   of the usual AdamW range, under a 10% drop (the LR is orders of magnitude too low),
   else x3 (at most to it); a cut, at an AdamW LR above 1e-2 or for a collapse
   (`no_learning` cutting), is the same large cut as in 2; a
   `no_learning` that names no LR change, at a usual LR, means the model is too small
   (double `d_model`); warnings alone resize nothing.
4. **overfitting**: dropout +0.1 (at least 0.1, at most 0.3), else weight decay under
   0.1, else stop at the best epoch.

Alerts about the gradient gain alone, with gains under those bars and a loss that kept
falling, are weak evidence: noted, no change. A change to a setting that already has
that value, or one the host has no setting for, is skipped for the next candidate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trainvitals.advise.hosts import HOSTS, NEUTRAL, applicable
from trainvitals.analyze.readers import RunLog
from trainvitals.analyze.replay import Analysis
from trainvitals.events import INFO, Event, Suggestion
from trainvitals.signals.gain_gate import EXPLODED_BLOCK_GAIN, EXPLODED_MEAN_GAIN
from trainvitals.signals.advice import (increase_lr, learning_rate, lengthen_warmup, lower_init, reduce_lr,
                                        set_dropout, set_weight_decay, tighten_clip)

__all__ = ["Recommendation", "recommend"]

# the loss shows the failure
_LOSS_FAILURES = ("nonfinite_loss", "nonfinite_gradients", "loss_spike", "loss_divergence", "unigram_collapse",
                  "unigram_stall", "early_loss_jump", "loss_above_init", "lr_too_high")
# a stall at the unigram entropy is a collapse that came early (in warmup, before the loss
# ever went below): cut as hard
_SEVERE = ("nonfinite_loss", "nonfinite_gradients", "unigram_collapse", "unigram_stall", "early_loss_jump",
           "loss_above_init")
_GAIN = ("mean_gain_absolute", "mean_gain_drift", "max_gain_jump", "grad_norm_jump")
_STUCK = ("no_learning", "lr_too_low", "underfitting", "plateau", "slow_improvement")
_EXPLODED_BLOCK_GAIN, _EXPLODED_MEAN_GAIN = EXPLODED_BLOCK_GAIN, EXPLODED_MEAN_GAIN
_EARLY = 0.25  # share of the run within which a failure is "early"
_BARELY, _SLOW = 0.10, 0.25  # loss drop from initialisation: LR far too low, too low
_USUAL_LR_TOP = 3e-3  # the top of the usual AdamW range: a raise stops there
_HIGH_ADAMW_LR = 1e-2
_FLOOR = 0.2  # an LR under this share of its peak is at the end of its decay
_MAX_DROPOUT = 0.3  # overfitting raises dropout by 0.1 up to this, the top of the usual range
_RECOVERED = 0.9  # a loss that ended under this share of its lowest level before a failure got past it
# a failure no run gets past on its own: always the large cut
_COLLAPSE = ("nonfinite_loss", "nonfinite_gradients", "unigram_collapse", "unigram_stall")


@dataclass
class Recommendation:
    """`change` in host-neutral names ({} = change nothing), its `sentence`, `reason`
    (why this one, and how its size was chosen) and `evidence` (the events it rests on)."""
    change: dict[str, Any] = field(default_factory=dict)
    sentence: str = ""
    reason: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # weak evidence seen, skipped candidates
    # a check no setting makes, as data: {"frozen_parameters": [names]} (put them back in the optimizer)
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return bool(self.sentence)

    def to_dict(self) -> dict[str, Any]:
        return {"change": dict(self.change), "sentence": self.sentence, "reason": self.reason,
                "evidence": self.evidence, "notes": self.notes, "check": dict(self.check)}


def recommend(analysis: Analysis, run: RunLog, host: str, settable: set[str] | None = None) -> Recommendation:
    """One recommendation for `run` (its series and settings, canonical tags) from its
    replay `analysis`. `settable`: the neutral names this run's host can set (default:
    `host`'s table)."""
    ctx = _Context(analysis, run, host, settable)
    events = [e for e in analysis.events if e.severity != INFO]
    frozen = _frozen(events)
    if frozen is not None:
        return frozen
    for candidate in (_initialisation, _lr_too_high, _not_learning, _overfitting):
        rec = candidate(ctx, events)
        if rec is not None and rec.change:
            rec.notes = ctx.notes
            return rec
    weak = [e for e in events if e.kind in _GAIN]
    if weak:
        ctx.notes.append(f"{len(weak)} gradient-gain alert(s) (first: {weak[0].kind} at step {weak[0].step}) with "
                         f"no loss symptom and gains under {_EXPLODED_BLOCK_GAIN:g}: too weak to change a setting")
    return Recommendation(notes=ctx.notes)


class _Context:
    def __init__(self, analysis: Analysis, run: RunLog, host: str, settable: set[str] | None) -> None:
        self.settings = run.settings
        self.host, self.settable, self.notes = host, settable, []
        self.losses = [(s, v) for s, v in run.series.get("train/step_loss", []) if math.isfinite(v)]
        self.val = run.series.get("val/loss", [])
        self.steps = analysis.steps or (self.losses[-1][0] if self.losses else 0)
        self.lrs = [(s, v) for s, v in run.series.get("train/lr", []) if math.isfinite(v)]
        self.lr = _num(self.settings.get("lr")) or (max(v for _, v in self.lrs) if self.lrs else None)

    def got_past(self, failure: list[Event]) -> bool:
        """Whether the run recovered from `failure` (its LR-too-high evidence): an LR in the
        usual range, no collapse, all of it in the first quarter of the run, and the loss
        at the end (its last 10%) under 90% of its lowest level before the failure."""
        if not failure or self.lr is None or self.lr > _HIGH_ADAMW_LR or not self.steps or len(self.losses) < 4:
            return False
        steps = [e.step for e in failure]
        if any(e.kind in _COLLAPSE for e in failure) or None in steps or max(steps) > _EARLY * self.steps:
            return False
        before = [v for s, v in self.losses if s < min(steps)]
        tail = self.losses[-max(2, len(self.losses) // 10):]
        return bool(before) and sum(v for _, v in tail) / len(tail) < _RECOVERED * min(before)

    def clip_off(self) -> bool:
        """Clipping recorded off (`gradient_clip` none, 0 or inf); not recorded is unknown, not off."""
        if "gradient_clip" not in self.settings:
            return False
        v = self.settings["gradient_clip"]
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                             and not (0 < v < math.inf))

    def cut(self, factor: float) -> tuple[Suggestion, str]:
        """The LR cut by `factor`, with clipping turned on at 1.0 where the run has it off
        (one change, both keys, one sentence from the two helpers), and what to add to the reason."""
        s = reduce_lr(learning_rate(None, self.lr), factor)
        if not s.change or not self.clip_off():
            return s, ""
        clip = tighten_clip(None)
        if not self.can_set(clip.change):
            self.notes.append(f"clipping is off, and this host has no setting for it: '{clip}' left to you")
            return s, ""
        both = Suggestion(f"{s}, and {clip[:1].lower()}{clip[1:]}", {**s.change, **clip.change})
        return both, (f". Clipping is off (gradient_clip {self.settings['gradient_clip']}): turned on at "
                      f"{clip.change['gradient_clip']:.1f} (HF's and nanoGPT's default) with the cut; an unclipped "
                      "step at a too-high LR is what blows the weights up, and a cut alone still leaves such steps")

    def with_warmup(self, s: Suggestion) -> tuple[Suggestion, str]:
        """`s` with the warmup lengthened x2.5 (added at 100 steps where there is none), one
        change and one sentence, for an early failure the run got past: the LR suits the run
        once past it, the climb to it is what failed. Unchanged where the warmup is not
        recorded, the host cannot set it, or it would pass a quarter of the run."""
        now = _num(self.settings.get("warmup_steps"))
        if not s.change or now is None:
            return s, ""
        warm = lengthen_warmup(int(now))
        if not self.can_set(warm.change) or warm.change["warmup_steps"] > _EARLY * self.steps:
            return s, ""
        return (Suggestion(f"{s}, and {warm[:1].lower()}{warm[1:]}", {**s.change, **warm.change}),
                f". Warmup lengthened too ({int(now)} → {warm.change['warmup_steps']} steps): a failure in the "
                "first quarter that the run got past is the climb to the peak LR, the transient warmup exists "
                "to ease")

    def can_set(self, change: dict[str, Any]) -> bool:
        if self.settable is not None:
            return set(change) <= self.settable
        # a log of no known host (a CSV, another writer's) takes the neutral names themselves
        return applicable(change, self.host) if self.host in HOSTS else set(change) <= set(NEUTRAL)

    def early_floor(self) -> int | None:
        """The step at which the logged LR reached its floor, if it did so in the first
        half of the run and well under its peak (a schedule that decayed too early)."""
        if len(self.lrs) < 4 or not self.steps:
            return None
        top = max(range(len(self.lrs)), key=lambda i: self.lrs[i][1])  # after the warmup
        peak, last = self.lrs[top][1], self.lrs[-1][1]
        at = next(s for s, v in self.lrs[top:] if v <= 1.05 * last)
        return at if last <= _FLOOR * peak and at <= self.steps / 2 else None

    def accept(self, s: Suggestion, reason: str, evidence: list[Event]) -> Recommendation | None:
        """`s` as the recommendation, unless the run already has that value or the host
        cannot set it (then noted, and the next candidate is tried)."""
        change = dict(s.change)
        if not change:
            return None
        same = [k for k, v in change.items() if _num(self.settings.get(k)) is not None
                and math.isclose(_num(self.settings[k]), v, rel_tol=1e-6)]
        if same:
            self.notes.append(f"skipped '{s}': the run already has {same[0]} = {self.settings[same[0]]}")
            return None
        if not self.can_set(change):
            self.notes.append(f"skipped '{s}': this host has no setting for {', '.join(change)}")
            return None
        return Recommendation(change, str(s), reason, [_evidence(e) for e in evidence])

    def drop(self) -> float | None:
        """How far the loss fell: 1 - (mean of its last 10%) / the loss at initialisation
        (a uniform prediction's, where the vocabulary is known: a log whose first point is
        an N-step mean starts lower; else the mean of the first 5 logged)."""
        if len(self.losses) < 4:
            return None
        vocab = _num(self.settings.get("vocab_size"))
        first = _num(self.settings.get("uniform_loss")) or (math.log(vocab) if vocab and vocab > 1 else None) \
            or sum(v for _, v in self.losses[:5]) / len(self.losses[:5])
        tail = self.losses[-max(2, len(self.losses) // 10):]
        return 1 - (sum(v for _, v in tail) / len(tail)) / first if first > 0 else None


def _frozen(events: list[Event]) -> Recommendation | None:
    """Trainable parameters that never moved: a bug in the code (left out of the optimizer,
    an LR of 0), first, since no setting fixes it and every other finding is about a model
    part of which does not train."""
    frozen = next((e for e in events if e.kind == "frozen_parameters"), None)
    if frozen is None:
        return None
    params = list(frozen.values.get("params") or [])
    shown = ", ".join(params[:5]) + (f" and {len(params) - 5} more" if len(params) > 5 else "")
    return Recommendation(sentence=f"Check that these parameters are in the optimizer's param groups, with a "
                                   f"learning rate above 0: {shown}",
                          reason=f"{frozen.message}: trainable parameters that never move are left out of the "
                                 "optimizer (or at LR 0); no setting fixes that, the training code does",
                          evidence=[_evidence(frozen)], check={"frozen_parameters": params})


def _initialisation(ctx: _Context, events: list[Event]) -> Recommendation | None:
    for e in events:
        if e.kind == "loss_above_init" and any("init_std" in getattr(s, "change", {}) for s in e.suggestions):
            now = _num(ctx.settings.get("init_std"))
            return ctx.accept(lower_init(now), f"the loss at the first step is {e.values.get('ratio', 0):.1f}x the "
                              "loss of a uniform prediction: the initial weights are too large, whatever the "
                              "learning rate", [e])
    return None


def _exploded(e: Event) -> bool:
    if e.kind in _LOSS_FAILURES:
        return True
    v = e.values
    if "exploded" in v:  # the gradient monitor's own verdict (signals/gain_gate.py)
        return bool(v["exploded"])
    if (_num(v.get("mean_gain")) or 0) >= _EXPLODED_MEAN_GAIN:  # any gain alert, its mean gain in the tens
        return True
    if e.kind == "max_gain_jump":
        return (_num(v.get("grad_norm")) or 0) >= _EXPLODED_BLOCK_GAIN
    return False


def _lr_too_high(ctx: _Context, events: list[Event]) -> Recommendation | None:
    strong = [e for e in events if e.severity != INFO and _exploded(e)]
    if not strong or ctx.lr is None:
        return None
    first = min(strong, key=lambda e: e.step if e.step is not None else math.inf)
    at = first.step if first.step is not None else ctx.steps
    share = at / ctx.steps if ctx.steps else 1.0
    collapses = [e for e in events if e.kind == "no_learning" and _lr_way(e, ctx.lr) == "cut"]
    got_past = ctx.got_past(strong + collapses)
    severe = (share <= _EARLY or any(e.kind in _SEVERE for e in strong) or bool(collapses)) and not got_past
    # a late failure is cut /2, but not to an LR still above the usual AdamW range: /2 is too
    # small a cut for an LR 10-100x too high (0.05 -> 0.025 and 0.02 -> 0.01 still failed)
    far = not severe and ctx.lr > _HIGH_ADAMW_LR
    factor = _cut(ctx.lr) if severe or far else 0.5
    why = ("an early failure" if share <= _EARLY else "the loss went non-finite or collapsed"
           if any(e.kind in _SEVERE for e in strong) else "the model learned nothing") if severe else \
        f"a late failure, from an LR above {_HIGH_ADAMW_LR:.0e}" if far else \
        "an early failure the run got past (its loss then fell far below it)" if got_past else \
        "a late failure (a drift, not a collapse)"
    reason = (f"{len(strong)} alert(s) show the learning rate is too high; the first, {first.kind} at step {at} "
              f"({100 * share:.0f}% into the run), {first.message[:120].rstrip('.')}. Cut /{1 / factor:.3g}: "
              f"{why} (an early or collapsing failure is cut /10, to no less than {_USUAL_LR_TOP:.0e}, the top of the "
              f"usual AdamW range, and no more than {_HIGH_ADAMW_LR:.0e} from an LR above it; a late one, or an "
              f"early one the run got past, /2, unless that leaves it above {_HIGH_ADAMW_LR:.0e})")
    change, more = ctx.cut(factor)
    if got_past:
        change, warm = ctx.with_warmup(change)
        more += warm
    return ctx.accept(change, reason + more, strong[:3])


def _not_learning(ctx: _Context, events: list[Event]) -> Recommendation | None:
    stuck = [e for e in events if e.kind in _STUCK]
    if not stuck:
        return None
    drop = ctx.drop()
    if drop is None or ctx.lr is None:
        return None
    rate = learning_rate(None, ctx.lr)
    floor = ctx.early_floor()
    if floor is not None:
        now = int(_num(ctx.settings.get("lr_decay_steps")) or floor)
        return ctx.accept(Suggestion(f"Decay the learning rate over the whole run: lr_decay_steps {now} → "
                                     f"{ctx.steps}", {"lr_decay_steps": ctx.steps}), (
            f"the learning rate reached its floor ({ctx.lrs[-1][1]:.1e}) at step {floor}, "
            f"{100 * floor / ctx.steps:.0f}% into the run, and the loss then stalled ({stuck[0].kind}): the "
            f"schedule decays too early"), stuck[:3])
    # which way: the evaluation's findings decide (they rule a too-low LR out before a
    # cut or more capacity); this sizes the change to the evidence and the usual range
    way = next((w for e in stuck for w in [_lr_way(e, ctx.lr)] if w), None)
    if way == "raise" and drop < _SLOW and ctx.lr < _USUAL_LR_TOP:
        # a loss that barely moved is orders of magnitude from a working LR: straight to the usual top
        factor = _USUAL_LR_TOP / ctx.lr if drop < _BARELY else min(3.0, _USUAL_LR_TOP / ctx.lr)
        return ctx.accept(increase_lr(rate, factor), (
            f"the loss fell only {100 * drop:.1f}% from its value at initialisation over {ctx.steps} steps "
            f"({stuck[0].kind}: the learning rate is too low). Raised x{factor:.3g}: to {_USUAL_LR_TOP:.0e}, "
            f"the top of the usual AdamW range, under a {100 * _BARELY:.0f}% drop; x3 (at most to it) under "
            f"{100 * _SLOW:.0f}%"),
            stuck[:3])
    # a cut at a usual LR needs the alert (a collapse), not warnings of a stall
    collapsed = [e for e in stuck if e.kind == "no_learning" and _lr_way(e, ctx.lr) == "cut"]
    if way == "cut" and (ctx.lr > _HIGH_ADAMW_LR or collapsed):
        factor = _cut(ctx.lr)
        where = ("above the usual AdamW range (1e-4 to 3e-3): it oversteps" if ctx.lr > _HIGH_ADAMW_LR else
                 f"and {collapsed[0].kind} found a collapse")
        change, more = ctx.cut(factor)
        return ctx.accept(change, (
            f"the loss fell {100 * drop:.0f}% and then stalled at a learning rate of {ctx.lr:.1e}, {where}. "
            f"Cut /{1 / factor:.3g} (/10, kept between {_USUAL_LR_TOP:.0e} and {_HIGH_ADAMW_LR:.0e})") + more,
            stuck[:3])
    d_model = _num(ctx.settings.get("d_model"))
    # warnings alone (underfitting, plateau) on a model that learns are not enough to resize it
    if way is None and d_model and any(e.kind == "no_learning" for e in stuck):
        wider = int(d_model) * 2
        return ctx.accept(Suggestion(f"Increase d_model: {int(d_model)} → {wider}", {"d_model": wider}), (
            f"the loss fell {100 * drop:.0f}% at a usual learning rate ({ctx.lr:.1e}) and then stalled "
            f"({stuck[0].kind}): the model has no room to learn more. Width doubled"), stuck[:3])
    return None


def _lr_way(e: Event, lr: float) -> str | None:
    """"raise" or "cut": the LR change a finding advises first; None when it advises none."""
    new = _num(getattr(e.suggestions[0], "change", {}).get("lr")) if e.suggestions else None
    return None if new is None else "raise" if new > lr else "cut"


def _cut(lr: float) -> float:
    """The factor of a large cut: /10; from an LR above the usual AdamW top, a target
    kept between that top and 1e-2 (3e-3 when /10 lands outside: 2e-2 -> 3e-3, 1.0 -> 3e-3)."""
    if lr <= _USUAL_LR_TOP:
        return 0.1
    target = lr / 10
    if target < _USUAL_LR_TOP or target >= _HIGH_ADAMW_LR:
        target = _USUAL_LR_TOP
    return target / lr


def _overfitting(ctx: _Context, events: list[Event]) -> Recommendation | None:
    over = [e for e in events if e.kind == "overfitting"]
    if not over:
        return None
    reason = (f"overfitting from epoch {over[0].epoch}: {over[0].message[:160]}")
    dropout, wd = _num(ctx.settings.get("dropout")), _num(ctx.settings.get("weight_decay"))
    # more dropout, up to 0.3, before anything else: stopping at the best epoch is a snapshot to keep,
    # not a setting to rerun with (fewer epochs also shorten the LR schedule)
    if dropout is not None and dropout < _MAX_DROPOUT:
        more = round(min(_MAX_DROPOUT, max(0.1, dropout + 0.1)), 6)
        rec = ctx.accept(set_dropout(dropout, more), reason + ("; the run has no dropout" if dropout == 0 else
                                                               f"; dropout {dropout:g} is not enough"), over)
        if rec is not None:
            return rec
    if wd is not None and wd < 0.1:
        rec = ctx.accept(set_weight_decay(wd, 0.1), reason + "; weight decay is light", over)
        if rec is not None:
            return rec
    best = min(((i, v) for i, (_, v) in enumerate(ctx.val) if math.isfinite(v)), key=lambda p: p[1], default=None)
    if best is not None and best[0] + 1 < len(ctx.val):
        return ctx.accept(Suggestion(f"Stop at the best epoch: epochs {len(ctx.val)} → {best[0] + 1} "
                                     f"(val loss {best[1]:.3f})", {"epochs": best[0] + 1}),
                          reason + "; dropout and weight decay are set already", over)
    return None


def _evidence(e: Event) -> dict[str, Any]:
    return {"kind": e.kind, "severity": e.severity, "step": e.step, "epoch": e.epoch, "message": e.message,
            "values": {k: v for k, v in e.to_dict()["values"].items() if v is not None}}


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)
