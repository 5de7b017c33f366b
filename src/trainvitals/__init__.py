"""trainvitals: train transformers in PyTorch and watch their health while they train."""
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError, SnapshotError
from trainvitals.events import Event
from trainvitals.monitor.config import DetectorConfig, MonitorConfig
from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
from trainvitals.monitor.gradients import GradientMonitorCallback
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.monitor.outbox import StopReason
from trainvitals.training.callbacks import LoopContext, TrainerCallback

__all__ = [
    "Monitor", "MonitorConfig", "DetectorConfig",
    "Trainer", "LanguageModelTrainer", "TrainerConfig", "TrainerCallback", "LoopContext", "StopReason",
    "GradientMonitorCallback", "PostEpochEvaluationCallback", "LossMonitorCallback",
    "Event", "ConfigError", "SnapshotError",
]
__version__ = "0.1.0"

# These import torch (seconds, ~200 MB), which `trainvitals analyze` never needs.
_TORCH = {"Monitor": "trainvitals.monitor.monitor", "Trainer": "trainvitals.training.trainer",
          "LanguageModelTrainer": "trainvitals.training.trainer"}


def __getattr__(name: str):
    if name in _TORCH:
        import importlib
        return getattr(importlib.import_module(_TORCH[name]), name)
    raise AttributeError(f"module 'trainvitals' has no attribute {name!r}")
