"""The failing configurations, each with a known cause, and the healthy ones.

Two halves: `tune` (seed 0, width 32; the runs the recommendation rules were looked at
on) and `holdout` (seed 1, width 48, other data slices; never looked at while writing
the rules). Settings are in each host's own names: our config fields, or HF
`TrainingArguments` and GPT-2 config names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Scenario", "scenarios", "healthy", "tuning_starts", "LR_GRID"]

# the grid a user would search over the LR, log-spaced, for the tuning-iteration figure
LR_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


@dataclass(frozen=True)
class Scenario:
    name: str
    host: str  # "ours" | "hf"
    task: str  # "lm" | "translation"
    cause: str
    settings: dict[str, Any] = field(hash=False)
    half: str = "tune"
    # the healthy reference: the cause removed, same seed and budget (the validity check's twin)
    reference: dict[str, Any] = field(default_factory=dict, hash=False)


def _sizes(half: str) -> tuple[int, int]:
    return (0, 32) if half == "tune" else (1, 48)


def _lm(half: str, **over: Any) -> dict[str, Any]:
    seed, width = _sizes(half)
    return {"d_model": width, "n_layers": 2, "n_heads": 2, "block_size": 32, "batch_size": 16, "epochs": 4,
            "steps_per_epoch": 40, "lr": 3e-3, "warmup_steps": 20, "seed": seed, **over}


def _tr(half: str, **over: Any) -> dict[str, Any]:
    seed, width = _sizes(half)
    return {"n_train": 2000, "n_val": 500, "corpus_seed": seed, "d_model": width, "n_heads": 2,
            "n_encoder_layers": 1, "n_decoder_layers": 1, "batch_size": 16, "epochs": 4, "steps_per_epoch": 40,
            "lr": 3e-3, "warmup_steps": 20, "seed": seed, **over}


def _hf(half: str, **over: Any) -> dict[str, Any]:
    seed, width = _sizes(half)
    return {"n_embd": width, "n_layer": 2, "n_head": 2, "num_train_epochs": 4, "learning_rate": 3e-3,
            "warmup_steps": 20, "seed": seed, "train_offset": 0 if half == "tune" else 100_000, **over}


def small_corpus(workdir: Path, half: str) -> str:
    """A 2.2 kB slice of the embedded corpus (another slice for the holdout): small enough to overfit."""
    from trainvitals.tasks.lm.data import load_text
    path = workdir / f"small-{half}.txt"
    if not path.exists():
        start = 0 if half == "tune" else 200_000
        path.write_bytes(load_text()[start: start + 2200])
    return str(path)


def scenarios(half: str, workdir: Path) -> list[Scenario]:
    small = small_corpus(workdir, half)
    wide = 128 if half == "tune" else 96
    overfit = dict(data=small, epochs=60, steps_per_epoch=0, d_model=wide, n_heads=4, batch_size=8)
    out = [
        ("lm_lr_spike", "ours", "lm", "LR too high (spike)", _lm(half, lr=0.05, warmup_steps=0)),
        ("lm_lr_too_low", "ours", "lm", "LR too low", _lm(half, lr=1e-5)),
        ("lm_no_warmup", "ours", "lm", "no warmup at a high LR", _lm(half, lr=0.02, warmup_steps=0)),
        ("lm_clip_off", "ours", "lm", "clipping off at a high LR", _lm(half, lr=0.02, gradient_clip=0.0)),
        ("lm_overfit", "ours", "lm", "overfitting a small corpus, no dropout", _lm(half, **overfit)),
        # 90 epochs, rebuilt by the validity check: at 60 (tune) it did not fail, being lm_overfit's fix
        ("lm_overfit_dropout", "ours", "lm", "overfitting a small corpus, dropout 0.1 (90 epochs)",
         _lm(half, **{**overfit, "epochs": 90}, dropout=0.1)),
        ("lm_underpowered", "ours", "lm", "model too small", _lm(half, d_model=8, n_heads=1, n_layers=1)),
        ("lm_early_decay", "ours", "lm", "schedule decays too early (plateau)",
         _lm(half, lr_decay_steps=40, min_lr_ratio=0.01)),
        ("lm_bad_init", "ours", "lm", "initialisation too large", _lm(half, init_std=1.0)),
        ("lm_frozen_layer", "ours", "lm", "a layer left out of the optimizer (the token embedding)",
         _lm(half, frozen_block="tok_emb")),
        ("lm_slow_divergence", "ours", "lm", "LR too high, failing late (a long warmup to 0.1)",
         _lm(half, lr=0.1, warmup_steps=120, lr_schedule="constant")),
        ("tr_lr_high", "ours", "translation", "LR too high", _tr(half, lr=0.05, warmup_steps=0)),
        ("tr_lr_too_low", "ours", "translation", "LR too low", _tr(half, lr=1e-5)),
        ("hf_lr_high", "hf", "lm", "LR too high (lr 1.0)", _hf(half, learning_rate=1.0, warmup_steps=0)),
        ("hf_lr_too_low", "hf", "lm", "LR too low (HF's default 5e-5 from scratch)",
         _hf(half, learning_rate=5e-5, warmup_steps=0)),
        # rebuilt by the validity check (docs/advice.md): the lowest LR tried at which both halves fail
        # (clip_off: 0.1, 0.3, 0.5, 1.0 with warmup 20; no_warmup: 0.03, 0.1, 0.2, 0.3, 0.5)
        ("hf_clip_off", "hf", "lm", "clipping off at a high LR", _hf(half, learning_rate=1.0, max_grad_norm=0.0)),
        ("hf_no_warmup", "hf", "lm", "no warmup at a high LR", _hf(half, learning_rate=0.5, warmup_steps=0)),
    ]
    # the cause removed: the host's healthy config of this half; overfitting's: the same model,
    # data and budget, regularised (dropout 0.3, the top of the usual range)
    healthy_config = {"ours/lm": _lm(half), "ours/translation": _tr(half), "hf/lm": _hf(half)}
    references = {"lm_overfit": _lm(half, **overfit, dropout=0.3),
                  "lm_overfit_dropout": _lm(half, **{**overfit, "epochs": 90}, dropout=0.3)}
    return [Scenario(n, h, t, c, s, half, references.get(n, healthy_config[f"{h}/{t}"])) for n, h, t, c, s in out]


def healthy(seed: int) -> list[Scenario]:
    """Healthy runs at the tune size, for seed twins (the noise) and false recommendations."""
    half = "tune"
    return [Scenario(f"lm_healthy_s{seed}", "ours", "lm", "healthy", {**_lm(half), "seed": seed}),
            Scenario(f"tr_healthy_s{seed}", "ours", "translation", "healthy", {**_tr(half), "seed": seed}),
            Scenario(f"hf_healthy_s{seed}", "hf", "lm", "healthy", {**_hf(half), "seed": seed})]


def tuning_starts() -> list[Scenario]:
    """Bad starts that differ from each other only in the LR, so one LR grid serves each host."""
    half = "tune"
    return [Scenario("start_lm_lr_0.05", "ours", "lm", "LR too high", _lm(half, lr=0.05, warmup_steps=0)),
            Scenario("start_lm_lr_1e-5", "ours", "lm", "LR too low", _lm(half, lr=1e-5, warmup_steps=0)),
            Scenario("start_hf_lr_1.0", "hf", "lm", "LR too high", _hf(half, learning_rate=1.0, warmup_steps=0)),
            Scenario("start_hf_lr_5e-5", "hf", "lm", "LR too low", _hf(half, learning_rate=5e-5, warmup_steps=0))]
