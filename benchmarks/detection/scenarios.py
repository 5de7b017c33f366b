"""The runs of the detection benchmark: what each one trains and how it goes wrong.

Byte-level GPTs on the built-in corpus and small EN→FR encoder-decoders. Every fault
has two variants (different seeds and sizes): one in the half the thresholds are tuned
on (`tune`, by tune.py), one in the half the results table reports (`holdout`). Healthy
runs are split the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunSpec", "SPECS", "HOST_SPECS", "CREEP_SPECS", "HOSTS", "ALL_SPECS", "FAILURE_MODES", "by_name"]


@dataclass(frozen=True)
class RunSpec:
    name: str
    mode: str  # "healthy" or a failure mode
    split: str  # "tune" | "holdout"
    seed: int
    task: str = "lm"  # "lm" | "translation"
    model: dict[str, Any] = field(default_factory=dict)  # model config overrides
    trainer: dict[str, Any] = field(default_factory=dict)  # TrainerConfig overrides
    fault: dict[str, Any] = field(default_factory=dict)  # see faults.py
    host: str = "trainer"  # "trainer" (ours) | "hf" | "lightning" | "loop" (host_runs.py)

    @property
    def healthy(self) -> bool:
        return self.mode == "healthy"


# small byte GPTs: each run well under a minute on 2 cores
SMALL = {"n_layers": 4, "d_model": 64, "block_size": 64, "n_heads": 4}
WIDE = {"n_layers": 4, "d_model": 96, "block_size": 64, "n_heads": 4}
DEEP = {"n_layers": 6, "d_model": 64, "block_size": 64, "n_heads": 4}
BASE = {"epochs": 3, "steps_per_epoch": 100, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50}


def _run(name: str, mode: str, split: str, seed: int, model: dict | None = None, task: str = "lm",
         fault: dict | None = None, **trainer: Any) -> RunSpec:
    return RunSpec(name, mode, split, seed, task, dict(model or SMALL), {**BASE, **trainer}, dict(fault or {}))


# the translation runs: a small encoder-decoder on the built-in EN→FR corpus
TR_SMALL = {"d_model": 64, "n_encoder_layers": 2, "n_decoder_layers": 2}
TR_DEEP = {"d_model": 64, "n_encoder_layers": 3, "n_decoder_layers": 3}
TR_BASE = {"batch_size": 32, "lr": 3e-3}

_HEALTHY = [
    _run("healthy-small-s1", "healthy", "tune", 1),
    _run("healthy-wide-s2", "healthy", "tune", 2, WIDE, lr=1e-3),
    _run("healthy-deep-s3", "healthy", "tune", 3, DEEP, lr=1.5e-3),
    _run("healthy-2layer-lr3e-3-s5", "healthy", "tune", 5, {**SMALL, "n_layers": 2}, lr=3e-3),
    _run("healthy-translation-s41", "healthy", "tune", 41, TR_SMALL, "translation", **TR_BASE),
    _run("healthy-translation-deep-s42", "healthy", "tune", 42, TR_DEEP, "translation", **{**TR_BASE, "lr": 2e-3}),
    _run("healthy-small-s11", "healthy", "holdout", 11),
    _run("healthy-wide-s12", "healthy", "holdout", 12, WIDE, lr=1.5e-3),
    _run("healthy-deep-s13", "healthy", "holdout", 13, DEEP, lr=1e-3),
    _run("healthy-2layer-lr3e-3-s15", "healthy", "holdout", 15, {**SMALL, "n_layers": 2}, lr=3e-3),
    _run("healthy-translation-s51", "healthy", "holdout", 51, TR_SMALL, "translation", **TR_BASE),
    _run("healthy-translation-deep-s52", "healthy", "holdout", 52, TR_DEEP, "translation",
         **{**TR_BASE, "lr": 2e-3}),
]

# each failure mode twice: one variant per half. What each did, measured, is in RESULTS.md.
_FAILING = [
    # a peak LR the model cannot take even after a normal warmup: stuck at the unigram entropy
    _run("lr-too-high-s21", "lr_too_high", "tune", 21, lr=0.2, warmup_steps=100),
    _run("lr-too-high-s31", "lr_too_high", "holdout", 31, WIDE, lr=0.1, warmup_steps=100),
    _run("translation-lr-too-high-s43", "lr_too_high", "tune", 43, TR_SMALL, "translation",
         **{**TR_BASE, "lr": 0.3, "warmup_steps": 150}),
    _run("translation-lr-too-high-s53", "lr_too_high", "holdout", 53, TR_DEEP, "translation",
         **{**TR_BASE, "lr": 0.2, "warmup_steps": 100}),
    # an LR the model takes with a long warmup (lr 0.05 over 500 steps: fine) but not without one
    _run("warmup-too-short-s22", "warmup_too_short", "tune", 22, lr=5e-2, warmup_steps=0),
    _run("warmup-too-short-s32", "warmup_too_short", "holdout", 32, DEEP, lr=4e-2, warmup_steps=0),
    _run("init-too-large-s23", "init_too_large", "tune", 23, {**SMALL, "init_std": 0.5}, lr=4e-3),
    _run("init-too-large-s33", "init_too_large", "holdout", 33, {**WIDE, "init_std": 1.0}, lr=5e-3, epochs=5),
    _run("no-layernorm-deep-s24", "no_layernorm", "tune", 24, {**DEEP, "n_layers": 8, "layer_norm": False},
         lr=5e-3),
    _run("no-layernorm-deep-s34", "no_layernorm", "holdout", 34, {**DEEP, "n_layers": 10, "layer_norm": False},
         lr=4e-3),
    _run("fp16-overflow-s25", "fp16_overflow", "tune", 25, fault={"loss_scale": 2.0 ** 12, "growth_every": 25}),
    _run("fp16-overflow-s35", "fp16_overflow", "holdout", 35, WIDE,
         fault={"loss_scale": 2.0 ** 10, "growth_every": 20}),
    _run("bad-batch-s26", "bad_batch", "tune", 26, fault={"bad_step": 150}),
    _run("bad-batch-s36", "bad_batch", "holdout", 36, DEEP, fault={"bad_step": 200}),
    _run("layer-not-in-optimizer-s27", "frozen_layer", "tune", 27, fault={"leave_out_block": 2}),
    _run("layer-not-in-optimizer-s37", "frozen_layer", "holdout", 37, DEEP, fault={"leave_out_block": 4}),
    # a 3-4 KB training text with wrong labels, many passes per epoch: memorized, val loss climbs
    _run("label-noise-overfit-s28", "overfitting", "tune", 28, WIDE, epochs=12, steps_per_epoch=0, lr=3e-3,
         fault={"train_bytes": 3_000, "label_noise": 0.2, "passes_per_epoch": 25}),
    _run("label-noise-overfit-s38", "overfitting", "holdout", 38, {**WIDE, "n_layers": 3}, epochs=12,
         steps_per_epoch=0, lr=3e-3, fault={"train_bytes": 4_000, "label_noise": 0.3, "passes_per_epoch": 15}),
]

SPECS: list[RunSpec] = _HEALTHY + _FAILING  # our trainer's: the tune and holdout halves


# --- the other hosts (host_runs.py): held out as a whole, never tuned on ------------------------
# 3 epochs of 70 steps, warmup, cosine to 10%, clip 1.0, AdamW (0.9, 0.95). Sizes and seeds differ
# from our trainer's runs and between hosts; cadences are the hosts' own (host_runs.py).
H_BASE = {"epochs": 3, "steps_per_epoch": 70, "batch_size": 16, "lr": 2e-3, "warmup_steps": 40}
H_SMALL = {"n_layers": 4, "d_model": 64, "n_heads": 4, "block_size": 64}
H_NARROW = {"n_layers": 3, "d_model": 48, "n_heads": 4, "block_size": 48}
H_DEEP = {"n_layers": 6, "d_model": 48, "n_heads": 4, "block_size": 48}


def _host(host: str, name: str, mode: str, seed: int, model: dict, fault: dict | None = None,
          **trainer: Any) -> RunSpec:
    return RunSpec(f"{host}-{name}-s{seed}", mode, "holdout", seed, "lm", dict(model), {**H_BASE, **trainer},
                   dict(fault or {}), host)


def _host_runs(host: str, seeds: tuple[int, ...], sizes: tuple[dict, dict, dict], **cadence: Any) -> list[RunSpec]:
    """Each host: two healthy runs, a too-high peak LR after warmup, a huge LR with no warmup
    (fails in the first 10 steps), a bad batch (early or mid-run), a block left out of the optimizer."""
    a, b, c = sizes
    s = iter(seeds)
    early_bad = {"hf": 6, "lightning": 120, "loop": 8}[host]
    return [
        _host(host, "healthy", "healthy", next(s), a, **cadence),
        _host(host, "healthy-lr1e-3", "healthy", next(s), b, lr=1e-3, **cadence),
        _host(host, "lr-too-high", "lr_too_high", next(s), a, lr=0.1, warmup_steps=50, **cadence),
        _host(host, "huge-lr-no-warmup", "early_divergence", next(s), c, lr=1.0, warmup_steps=0, **cadence),
        _host(host, f"bad-batch-step{early_bad}", "bad_batch", next(s), b, {"bad_step": early_bad}, **cadence),
        _host(host, "block-not-in-optimizer", "frozen_layer", next(s), c, {"leave_out_block": 1}, **cadence),
    ]


HOST_SPECS: list[RunSpec] = (
    _host_runs("hf", (61, 62, 63, 64, 65, 66), (H_SMALL, H_NARROW, H_DEEP), gradient_monitor_interval=10)
    + _host_runs("lightning", (71, 72, 73, 74, 75, 76), (H_NARROW, H_DEEP, H_SMALL), gradient_monitor_interval=1)
    + _host_runs("loop", (81, 82, 83, 84, 85, 86), (H_DEEP, H_SMALL, H_NARROW), gradient_monitor_interval=10)
)
HOSTS = ("trainer", "hf", "lightning", "loop")


# --- creeping failures (issue 22 part 3): an LR that ramps linearly over the whole run ----------
# Every run ramps its LR from 0 to its peak over all of its steps (600; 1200 on the loop's GPT). The healthy twins ramp to
# 1e-3 (the hard false-positive case: gains and grad norms move as the LR rises); the failing
# runs ramp to a peak their setting cannot take, chosen so the loss falls, stalls, then fails
# 300+ steps in: 200x with clipping and LayerNorm, 50x without clipping, 30x without LayerNorm.
# Two hosts: our Trainer, and the plain loop on Monitor training the same byte GPT with the same
# AdamW settings ("loop-gpt"), whose clipped 200x run failed early over 600 steps (step 83-138: the
# LR reached 0.03 before the model had learned past the unigram entropy) and 100x never did, so
# its ramps take 1200 steps (200x failed at step 734 then). The loop's nanoGPT model ("loop", tied head, scaled init, AdamW
# betas (0.9, 0.95), no weight decay) failed early or not at all (by step 130 at 200x and 50x, or
# never at 50x and 15x; nothing failed over a 2000-step ramp at 100x and 30x): its runs stay as
# that record. Seeds and sizes differ between the halves; the holdout half is never tuned on.
C_BASE = {"epochs": 3, "steps_per_epoch": 200, "batch_size": 8}  # 600 steps, 3 evaluations
C_A = {"n_layers": 3, "d_model": 48, "n_heads": 4, "block_size": 32}
C_B = {"n_layers": 4, "d_model": 32, "n_heads": 4, "block_size": 32}
C_SAFE = 1e-3
_TRAINER_ADAMW = {"weight_decay": 0.1, "adam_beta2": 0.99}  # TrainerConfig's defaults, for the loop's GPT runs


def _creep(host: str, name: str, split: str, seed: int, model: dict, times: float, clip: float = 1.0,
           **model_extra: Any) -> RunSpec:
    steps = C_BASE["steps_per_epoch"] * (2 if model.get("arch") == "gpt" else 1)
    total = C_BASE["epochs"] * steps
    trainer = {**C_BASE, "steps_per_epoch": steps, "lr": C_SAFE * times, "warmup_steps": total,
               "gradient_clip": clip}
    if host != "trainer":
        trainer["gradient_monitor_interval"] = 3
    if model.get("arch") == "gpt":
        trainer.update(_TRAINER_ADAMW)
    mode = "healthy" if times == 1 else "lr_ramp_too_high"
    prefix = f"{host}-gpt" if model.get("arch") == "gpt" else host
    return RunSpec(f"creep-{prefix}-{name}-s{seed}", mode, split, seed, "lm", {**model, **model_extra}, trainer, {},
                   host)


def _creep_runs(host: str, split: str, seeds: tuple[int, ...], model: dict, clipped: int = 200,
                unclipped: int = 50) -> list[RunSpec]:
    s = iter(seeds)
    runs = [_creep(host, "ramp-safe", split, next(s), model, 1),
            _creep(host, "ramp-safe-no-clip", split, next(s), model, 1, clip=0.0),
            _creep(host, f"ramp-{clipped}x", split, next(s), model, clipped),
            _creep(host, f"ramp-{unclipped}x-no-clip", split, next(s), model, unclipped, clip=0.0)]
    if host == "trainer" or model.get("arch") == "gpt":
        # no healthy twin: without LayerNorm even the safe ramp stalls at the unigram entropy
        runs += [_creep(host, "ramp-30x-no-ln", split, next(s), model, 30, layer_norm=False)]
    return runs


CREEP_SPECS: list[RunSpec] = (
    _creep_runs("trainer", "tune", (101, 102, 103, 104, 106), C_A)
    + _creep_runs("trainer", "holdout", (111, 112, 113, 114, 116), C_B)
    + _creep_runs("loop", "tune", (121, 122, 123, 124), C_B)
    + _creep_runs("loop", "holdout", (131, 132, 133, 134), C_A)
    + _creep_runs("loop", "tune", (141, 142, 143, 144, 146), {**C_A, "arch": "gpt"}, 200, 100)
    + _creep_runs("loop", "holdout", (151, 152, 153, 154, 156), {**C_B, "arch": "gpt"}, 200, 100)
)
ALL_SPECS = SPECS + HOST_SPECS + CREEP_SPECS
FAILURE_MODES = sorted({s.mode for s in _FAILING + HOST_SPECS + CREEP_SPECS if not s.healthy})


def by_name(names: list[str] | None) -> list[RunSpec]:
    if not names:
        return list(ALL_SPECS)
    known = {s.name: s for s in ALL_SPECS}
    bad = [n for n in names if n not in known]
    if bad:
        raise SystemExit(f"unknown run(s): {', '.join(bad)}; known: {', '.join(known)}")
    return [known[n] for n in names]
