"""One table: each host-neutral setting a suggestion changes, by its name in each host.

Pure Python (no torch), so the detectors that word a suggestion (`signals/`) and
`advise` read the same table. Hosts write the neutral names into `run_info` (the HF
callback `epochs` for `num_train_epochs`, Lightning `epochs` for `max_epochs`, and
`host`), and a suggestion names a setting as that host does (`host_label`).

| neutral | trainvitals (`TrainerConfig`, model config) | HF `TrainingArguments` / model config | Lightning | nanoGPT `train.py` |
|---|---|---|---|---|
| `lr` | `lr` | `learning_rate` | in `configure_optimizers` | `learning_rate` |
| `warmup_steps` | `warmup_steps` | `warmup_steps` | in `configure_optimizers` (scheduler) | `warmup_iters` |
| `gradient_clip` | `gradient_clip` | `max_grad_norm` | `Trainer(gradient_clip_val=)` | `grad_clip` |
| `weight_decay` | `weight_decay` | `weight_decay` | in `configure_optimizers` | `weight_decay` |
| `dropout` | `dropout` | model: `resid_pdrop`, `embd_pdrop`, `attn_pdrop` | in the model | `dropout` |
| `label_smoothing` | `label_smoothing` (translation) | `label_smoothing_factor` | in the loss | - |
| `init_std` | `init_std` | model: `initializer_range` | in the model | - |
| `d_model`, `n_layers` | `d_model`, `n_layers` | model: `n_embd`, `n_layer` | in the model | `n_embd`, `n_layer` |
| `epochs` | `epochs` | `num_train_epochs` | `Trainer(max_epochs=)` | - |
| `max_steps` | `max_steps` | `max_steps` | `Trainer(max_steps=)` | `max_iters` |
| `lr_decay_steps` | `lr_decay_steps` | - | in `configure_optimizers` | `lr_decay_iters` |

A host's setting is an argument (`arg`: a flag or a `Trainer` argument), a field of
the model's config (`model`: HF's `--config_overrides`), or something only the user's
code sets (`code`: said as a sentence).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["HOSTS", "NEUTRAL", "ARG", "MODEL", "CODE", "host_names", "host_label", "applicable"]

NEUTRAL = ("lr", "warmup_steps", "gradient_clip", "weight_decay", "dropout", "label_smoothing", "init_std",
           "d_model", "n_layers", "epochs", "max_steps", "lr_decay_steps")

ARG, MODEL, CODE = "arg", "model", "code"

HOSTS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "trainvitals": {n: (ARG, (n,)) for n in NEUTRAL},
    "hf": {"lr": (ARG, ("learning_rate",)), "warmup_steps": (ARG, ("warmup_steps",)),
           "gradient_clip": (ARG, ("max_grad_norm",)), "weight_decay": (ARG, ("weight_decay",)),
           "label_smoothing": (ARG, ("label_smoothing_factor",)), "epochs": (ARG, ("num_train_epochs",)),
           "max_steps": (ARG, ("max_steps",)),
           "dropout": (MODEL, ("resid_pdrop", "embd_pdrop", "attn_pdrop")),
           "init_std": (MODEL, ("initializer_range",)), "d_model": (MODEL, ("n_embd",)),
           "n_layers": (MODEL, ("n_layer",))},
    "lightning": {"gradient_clip": (ARG, ("gradient_clip_val",)), "epochs": (ARG, ("max_epochs",)),
                  "max_steps": (ARG, ("max_steps",)),
                  "lr": (CODE, ("lr in configure_optimizers",)),
                  "warmup_steps": (CODE, ("the warmup of the scheduler in configure_optimizers",)),
                  "weight_decay": (CODE, ("weight_decay in configure_optimizers",)),
                  "lr_decay_steps": (CODE, ("the decay horizon of the scheduler in configure_optimizers",)),
                  "dropout": (CODE, ("the model's dropout",)), "label_smoothing": (CODE, ("the loss's label_smoothing",)),
                  "init_std": (CODE, ("the model's initialisation std",)), "d_model": (CODE, ("the model's width",)),
                  "n_layers": (CODE, ("the model's number of layers",))},
    "nanogpt": {"lr": (ARG, ("learning_rate",)), "warmup_steps": (ARG, ("warmup_iters",)),
                "gradient_clip": (ARG, ("grad_clip",)), "weight_decay": (ARG, ("weight_decay",)),
                "dropout": (ARG, ("dropout",)), "d_model": (ARG, ("n_embd",)), "n_layers": (ARG, ("n_layer",)),
                "max_steps": (ARG, ("max_iters",)), "lr_decay_steps": (ARG, ("lr_decay_iters",))},
}


def host_names(name: str, host: str) -> tuple[str, tuple[str, ...]] | None:
    """(kind, the host's names) of neutral setting `name`; None where the host has none."""
    return HOSTS.get(host, {}).get(name)


def host_label(name: str, host: str | None) -> str:
    """The name a suggestion gives neutral setting `name` in `host` (unknown host or no
    such setting there: the neutral name)."""
    found = host_names(name, host or "trainvitals")
    return found[1][0] if found and found[0] != CODE else name


def applicable(change: Mapping[str, Any], host: str) -> bool:
    """Whether `host` has a setting for every name in `change` (a program can apply it)."""
    return all(host_names(n, host) is not None for n in change)
