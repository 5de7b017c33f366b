"""Every monitoring setting is declared once: each host gets the same defaults, and no
constructor on the way declares one of its own."""
import dataclasses
import inspect

import pytest
import torch

from trainvitals.analyze.replay import AnalyzeConfig
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError
from trainvitals.monitor.config import DetectorConfig, MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.tasks.lm.model import GPT, GPTConfig


def _fields(cls):
    return [f.name for f in dataclasses.fields(cls)]


def test_every_host_gets_the_same_defaults():
    from trainvitals.integrations.lightning import TrainvitalsCallback as PL
    from trainvitals.integrations.transformers import TrainvitalsCallback as HF
    from trainvitals.training.trainer import LanguageModelTrainer

    want = MonitorConfig()
    model = GPT(GPTConfig(n_layers=2, d_model=32, n_heads=2, block_size=16))
    hosts = {
        "TrainerConfig": TrainerConfig().monitor_settings(),
        "Trainer's monitor": LanguageModelTrainer(model, TrainerConfig(progress_bar=False)).monitor.config
        .monitor_settings(),
        "Monitor": Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1)).config,
        "HF callback": HF().config,
        "Lightning callback": PL().config,
    }
    for name, got in hosts.items():
        assert got == want, name
    assert AnalyzeConfig().detector_settings() == DetectorConfig() == want.detector_settings()
    assert set(_fields(MonitorConfig)) <= set(_fields(TrainerConfig))
    assert set(_fields(DetectorConfig)) <= set(_fields(AnalyzeConfig))


def test_no_constructor_declares_a_threshold_of_its_own():
    from trainvitals.monitor.evaluation import PostEpochEvaluationCallback
    from trainvitals.monitor.gradients import GradientMonitorCallback
    from trainvitals.monitor.loss import LossMonitorCallback
    from trainvitals.signals.gradient_signals import GradientSignals
    from trainvitals.signals.loss_signals import LossSignals
    names = set(_fields(MonitorConfig))
    for cls in (GradientSignals, LossSignals, GradientMonitorCallback, LossMonitorCallback,
                PostEpochEvaluationCallback, Monitor):
        params = inspect.signature(cls).parameters
        assert not names & set(params), (cls.__name__, names & set(params))


def test_the_seed_names_are_flat_fields_and_flags_still():
    cfg = TrainerConfig(ema_alpha=0.9, mean_gain_drift_threshold=0.3, spike_factor=4.0)
    assert cfg.monitor_settings().ema_alpha == 0.9 and cfg.monitor_settings().spike_factor == 4.0


@pytest.mark.parametrize("field,value", [("enable_ema_loss", "no"), ("gradient_monitor_interval", 2.5),
                                         ("log_every", True), ("ema_alpha", "0.9"), ("on_gain_alert", 1)])
def test_every_field_is_type_checked_and_named(field, value):
    with pytest.raises(ConfigError, match=f"^{field}="):
        MonitorConfig(**{field: value})
