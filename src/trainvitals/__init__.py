"""trainvitals: train transformers in PyTorch and watch their health while they train."""
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError, SnapshotError
from trainvitals.events import Event
from trainvitals.training.callbacks import StopReason, TrainerCallback
from trainvitals.training.evaluation import PostEpochEvaluationCallback
from trainvitals.training.gradient_monitor import GradientMonitorCallback
from trainvitals.training.loss_monitor import LossMonitorCallback
from trainvitals.training.trainer import LanguageModelTrainer, Trainer

__all__ = [
    "Trainer", "LanguageModelTrainer", "TrainerConfig", "TrainerCallback", "StopReason",
    "GradientMonitorCallback", "PostEpochEvaluationCallback", "LossMonitorCallback",
    "Event", "ConfigError", "SnapshotError",
]
__version__ = "0.1.0"
