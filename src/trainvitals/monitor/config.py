"""`DetectorConfig` and `MonitorConfig`: every monitoring setting, declared once.

`DetectorConfig` holds the detectors' thresholds: what `trainvitals analyze` replays
and the live monitor runs. `MonitorConfig` adds what only a live run has (how often to
measure, what to do on an alert). `TrainerConfig` and `AnalyzeConfig` inherit these
fields, so `--ema-alpha` and TOML keys keep their names, and no other place declares
a default: the signal suites, the `Monitor` and the framework callbacks all take one
of these objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from trainvitals.errors import ConfigError, check_choice, check_field_types, check_range

__all__ = ["DetectorConfig", "MonitorConfig", "parse_int_list"]


@dataclass
class DetectorConfig:
    # --- Enhancement 1: the step loss -------------------------------------------------
    ema_alpha: float = 0.99  # EMA decay: weight on the old value (DESIGN.md departure 1)
    ema_init: str = "debiased"  # "debiased" (TensorBoard) or "first" (the seed's)
    spike_factor: float = 3.0  # loss_spike: a loss above N x the median of the last 50
    spike_min_rise: float = 0.1  # ... and above that median by this fraction of the run's starting loss
    divergence_climb: float = 0.2  # loss_divergence: smoothed loss this fraction above its running minimum ...
    divergence_patience: int = 20  # ... for this many steps
    early_loss_rise: float = 0.5  # loss_above_init: a loss this fraction above the loss at initialisation
    early_loss_jump: float = 1.5  # early_loss_jump: in the first steps, a loss N x its lowest so far ...
    early_loss_horizon: int = 20  # ... within this many steps (then the spike check has its history)
    unigram_stall_steps: int = 200  # unigram_stall: smoothed loss at the unigram entropy this many steps, never below
    unigram_plateau_fall: float = 0.0  # unigram_plateau (warning; 0 = off): 100 steps at the unigram entropy, the smoothed loss falling under this x it per 50
    loss_creep_rise: float = 0.015  # loss_creep (warning; inf = off): smoothed loss this fraction over its minimum, the LR up 10% since, ...
    loss_creep_patience: int = 20  # ... for this many steps
    # --- Enhancement 2: gradient flow -------------------------------------------------
    mean_gain_drift_threshold: float = 0.25  # relative rise of the moving average; inf = off (seed: 0.1)
    mean_gain_absolute_threshold: Any = "auto"  # float > 1, or "auto" = 1.3 ** (12 / n_blocks)
    mean_gain_drift_window: int = 5  # checks the drift is measured over
    mean_gain_drift_consecutive: int = 3  # rising checks in a row before a drift is raised
    mean_gain_drift_settle_steps: int = 100  # no drift warning before this step (alerts as ever): the gain's early dip
    max_gain_jump_factor: float = 10.0  # alert when the largest block gain tops N x the median of its last 20 checks
    grad_norm_jump_factor: float = 10.0  # alert when the grad norm tops N x the median of its last 20 checks
    jump_persistence: int = 3  # on a clipped run either jump is a warning, an alert once it holds N checks in a row
    frozen_patience: int = 3  # monitored steps without change before frozen_parameters
    # --- Enhancement 3: post-epoch evaluation -----------------------------------------
    evaluation_epochs: list[int] = field(default_factory=lambda: [2, 3])  # epochs (0-based) with the full report
    improvement_threshold: float = 0.01
    gap_threshold: float = 0.3
    plateau_window: int = 3
    val_loss_rise: float = 0.1  # val_loss_above_best (alert): the val loss this fraction above its best ...
    val_loss_rise_patience: int = 3  # ... at this many evaluations in a row

    def __post_init__(self) -> None:
        # every field of the concrete class (TrainerConfig's too) has its annotated type
        check_field_types(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        if isinstance(self.evaluation_epochs, str):  # "2,3" from a flag or a TOML string
            self.evaluation_epochs = parse_int_list("evaluation_epochs", self.evaluation_epochs)
        self.evaluation_epochs = list(self.evaluation_epochs)
        for e in self.evaluation_epochs:
            if isinstance(e, bool) or not isinstance(e, int) or e < 0:
                raise ConfigError(f"evaluation_epochs={self.evaluation_epochs!r}: expected epoch numbers >= 0")
        check_range("ema_alpha", self.ema_alpha, 0, 1, lo_open=True, hi_open=True)
        check_choice("ema_init", self.ema_init, ("debiased", "first"))
        check_range("spike_factor", self.spike_factor, 1, lo_open=True)
        check_range("spike_min_rise", self.spike_min_rise, 0)
        check_range("divergence_climb", self.divergence_climb, 0, lo_open=True)
        check_range("divergence_patience", self.divergence_patience, 1)
        check_range("early_loss_rise", self.early_loss_rise, 0, lo_open=True)
        check_range("early_loss_jump", self.early_loss_jump, 1, lo_open=True)
        check_range("early_loss_horizon", self.early_loss_horizon, 2)
        check_range("unigram_stall_steps", self.unigram_stall_steps, 1)
        check_range("unigram_plateau_fall", self.unigram_plateau_fall, 0, 1, hi_open=True)
        check_range("loss_creep_rise", self.loss_creep_rise, 0, lo_open=True, allow_inf=True)
        check_range("loss_creep_patience", self.loss_creep_patience, 1)
        check_range("mean_gain_drift_threshold", self.mean_gain_drift_threshold, 0, lo_open=True, allow_inf=True)
        if isinstance(self.mean_gain_absolute_threshold, str):
            check_choice("mean_gain_absolute_threshold", self.mean_gain_absolute_threshold, ("auto",))
        else:
            check_range("mean_gain_absolute_threshold", self.mean_gain_absolute_threshold, 1,
                        lo_open=True, allow_inf=True)
        check_range("mean_gain_drift_window", self.mean_gain_drift_window, 2)
        check_range("mean_gain_drift_consecutive", self.mean_gain_drift_consecutive, 1)
        check_range("mean_gain_drift_settle_steps", self.mean_gain_drift_settle_steps, 0)
        check_range("max_gain_jump_factor", self.max_gain_jump_factor, 1, lo_open=True)
        check_range("grad_norm_jump_factor", self.grad_norm_jump_factor, 1, lo_open=True)
        check_range("jump_persistence", self.jump_persistence, 1)
        check_range("frozen_patience", self.frozen_patience, 1)
        check_range("improvement_threshold", self.improvement_threshold, 0, 1, lo_open=True, hi_open=True)
        check_range("gap_threshold", self.gap_threshold, 0, lo_open=True)
        check_range("plateau_window", self.plateau_window, 2)
        check_range("val_loss_rise", self.val_loss_rise, 0, lo_open=True)
        check_range("val_loss_rise_patience", self.val_loss_rise_patience, 1)

    def detector_settings(self) -> "DetectorConfig":
        """Just the detector thresholds (for a host that holds a larger config)."""
        return DetectorConfig(**{f.name: getattr(self, f.name) for f in fields(DetectorConfig)})


@dataclass
class MonitorConfig(DetectorConfig):
    # --- what a live run measures, and when --------------------------------------------
    log_every: int = 10  # host sync (and console line) every N steps; every step is still logged
    enable_ema_loss: bool = True
    on_nonfinite_loss: str = "stop"  # "stop" | "skip_step" | "warn"
    enable_gradient_monitor: bool = True
    gradient_monitor_interval: int = 3  # monitor step 1, then every N steps (cost: docs/cost.md)
    on_gain_alert: str = "warn"  # "warn" | "reduce_lr" | "stop"
    log_per_param: bool = False  # also one update-ratio tag per parameter (default: per block and group)
    enable_post_epoch_evaluation: bool = True
    auto_adjust: bool = False  # roll back past a spike/divergence/NaN, skip its batches, cut the LR if it is the cause; cut the LR on a plateau, stop early (docs/auto_adjust.md)
    max_rollbacks: int = 3  # auto_adjust: rollbacks allowed; the next trigger stops the run, naming them all
    rollback_every: int = 20  # auto_adjust: steps between the states kept in memory (taken at logging steps)
    rollback_keep: int = 5  # auto_adjust: states kept in host memory, each the weights and optimizer state

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("log_every", self.log_every, 1)
        check_range("gradient_monitor_interval", self.gradient_monitor_interval, 1)
        check_choice("on_nonfinite_loss", self.on_nonfinite_loss, ("stop", "skip_step", "warn"))
        check_choice("on_gain_alert", self.on_gain_alert, ("warn", "reduce_lr", "stop"))
        check_range("max_rollbacks", self.max_rollbacks, 0)
        check_range("rollback_every", self.rollback_every, 1)
        check_range("rollback_keep", self.rollback_keep, 1)

    def monitor_settings(self) -> "MonitorConfig":
        """Just the monitoring settings (e.g. of a `TrainerConfig`)."""
        return MonitorConfig(**{f.name: getattr(self, f.name) for f in fields(MonitorConfig)})


def parse_int_list(field_name: str, text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"{field_name}={text!r}: expected comma-separated integers, e.g. 2,3") from None
