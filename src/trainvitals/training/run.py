"""What every `train-*` command shares: the run directory, sinks, resume, the closing summary."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Iterator

import torch

from trainvitals import distributed as dist
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError, RunDirError
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.logdir import JSONL_NAME, open_sinks
from trainvitals.training import snapshot as snap
from trainvitals.training.data_identity import fingerprint, resolved
from trainvitals.training.rundir import RunDir, run_artifacts, rundir_of

__all__ = ["new_logdir", "open_sinks", "find_resume", "RESUME_FLAGS", "resumed_configs", "summary",
           "RunStart", "start_run", "finish_run", "check_device", "config_facts"]

# flags that may change on --resume; the rest comes from the snapshot (given equal, they are accepted)
# what may differ on --resume: how long, where, how it is shown, and auto_adjust's policy (a run
# stopped at max_rollbacks goes on with more allowed; the rollbacks made are the snapshot's)
RESUME_FLAGS = {"epochs", "max_steps", "logdir", "progress_bar", "device", "log_every",
                "auto_adjust", "max_rollbacks", "rollback_every", "rollback_keep"}

def new_logdir(task: str) -> str:
    return str(Path("runs") / f"{dt.datetime.now():%Y%m%d-%H%M%S}-{task}")


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


def resumed_configs(saved: dict[str, Any], given: dict[str, Any], configs: tuple[type, ...]) -> list[Any]:
    """The configs of a resumed run: the snapshot's, with RESUME_FLAGS from `given`.

    Any other given value must equal the saved one (so the original command line with
    `--resume` added is accepted); `--data` may name another path with the same content."""
    trainer_cls, model_cls, data_cls = configs
    saved_values = {**_known(trainer_cls, saved.get("trainer_config")), **_known(model_cls, saved.get("model_config")),
                    **_known(data_cls, saved.get("run_info", {}).get("data_config"))}
    given = dict(given)
    if "data" in given:
        saved_values["data"] = _same_data(given.pop("data"), saved_values.get("data", ""),
                                          saved.get("run_info", {}).get("data_fingerprint"))
    elif saved_values.get("data") and not Path(saved_values["data"]).exists():
        raise ConfigError(f"data={saved_values['data']!r}: the run's data is no longer there; give --data PATH "
                          f"with the same content (checked by size and SHA-256)")
    from trainvitals.cli_config import build_configs
    before = build_configs(saved_values, *configs, source="snapshot")
    after = build_configs({**saved_values, **given}, *configs, source="flags")
    changed = [f"{f.name}: cannot be changed on --resume (saved {getattr(a, f.name)!r}, given {getattr(b, f.name)!r})"
               for a, b in zip(before, after) for f in dataclasses.fields(a)
               if f.name not in RESUME_FLAGS and getattr(a, f.name) != getattr(b, f.name)]
    if changed:
        raise ConfigError("; ".join(changed) + f"; the config comes from the snapshot: only "
                          f"{', '.join(sorted(RESUME_FLAGS))} may differ, and --data for the same content")
    return after


def _known(cls: type, values: dict[str, Any] | None) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in (values or {}).items() if k in names}


def _same_data(given: Any, saved: str, saved_print: dict[str, Any] | None) -> Any:
    if not isinstance(given, str) or given == saved:
        return given  # a wrong type is refused by the config check
    what = repr(saved) if saved else "the built-in corpus"
    if not given or not saved:
        raise ConfigError(f"data={given!r}: cannot be changed on --resume (the run trained on {what})")
    path = resolved(given)
    if not Path(path).exists():
        raise ConfigError(f"data={given!r}: no such file or directory")
    if path == resolved(saved):
        return path
    if saved_print is None:
        raise ConfigError(f"data={given!r}: the snapshot does not record what {what} held, so another path "
                          f"cannot be checked; give that path")
    now = fingerprint(path)
    if now != saved_print:
        raise ConfigError(f"data={given!r}: not the data the run trained on ({what}): {now['size']:,} bytes vs "
                          f"{saved_print['size']:,}, SHA-256 {now['sha256'][:12]} vs {saved_print['sha256'][:12]}")
    return path


def check_device(name: str) -> None:
    """Refuse a device that is not here before anything is built or written."""
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("device='mps': MPS (Apple GPU) is not available here; use 'cpu' or 'auto'")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name!r}: CUDA is not available here; use 'cpu' or 'auto'")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


@dataclasses.dataclass
class RunStart:
    """Configs for a `train-*` command, fresh or from a snapshot (`saved`), and its claim on
    the run directory. Build the model and data inside `with run.building():`."""
    cfg: TrainerConfig
    model_cfg: Any
    data_cfg: Any
    saved: dict[str, Any] | None = None
    rundir: RunDir | None = None  # None on ranks other than 0: they write nothing
    notes: list[str] = dataclasses.field(default_factory=list)  # printed when training starts
    run_info: dict[str, Any] = dataclasses.field(default_factory=dict)  # for the task's run_info
    _sinks: SinkHub | None = None

    @property
    def purge_step(self) -> int | None:
        # a resumed run drops what was logged after its snapshot, so no step repeats
        return None if self.saved is None else self.saved["progress"]["global_step"] + 1

    def open_sinks(self) -> SinkHub:
        """The run's sinks; none on ranks other than 0 (one voice)."""
        if not dist.is_main():
            return SinkHub()
        try:
            self._sinks = open_sinks(self.cfg.logdir, self.purge_step, self.cfg.progress_bar, None)
        except OSError as e:
            raise RunDirError(f"logdir={self.cfg.logdir!r}: cannot write the logs ({e.strerror or e}); "
                              f"give a writable --logdir with free space") from None
        return self._sinks

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """A fresh run that fails here (bad data, no device) leaves no half-made run directory."""
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._sinks is not None:
            with contextlib.suppress(Exception):
                self._sinks.close()
        if self.rundir is None:
            return
        if self.saved is None:
            self.rundir.discard_new()
        else:
            self.rundir.release()


