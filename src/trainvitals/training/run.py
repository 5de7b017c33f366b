"""What every `train-*` command shares: the run directory, sinks, resume, the closing summary."""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.console import ConsoleSink
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.sinks.tensorboard import TensorBoardSink
from trainvitals.training import snapshot as snap

__all__ = ["new_logdir", "open_sinks", "find_resume", "RESUME_FLAGS", "resumed_config", "summary",
           "RunStart", "start_run", "finish_run"]

# flags that may change on --resume; the rest comes from the snapshot
RESUME_FLAGS = {"epochs", "max_steps", "logdir", "progress_bar", "device", "log_every"}

JSONL_NAME = "metrics.jsonl"


def new_logdir(task: str) -> str:
    return str(Path("runs") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{task}")


def open_sinks(logdir: str, purge_step: int | None, progress_bar: bool, total: int | None) -> SinkHub:
    Path(logdir).mkdir(parents=True, exist_ok=True)
    return SinkHub([
        TensorBoardSink(logdir, purge_step=purge_step),
        JSONLSink(Path(logdir) / JSONL_NAME, purge_step=purge_step),
        ConsoleSink(progress_bar=progress_bar, total=total),
    ])


def find_resume(resume: str, logdir: str) -> Path:
    """`--resume` alone: the latest snapshot in --logdir; `--resume PATH`: that file."""
    if resume != "latest":
        return Path(resume)
    if not logdir:
        raise ConfigError("resume: --resume without a path needs --logdir (the run directory to continue)")
    latest = snap.latest_snapshot(Path(logdir) / "snapshots")
    if latest is None:
        raise ConfigError(f"resume: no snapshot in {str(Path(logdir) / 'snapshots')!r}; "
                          f"give --resume PATH or the --logdir of a run that saved one")
    return latest


def resumed_config(saved: dict[str, Any], given: dict[str, Any]) -> TrainerConfig:
    changed = sorted(k for k in given if k not in RESUME_FLAGS)
    if changed:
        raise ConfigError(f"{changed[0]}: cannot be changed on --resume (config comes from the snapshot); "
                          f"only {', '.join(sorted(RESUME_FLAGS))} may be given")
    values = dict(saved)
    values.update({k: v for k, v in given.items() if k in RESUME_FLAGS})
    known = {f.name for f in dataclasses.fields(TrainerConfig)}
    return TrainerConfig(**{k: v for k, v in values.items() if k in known})


@dataclasses.dataclass
class RunStart:
    """Configs for a `train-*` command, fresh or from a snapshot (`saved`)."""
    cfg: TrainerConfig
    model_cfg: Any
    data_cfg: Any
    saved: dict[str, Any] | None = None

    @property
    def purge_step(self) -> int | None:
        # a resumed run drops what was logged after its snapshot, so no step repeats
        return None if self.saved is None else self.saved["progress"]["global_step"] + 1

    def open_sinks(self) -> SinkHub:
        return open_sinks(self.cfg.logdir, self.purge_step, self.cfg.progress_bar, None)


def start_run(task: str, given: dict[str, Any], resume: str | None, configs: tuple[type, type, type],
              defaults: dict[str, Any]) -> RunStart:
    """configs = (TrainerConfig, model config class, data config class). On resume the
    model and data configs come from the snapshot (run_info["data_config"])."""
    from trainvitals.cli_config import build_configs
    _, model_cls, data_cls = configs
    if resume is None:
        cfg, model_cfg, data_cfg = build_configs({**defaults, **given}, *configs)
        cfg.logdir = cfg.logdir or new_logdir(task)
        return RunStart(cfg, model_cfg, data_cfg)
    path = find_resume(resume, given.get("logdir", ""))
    saved = snap.read_snapshot(path)
    if saved.get("run_info", {}).get("task") != task:
        raise ConfigError(f"resume: {str(path)!r} is not a {task} snapshot")
    cfg = resumed_config(saved["trainer_config"], given)
    if "logdir" not in given:
        cfg.logdir = str(path.parent.parent)
    return RunStart(cfg, model_cls(**saved["model_config"]), data_cls(**saved["run_info"]["data_config"]), saved)


def finish_run(trainer: Any, train_data: Any, val_data: Any) -> int:
    """Train, close, write the report, print where everything went; the exit code."""
    from trainvitals.report import write_report
    try:
        reason = trainer.fit(train_data, val_data)
    finally:
        trainer.close()
    report = write_report(trainer.config.logdir)
    print(summary(trainer.config.logdir, reason.value, trainer.stop_message, report))
    return 0 if reason.value in ("completed", "early_stopping") else 1


def summary(logdir: str, reason: str, message: str = "", report: Path | None = None) -> str:
    d = Path(logdir)
    lines = [
        f"Training stopped: {reason}" + (f" ({message})" if message else ""),
        f"  run directory : {d}",
        f"  TensorBoard   : {d} (event files)",
        f"  JSONL log     : {d / JSONL_NAME}",
        f"  snapshots     : {d / 'snapshots'}",
    ]
    if report is not None:
        lines.append(f"  report        : {report}")
    lines.append(f"  open with     : tensorboard --logdir {d}")
    return "\n".join(lines)
