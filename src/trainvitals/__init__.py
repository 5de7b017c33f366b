"""trainvitals: train transformers in PyTorch and watch their health while they train."""
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError, SnapshotError
from trainvitals.events import Event
from trainvitals.monitor.config import DetectorConfig, MonitorConfig
from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
from trainvitals.monitor.gradients import GradientMonitorCallback
from trainvitals.monitor.loss import LossMonitorCallback
from trainvitals.monitor.monitor import Monitor
from trainvitals.monitor.outbox import StopReason
from trainvitals.training.callbacks import LoopContext, TrainerCallback
from trainvitals.training.trainer import LanguageModelTrainer, Trainer

__all__ = [
    "Monitor", "MonitorConfig", "DetectorConfig",
    "Trainer", "LanguageModelTrainer", "TrainerConfig", "TrainerCallback", "LoopContext", "StopReason",
    "GradientMonitorCallback", "PostEpochEvaluationCallback", "LossMonitorCallback",
    "Event", "ConfigError", "SnapshotError",
]
__version__ = "0.1.0"
