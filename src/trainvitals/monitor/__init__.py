"""The monitoring core: one `MonitorConfig`, one `Monitor`, hosted by any training loop."""
from trainvitals.monitor.config import DetectorConfig, MonitorConfig

__all__ = ["DetectorConfig", "MonitorConfig", "Monitor"]


def __getattr__(name: str):  # Monitor imports torch; the configs stay importable without it
    if name == "Monitor":
        from trainvitals.monitor.monitor import Monitor
        return Monitor
    raise AttributeError(name)
