"""One table: each host-neutral setting a suggestion changes, by its name in each host.

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
| `lr_decay_steps` | `lr_decay_steps` | - | in `configure_optimizers` | `lr_decay_iters` |

A host's setting is an argument (`arg`: a flag or a `Trainer` argument), a field of
the model's config (`model`: HF's `--config_overrides`), or something only the user's
code sets (`code`: said as a sentence).
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["HOSTS", "NEUTRAL", "host_names", "render_change", "applicable"]

NEUTRAL = ("lr", "warmup_steps", "gradient_clip", "weight_decay", "dropout", "label_smoothing", "init_std",
           "d_model", "n_layers", "epochs", "lr_decay_steps")

_ARG, _MODEL, _CODE = "arg", "model", "code"

HOSTS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "trainvitals": {n: (_ARG, (n,)) for n in NEUTRAL},
    "hf": {"lr": (_ARG, ("learning_rate",)), "warmup_steps": (_ARG, ("warmup_steps",)),
           "gradient_clip": (_ARG, ("max_grad_norm",)), "weight_decay": (_ARG, ("weight_decay",)),
           "label_smoothing": (_ARG, ("label_smoothing_factor",)), "epochs": (_ARG, ("num_train_epochs",)),
           "dropout": (_MODEL, ("resid_pdrop", "embd_pdrop", "attn_pdrop")),
           "init_std": (_MODEL, ("initializer_range",)), "d_model": (_MODEL, ("n_embd",)),
           "n_layers": (_MODEL, ("n_layer",))},
    "lightning": {"gradient_clip": (_ARG, ("gradient_clip_val",)), "epochs": (_ARG, ("max_epochs",)),
                  "lr": (_CODE, ("lr in configure_optimizers",)),
                  "warmup_steps": (_CODE, ("the warmup of the scheduler in configure_optimizers",)),
                  "weight_decay": (_CODE, ("weight_decay in configure_optimizers",)),
                  "lr_decay_steps": (_CODE, ("the decay horizon of the scheduler in configure_optimizers",)),
                  "dropout": (_CODE, ("the model's dropout",)), "label_smoothing": (_CODE, ("the loss's label_smoothing",)),
                  "init_std": (_CODE, ("the model's initialisation std",)), "d_model": (_CODE, ("the model's width",)),
                  "n_layers": (_CODE, ("the model's number of layers",))},
    "nanogpt": {"lr": (_ARG, ("learning_rate",)), "warmup_steps": (_ARG, ("warmup_iters",)),
                "gradient_clip": (_ARG, ("grad_clip",)), "weight_decay": (_ARG, ("weight_decay",)),
                "dropout": (_ARG, ("dropout",)), "d_model": (_ARG, ("n_embd",)), "n_layers": (_ARG, ("n_layer",)),
                "lr_decay_steps": (_ARG, ("lr_decay_iters",))},
}


def host_names(name: str, host: str) -> tuple[str, tuple[str, ...]] | None:
    """(kind, the host's names) of neutral setting `name`; None where the host has none."""
    return HOSTS.get(host, {}).get(name)


def applicable(change: Mapping[str, Any], host: str) -> bool:
    """Whether `host` has a setting for every name in `change` (a program can apply it)."""
    return all(host_names(n, host) is not None for n in change)


def render_change(change: Mapping[str, Any], host: str) -> list[str]:
    """The change as `host` takes it: `--learning_rate 0.001` (HF example scripts),
    `lr = 0.001` (our TOML), `gradient_clip_val=0.7` (Lightning), `learning_rate=0.001`
    (nanoGPT's configurator), or a sentence for what only code sets."""
    lines, model = [], []
    for name, value in change.items():
        kind, names = host_names(name, host) or (_CODE, (name,))
        if kind == _MODEL:
            model += [f"{n}={_v(value)}" for n in names]
        elif kind == _CODE:
            lines.append(f"set {names[0]} to {_v(value)}")
        elif host == "hf":
            lines += [f"--{n} {_v(value)}" for n in names]
        elif host == "nanogpt":
            lines += [f"--{n}={_v(value)}" for n in names]
        elif host == "lightning":
            lines += [f"Trainer({n}={_v(value)})" for n in names]
        else:
            lines += [f"{n} = {_v(value)}" for n in names]
    if model:
        lines.append(f'--config_overrides "{",".join(model)}"')
    return lines


def _v(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
