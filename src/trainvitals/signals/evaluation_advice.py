"""The suggestions of the post-epoch evaluation's findings, from the run's real settings.

`info` is the run's `run_info` (what the host knows it set); a value it lacks gives a
generic line, never a made-up number. How long the run is bounded is named as the host
names it: `max_steps` where a step count bounds it (HF `max_steps`, Lightning
`max_steps`, our `--max-steps`), else its epochs (HF `num_train_epochs`, Lightning
`max_epochs`, our `--epochs`).
"""
from __future__ import annotations

import math
from trainvitals.signals.advice import increase_lr, learning_rate, reduce_lr, tighten_clip

__all__ = ["lr_change", "schedule_advice", "warmup_check", "capacity_advice", "more_capacity",
           "longer_advice", "regularization_advice", "stop_early", "tighten", "num"]

# Common widths, so that advice proposes a size people use (seed: 512 -> 768, 768 -> 512).
_WIDTHS = (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
# run_info keys that bound a run in epochs, as each host names them
_EPOCH_SETTINGS = ("num_train_epochs", "max_epochs", "epochs")


def num(info: dict, key: str) -> float | None:
    x = info.get(key)
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


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


def longer_advice(info: dict) -> str:
    """Train longer, naming what bounds the run: its step count where one does, else its epochs."""
    steps = num(info, "max_steps")
    if steps:
        return f"Train longer: max_steps {steps:.0f} → {2 * steps:.0f}"
    name = next((k for k in _EPOCH_SETTINGS if num(info, k)), None)
    if name is None:
        return "Alternative: train longer (the model may need more epochs)"
    ep = num(info, name)
    return f"Train longer: {ep:.0f} → {2 * ep:.0f} epochs" if name == "epochs" else \
        f"Train longer: {name} {ep:.0f} → {2 * ep:.0f}"


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