def start_run(task: str, given: dict[str, Any], resume: str | None, configs: tuple[type, type, type],
              defaults: dict[str, Any]) -> RunStart:
    """configs = (TrainerConfig, model config class, data config class). On resume the
    model and data configs come from the snapshot (run_info["data_config"]). Everything is
    checked before the run directory is claimed, so a refused command changes nothing."""
    from trainvitals.cli_config import build_configs
    if resume is None:
        cfg, model_cfg, data_cfg = build_configs({**defaults, **given}, *configs)
        cfg.logdir = cfg.logdir or new_logdir(task)
        check_device(cfg.device)
        _start_processes(cfg)
        info: dict[str, Any] = {}
        if getattr(data_cfg, "data", ""):
            data_cfg.data = resolved(data_cfg.data)
            info["data_fingerprint"] = fingerprint(data_cfg.data)
        run = RunStart(cfg, model_cfg, data_cfg, run_info={**config_facts(cfg, model_cfg, data_cfg), **info})
        if dist.is_main():
            run.rundir = RunDir(cfg.logdir)
            run.notes += run.rundir.claim(resume=False)
        return run
    path = find_resume(resume, given.get("logdir", ""))
    saved = snap.read_snapshot(path)
    if saved.get("run_info", {}).get("task") != task:
        raise ConfigError(f"resume: {str(path)!r} is not a {task} snapshot")
    cfg, model_cfg, data_cfg = resumed_configs(saved, given, configs)
    cfg.logdir = given.get("logdir") or str(rundir_of(path))
    check_device(cfg.device)
    _start_processes(cfg)
    step = saved["progress"]["global_step"]
    notes = _max_steps_note(cfg, given, saved, step)
    info = {k: v for k, v in saved.get("run_info", {}).items() if k == "data_fingerprint"}
    run = RunStart(cfg, model_cfg, data_cfg, saved, notes=notes,
                   run_info={**config_facts(cfg, model_cfg, data_cfg), **info})
    if dist.is_main():
        logdir = Path(cfg.logdir)
        if run_artifacts(logdir) and logdir.resolve() not in path.resolve().parents:
            raise RunDirError(f"logdir={cfg.logdir!r} holds another run; resume {str(path)!r} into its own "
                              f"directory ({str(rundir_of(path))!r}) or into a new --logdir")
        run.rundir = RunDir(logdir)
        run.notes += run.rundir.claim(resume=True)
        try:
            run.notes += run.rundir.move_newer_aside(step)
        except OSError as e:
            run.rundir.release()
            raise RunDirError(f"logdir={cfg.logdir!r}: cannot move the newer snapshots aside "
                              f"({e.strerror or e}); nothing was deleted") from None
    return run


