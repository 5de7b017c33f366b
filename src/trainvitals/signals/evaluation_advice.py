"""The suggestions of the post-epoch evaluation's findings, from the run's real settings.

`info` is the run's `run_info` (what the host knows it set); a value it lacks gives a
generic line, never a made-up number. How long the run is bounded is named as the host
names it: `max_steps` where a step count bounds it, else its `epochs` (HF
`num_train_epochs`, Lightning `max_epochs`): hosts write the neutral names into
`run_info`, and `signals.setting_names` names them as the host does.
"""
from __future__ import annotations

import math
from trainvitals.events import Suggestion
from trainvitals.signals.advice import increase_lr, learning_rate, reduce_lr, tighten_clip
from trainvitals.signals.setting_names import host_label

__all__ = ["lr_change", "schedule_advice", "warmup_check", "capacity_advice", "more_capacity",
           "longer_advice", "regularization_advice", "stop_early", "tighten", "num", "uniform_loss",
           "no_learning_advice", "LR_RAISE", "LR_RAISE_FAR", "LR_CUT_HARD"]

# Common widths, so that advice proposes a size people use (seed: 512 -> 768, 768 -> 512).
_WIDTHS = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
# Raise an LR that left the loss at its start x10: HF's 5e-5 from scratch (val 5.06 after
# 160 steps) gets 4.69 at x3, 3.74 at x10. A val loss above a uniform prediction's is cut
# /10 (HF at lr 1.0: val 65.9, 21.9, 9.60).
LR_RAISE_FAR, _LR_CUT_FAILING = 10.0, 0.1
LR_RAISE = 3.0
LR_CUT_HARD = 1 / 3  # a rising or collapsed loss needs a firmer cut than the seed's 0.5 (3e-4 -> 1e-4)


def num(info: dict, key: str) -> float | None:
    x = info.get(key)
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def uniform_loss(info: dict) -> float | None:
    """The loss of a uniform prediction, where the run knows it: `uniform_loss` (our
    runs, the HF callback) or ln `vocab_size` (HF's model config, read back by `analyze`)."""
    u, vocab = num(info, "uniform_loss"), num(info, "vocab_size")
    return u if u and u > 0 else (math.log(vocab) if vocab and vocab > 1 else None)


def no_learning_advice(info: dict, cause: str, val: float, baseline: float | None, uniform: float | None,
                       start: float, lowest: float) -> tuple[str, list[str]]:
    """`no_learning`'s message and advice, by what the loss did: "too_low" (it never left
    its start), "above_uniform" (worse than a uniform prediction), "came_back" (it fell to
    `lowest` and rose again: a collapse), "stalled" (a fast fall, then a stall at the
    unigram entropy: no room), "slow" (a slow fall from its start: never a cut)."""
    above = baseline is None or cause == "above_uniform"
    level = (f"the loss of a uniform prediction (ln of the vocabulary: {uniform:.3f} nats)" if above
             else f"the unigram entropy of the data ({baseline:.3f} nats)")
    msg = f"No learning: val loss {val:.3f} is at or above {level}"
    msg += {"too_low": f", and the loss never left its starting level ({start:.3f}): the learning rate is too low",
            "above_uniform": ": the model predicts worse than no model at all: the learning rate is far too high",
            "came_back": f", after falling to {lowest:.3f}: a too-high learning rate collapses a model to the "
                         "unigram entropy without any NaN",
            "stalled": ", where it stalled after a fast fall: the model finds nothing beyond token frequencies; "
                       "it may be too small",
            "slow": ": the loss falls too slowly to get below it; the learning rate may be too low"}[cause]
    first = {"too_low": lr_change(info, LR_RAISE_FAR), "above_uniform": lr_change(info, _LR_CUT_FAILING),
             "came_back": lr_change(info, LR_CUT_HARD), "stalled": more_capacity(info),
             "slow": lr_change(info, LR_RAISE)}[cause]
    second = {"too_low": [warmup_check(info)], "above_uniform": [tighten(info)]}.get(cause, [])
    return msg, [first, *second, "Check the data: targets must be the inputs shifted by one token",
                 "Check that the parameters are updating (frozen_parameters events)"]


def _n(x: float) -> str:
    return str(round(float(x), 6))


