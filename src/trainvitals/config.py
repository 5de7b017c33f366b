"""`TrainerConfig`: how to train and what to watch, validated where it is declared.

Field names follow the seed specification (`ema_alpha`, `enable_ema_loss`,
`mean_gain_drift_threshold`, ...). Every field is also a CLI flag in kebab-case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from trainvitals.errors import ConfigError, check_choice, check_range, check_type

__all__ = ["TrainerConfig", "config_from_dict"]


@dataclass
class TrainerConfig:
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
    log_every: int = 10  # host sync + console line every N steps; every step is logged
    keep_snapshots: int = 2  # keep the last K snapshots (plus the best by val loss)
    progress_bar: bool = True
    # --- Enhancement 1: EMA of the step loss ----------------------------------------
    enable_ema_loss: bool = True
    ema_alpha: float = 0.99  # decay: weight on the old value (DESIGN.md departure 1)
    ema_init: str = "debiased"  # "debiased" (TensorBoard) or "first" (the seed's)
    on_nonfinite_loss: str = "stop"  # "stop" | "skip_step" | "warn"
    # --- gradient flow and weight updates -------------------------------------------
    enable_gradient_monitor: bool = True
    gradient_monitor_interval: int = 3  # monitor step 1, then every N steps (cost: README, "What monitoring costs")
    frozen_patience: int = 3  # monitored steps without change before frozen_parameters
    # --- Enhancement 2: mean gain drift ---------------------------------------------
    mean_gain_drift_threshold: float = 0.25  # relative rise of the moving average; inf = off (seed: 0.1)
    mean_gain_absolute_threshold: Any = "auto"  # float > 1, or "auto" = 1.3 ** (12 / n_blocks)
    mean_gain_drift_window: int = 5  # checks the drift is measured over
    max_gain_jump_factor: float = 10.0  # alert when the largest block gain tops N x the median of its last 20 checks
    on_gain_alert: str = "warn"  # "warn" | "reduce_lr" | "stop"
    # --- Enhancement 3: post-epoch evaluation ---------------------------------------
    enable_post_epoch_evaluation: bool = True
    evaluation_epochs: list[int] = field(default_factory=lambda: [2, 3])
    improvement_threshold: float = 0.01
    gap_threshold: float = 0.3
    plateau_window: int = 3
    auto_adjust: bool = False  # cut LR on plateau and stop early (safe, logged actions)

    def __post_init__(self) -> None:
        for name in ("epochs", "max_steps", "steps_per_epoch", "batch_size", "grad_accum_steps",
                     "warmup_steps", "lr_decay_steps", "seed", "log_every", "keep_snapshots",
                     "gradient_monitor_interval", "frozen_patience", "mean_gain_drift_window",
                     "plateau_window"):
            check_type(name, getattr(self, name), int)
        for name in ("batch_size", "grad_accum_steps", "log_every", "keep_snapshots",
                     "gradient_monitor_interval", "frozen_patience"):
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
        check_range("ema_alpha", self.ema_alpha, 0, 1, lo_open=True, hi_open=True)
        check_choice("ema_init", self.ema_init, ("debiased", "first"))
        check_choice("on_nonfinite_loss", self.on_nonfinite_loss, ("stop", "skip_step", "warn"))
        check_range("mean_gain_drift_threshold", self.mean_gain_drift_threshold, 0, lo_open=True, allow_inf=True)
        if isinstance(self.mean_gain_absolute_threshold, str):
            check_choice("mean_gain_absolute_threshold", self.mean_gain_absolute_threshold, ("auto",))
        else:
            check_range("mean_gain_absolute_threshold", self.mean_gain_absolute_threshold, 1,
                        lo_open=True, allow_inf=True)
        check_range("mean_gain_drift_window", self.mean_gain_drift_window, 2)
        check_range("max_gain_jump_factor", self.max_gain_jump_factor, 1, lo_open=True)
        check_choice("on_gain_alert", self.on_gain_alert, ("warn", "reduce_lr", "stop"))
        if isinstance(self.evaluation_epochs, str):  # "2,3" from a flag or TOML string
            self.evaluation_epochs = _parse_int_list("evaluation_epochs", self.evaluation_epochs)
        self.evaluation_epochs = list(self.evaluation_epochs)
        for e in self.evaluation_epochs:
            if isinstance(e, bool) or not isinstance(e, int) or e < 0:
                raise ConfigError(f"evaluation_epochs={self.evaluation_epochs!r}: expected epoch numbers >= 0")
        check_range("improvement_threshold", self.improvement_threshold, 0, 1, lo_open=True, hi_open=True)
        check_range("gap_threshold", self.gap_threshold, 0, lo_open=True)
        check_range("plateau_window", self.plateau_window, 2)

    @property
    def planned_steps(self) -> int | None:
        """Total optimizer steps this config asks for, if it can be known without the data."""
        by_epochs = self.epochs * self.steps_per_epoch if self.steps_per_epoch else None
        candidates = [n for n in (by_epochs, self.max_steps or None) if n]
        return min(candidates) if candidates else None


def _parse_int_list(field_name: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"{field_name}={text!r}: expected comma-separated integers, e.g. 2,3") from None


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