def config_facts(*configs: Any) -> dict[str, Any]:
    """Every field of the run's configs but its logdir, for the run's settings record:
    `trainvitals advise --out` rebuilds the next run's config from it."""
    return {f.name: getattr(c, f.name) for c in configs for f in dataclasses.fields(c) if f.name != "logdir"}


def _start_processes(cfg: TrainerConfig) -> None:
    """Under torchrun: the process group, made once the command line has been checked (on
    every rank alike). A new run's directory name is rank 0's, so every rank uses one."""
    dist.init_from_env(cfg.device)
    if dist.active():
        cfg.logdir = dist.gather_objects(cfg.logdir)[0]


def _max_steps_note(cfg: TrainerConfig, given: dict[str, Any], saved: dict[str, Any], step: int) -> list[str]:
    """`--epochs N` on resume does nothing past a saved max_steps: say so."""
    saved_epochs = saved["trainer_config"].get("epochs")
    if "epochs" not in given or "max_steps" in given or not cfg.max_steps or cfg.epochs == saved_epochs:
        return []
    if step >= cfg.max_steps:
        raise ConfigError(f"epochs={cfg.epochs}: the run's saved max_steps={cfg.max_steps} caps it and it is "
                          f"at step {step} already, so more epochs add nothing; give --max-steps N as well "
                          f"(--max-steps 0 lifts the cap)")
    by_epochs = cfg.epochs * cfg.steps_per_epoch if cfg.steps_per_epoch else None
    if by_epochs is not None and by_epochs <= cfg.max_steps:
        return []
    return [f"note: the saved max_steps={cfg.max_steps} still caps this run: it ends at step {cfg.max_steps} "
            f"whatever --epochs says; give --max-steps to move it (0 = no cap)"]


def finish_run(trainer: Any, train_data: Any, val_data: Any, run: RunStart | None = None) -> int:
    """Train, close, write the report, print where everything went; the exit code.

    SIGTERM stops after the current step, with a final snapshot, like Ctrl-C. A failed
    write (disk full, read-only) is one line saying what was kept."""
    from trainvitals.report import write_report
    from trainvitals.training.termination import stop_on_sigterm
    logdir = trainer.config.logdir
    try:
        for note in run.notes if run is not None else ():
            trainer.print(note)
        with stop_on_sigterm(trainer):
            try:
                reason = trainer.fit(train_data, val_data)
            finally:
                trainer.close()
        report = write_report(logdir) if dist.is_main() else None
    except OSError as e:
        raise RunDirError(_write_failure(logdir, e)) from None
    finally:
        if run is not None and run.rundir is not None:
            run.rundir.release()
        dist.shutdown()
    if dist.is_main():
        print(summary(logdir, reason.value, trainer.stop_message, report))
    return 0 if reason.value in ("completed", "early_stopping") else 1


def _write_failure(logdir: str, e: OSError) -> str:
    latest = snap.latest_snapshot(Path(logdir) / "snapshots")
    what = f"writing {e.filename}" if e.filename else "a write"
    if latest is None:
        return (f"logdir={logdir!r}: {what} failed ({e.strerror or e}); no snapshot had been written yet, "
                f"so there is nothing to resume; free space or fix permissions and start again")
    return (f"logdir={logdir!r}: {what} failed ({e.strerror or e}); nothing already written was lost: "
            f"{latest} is intact; free space or fix permissions, then continue with --resume --logdir {logdir}")


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