def lr_change(info: dict, factor: float) -> str:
    """The LR advice of `info`'s learning rate (the peak, and the LR now where it differs)."""
    rate = info.get("learning_rate") or learning_rate(None, num(info, "lr"))
    return (reduce_lr if factor < 1 else increase_lr)(rate, factor)


def tighten(info: dict) -> str:
    return tighten_clip(num(info, "gradient_clip")) if "gradient_clip" in info else "Tighten gradient clipping"


def schedule_advice(info: dict) -> str:
    if "scheduler" not in info:
        return "Add a learning-rate decay schedule (cosine) if the learning rate is constant"
    if info["scheduler"] in (None, "constant", "none"):
        return "Add a learning-rate decay schedule (cosine)"
    return f"Consider ReduceLROnPlateau (auto_adjust) on top of the {info['scheduler']} schedule"


def warmup_check(info: dict) -> str:
    w = num(info, "warmup_steps")
    return f"Check that warmup ({w:.0f} steps) is complete" if w else "Check that warmup is complete"


def capacity_advice(info: dict) -> list[str]:
    dm, nl = num(info, "d_model"), num(info, "n_layers")
    wider = [w for w in _WIDTHS if dm and w > dm] or [round(dm * 1.5 / 64) * 64 if dm else 0]
    return [f"Increase d_model: {dm:.0f} → {wider[0]}" if dm
            else "Increase d_model (e.g. 512 → 768)",
            f"Add layers: {nl:.0f} → {max(int(nl) + 1, round(nl * 4 / 3))}" if nl
            else "Add layers (e.g. 6 → 8)"]


def more_capacity(info: dict) -> str:
    """One line, for checks where more capacity is one option among several."""
    d_model, layers = capacity_advice(info)
    return f"Increase model capacity: {d_model[9:]}, or {layers[0].lower()}{layers[1:]}"


def longer_advice(info: dict) -> Suggestion:
    """Train longer, naming what bounds the run (its step count where one does, else its
    epochs) as the run's host names it (`info["host"]`; signals/setting_names.py)."""
    host = info.get("host")
    steps = num(info, "max_steps")
    if steps and steps > 0:  # HF's -1: unset
        return Suggestion(f"Train longer: {host_label('max_steps', host)} {steps:.0f} → {2 * steps:.0f}",
                          {"max_steps": int(2 * steps)})
    ep = num(info, "epochs")
    if not ep:
        return Suggestion("Alternative: train longer (the model may need more epochs)")
    label = host_label("epochs", host)
    line = f"Train longer: {ep:g} → {2 * ep:g} epochs" if label == "epochs" else \
        f"Train longer: {label} {ep:g} → {2 * ep:g}"
    return Suggestion(line, {"epochs": int(2 * ep) if float(ep).is_integer() else 2 * ep})


def regularization_advice(info: dict, severe: bool, best: tuple[str, float] | None) -> list[str]:
    """Overfitting's advice; `best` = (where the val loss was best, that loss) when it was
    not at this evaluation."""
    d, wd = num(info, "dropout"), num(info, "weight_decay")
    ls, dm = num(info, "label_smoothing"), num(info, "d_model")
    sugg = []
    if d is None or d < 0.5:
        sugg.append("Add dropout: 0.1 in attention and FFN layers" if d is None else
                    f"{'Add' if d < 0.1 else 'Increase'} dropout: {_n(d)} → "
                    f"{_n(max(0.1, d + 0.1))} in attention and FFN layers")
    if wd is None or wd < 0.1:
        sugg.append("Add weight decay: 0.01" if wd is None else
                    f"{'Add' if wd < 0.01 else 'Increase'} weight decay: {_n(wd)} → "
                    f"{_n(max(0.01, min(0.1, wd * 5)))}")
    if not ls:
        sugg.append("Add label smoothing: " + ("0.1" if ls is None else "0.0 → 0.1"))
    if severe:
        smaller = [w for w in _WIDTHS if dm and w < dm]
        sugg.append("Reduce model size if the dataset is small" + (
            f": d_model {dm:.0f} → {smaller[-1]}" if smaller else ""))
    if best is not None:
        sugg.append(stop_early(*best))
    return sugg + ["Increase training data (augmentation or more samples)"]


def stop_early(where: str, val: float) -> str:
    return f"Stop early: keep the snapshot from {where} (val loss {val:.3f})"
