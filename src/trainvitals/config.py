"""`TrainerConfig`: how to train and what to watch, validated where it is declared.

Field names follow the seed specification (`ema_alpha`, `enable_ema_loss`,
`mean_gain_drift_threshold`, ...); the monitoring ones are declared once, in
`trainvitals.monitor.config`. Every field is also a CLI flag in kebab-case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from trainvitals.errors import ConfigError, check_choice, check_range
from trainvitals.monitor.config import MonitorConfig

__all__ = ["TrainerConfig", "config_from_dict"]


@dataclass
class TrainerConfig(MonitorConfig):
    """How to train; what to watch comes from `MonitorConfig` (its fields are flat here)."""
    # --- how long -----------------------------------------------------------------
    epochs: int = 4  # passes over the training data (bounded by steps_per_epoch)
    max_steps: int = 0  # stop after this many optimizer steps; 0 = no limit
    steps_per_epoch: int = 0  # bound an epoch on a large corpus; 0 = the whole data
    # --- optimisation -------------------------------------------------------------
    batch_size: int = 16
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    lr: float = 2e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    warmup_steps: int = 100  # linear warmup from 0 to lr
    lr_schedule: str = "cosine"  # "cosine" (to min_lr_ratio*lr) or "constant"
    lr_decay_steps: int = 0  # cosine horizon; 0 = the planned total steps of this run
    min_lr_ratio: float = 0.1
    gradient_clip: float = 1.0  # max global grad norm; 0 = no clipping
    precision: str = "fp32"  # "fp32" | "bf16" (autocast) | "fp16" (autocast + GradScaler)
    device: str = "auto"  # "auto" = cuda if available, else cpu
    seed: int = 0
    # --- where things go ------------------------------------------------------------
    logdir: str = ""  # run directory; "" = runs/<date-time>
    keep_snapshots: int = 2  # keep the last K snapshots (plus the best by val loss)
    progress_bar: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batch_size", "grad_accum_steps", "keep_snapshots"):
            check_range(name, getattr(self, name), 1)
        for name in ("epochs", "max_steps", "steps_per_epoch", "warmup_steps", "lr_decay_steps", "seed"):
            check_range(name, getattr(self, name), 0)
        if self.epochs == 0 and self.max_steps == 0:
            raise ConfigError("epochs=0 and max_steps=0: set at least one of them to a positive number")
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("adam_beta1", self.adam_beta1, 0, 1, hi_open=True)
        check_range("adam_beta2", self.adam_beta2, 0, 1, hi_open=True)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_range("gradient_clip", self.gradient_clip, 0)
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "constant"))
        check_choice("precision", self.precision, ("fp32", "bf16", "fp16"))
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r}: allowed values are 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")

    @property
    def planned_steps(self) -> int | None:
        """Total optimizer steps this config asks for, if it can be known without the data."""
        by_epochs = self.epochs * self.steps_per_epoch if self.steps_per_epoch else None
        candidates = [n for n in (by_epochs, self.max_steps or None) if n]
        return min(candidates) if candidates else None


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build dataclass `cls` from `values`, refusing unknown keys with the valid names listed."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown field {unknown[0]!r} for {cls.__name__}; "
            f"valid fields are: {', '.join(sorted(known))}"
        )
    for k, v in values.items():
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{k}=nan: expected a number")
    return cls(**values)
