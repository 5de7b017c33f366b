"""The run directory belongs to one run.

- A new run refuses a directory that already holds a run's logs or snapshots.
- While a run is live it holds `.trainvitals.lock` (its pid inside, and an OS lock on
  the file that the kernel drops when the process dies, even by kill -9), so a second
  run, fresh or resumed, is refused while the first is alive and a stale lock is
  taken over.
- Temp files left by a write that was killed (`.step_N.pt.XXXX.tmp`, a half-purged
  `metrics.jsonl.tmp`) are removed when a run starts or resumes there.
- Resuming from an older snapshot moves the newer ones aside to
  `snapshots/abandoned-<time>/` (never deleted), so `--resume` cannot pick the
  abandoned future.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import socket
from pathlib import Path

from trainvitals.errors import RunDirError
from trainvitals.training import snapshot as snap

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid alone decides
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RunDir", "run_artifacts", "rundir_of"]

LOCK_NAME = ".trainvitals.lock"


def run_artifacts(d: Path) -> list[str]:
    """Names in `d` that only a run writes: its logs and snapshots."""
    if not d.is_dir():
        return []
    names = {p.name for p in d.iterdir()}
    found = ["TensorBoard event files"] if any(n.startswith("events.out.tfevents.") for n in names) else []
    found += ["metrics.jsonl"] if "metrics.jsonl" in names else []
    snaps = d / "snapshots"
    if snaps.is_dir() and any(snaps.iterdir()):
        found.append("snapshots/")
    return found


def rundir_of(snapshot_path: Path) -> Path:
    """The run directory of RUNDIR/snapshots/X.pt or RUNDIR/snapshots/abandoned-T/X.pt."""
    parent = snapshot_path.parent
    if parent.name.startswith("abandoned-") and parent.parent.name == "snapshots":
        return parent.parent.parent
    return parent.parent


class RunDir:
    """One run's claim on its directory; `claim()` first, `release()` when the run ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.created = False  # this run made the directory
        self._before: set[str] | None = None  # entries present before a fresh run
        self._fd: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    # --- claiming -----------------------------------------------------------------
    def claim(self, *, resume: bool, how_to_resume: str | None = None) -> list[str]:
        """Take the directory for this run; returns lines to print (what was cleaned up).
        `how_to_resume`: how a host other than the CLI continues a run (its own checkpoint,
        not our snapshots), named when a new run is refused."""
        p, shown = self.path, str(self.path)
        if p.exists() and not p.is_dir():
            raise RunDirError(f"logdir={shown!r} is a file, not a directory; give a directory")
        if not resume:
            found = run_artifacts(p)
            if found:
                self._refuse_if_live()
                if how_to_resume is not None:
                    raise RunDirError(
                        f"logdir={shown!r} already holds another run's logs ({', '.join(found)}); give another "
                        f"logdir for a new run, or continue that run with {how_to_resume}; nothing was changed")
                if snap.latest_snapshot(p / "snapshots") is None:
                    raise RunDirError(
                        f"logdir={shown!r} already holds the logs of another run ({', '.join(found)}) that saved "
                        f"no snapshot to resume from; give another --logdir, or delete that directory first")
                raise RunDirError(
                    f"logdir={shown!r} already holds a run ({', '.join(found)}); continue it with "
                    f"--resume --logdir {shown}, or give another --logdir for a new run; nothing was changed")
        try:
            self.created = not p.exists()
            p.mkdir(parents=True, exist_ok=True)
            if not resume:
                self._before = {q.name for q in p.iterdir()}
            self._lock()
        except OSError as e:
            self.release()
            raise RunDirError(f"logdir={shown!r}: cannot write there ({e.strerror or e}); nothing was "
                              f"written; give a writable --logdir") from None
        return self._remove_orphans()

    def _lock(self) -> None:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                owner = _read_owner(self.lock_path)
                if owner and owner[0] != os.getpid() and _pid_alive(owner[0]):
                    os.close(fd)
                    raise self._in_use(owner)
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise self._in_use(_read_owner(self.lock_path)) from None
                raise
            # a run that just ended unlinks the file it locked: make sure ours is the live one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        # whatever pid was in it (a run killed with -9) is dead: take it over
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def _refuse_if_live(self) -> None:
        if not self.lock_path.exists():
            return
        owner = _read_owner(self.lock_path)
        if fcntl is not None:
            try:
                fd = os.open(self.lock_path, os.O_RDONLY)
            except OSError:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return  # nobody holds it: a stale lock
            except OSError:
                raise self._in_use(owner) from None
            finally:
                os.close(fd)
        if owner and _pid_alive(owner[0]):
            raise self._in_use(owner)

    def _in_use(self, owner: tuple[int, str] | None) -> RunDirError:
        who = f"pid {owner[0]} on {owner[1]}" if owner else "another process"
        return RunDirError(f"logdir={str(self.path)!r} is in use by a live run ({who}); wait for it to end, "
                           f"or give another --logdir")

    def release(self) -> None:
        """Drop the lock (unlink first, then unlock, so a waiting run locks a fresh file)."""
        if self._fd is None:
            return
        try:
            self.lock_path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    # --- cleaning up ------------------------------------------------------------------
    def _remove_orphans(self) -> list[str]:
        """Delete temp files of writes that were killed; only their owner (us, now) may."""
        orphans = [q for q in (self.path / "snapshots").glob(".*.tmp")]
        orphans += [q for q in self.path.glob("*.jsonl.tmp")]
        if not orphans:
            return []
        size = 0
        for q in orphans:
            try:
                size += q.stat().st_size
                q.unlink()
            except FileNotFoundError:
                pass
        return [f"removed {len(orphans)} temp file(s) ({size / 1e6:.1f} MB) left by an interrupted write "
                f"in {self.path}"]

    def discard_new(self) -> None:
        """Undo a fresh run that failed before training: remove what it created, keep the rest."""
        if self._before is None:
            return
        for q in self.path.iterdir():
            if q.name in self._before or q.name == LOCK_NAME:
                continue
            if q.is_dir() and not q.is_symlink():
                shutil.rmtree(q)
            else:
                q.unlink(missing_ok=True)
        self.release()
        if self.created:
            try:
                self.path.rmdir()
            except OSError:
                pass

    def move_newer_aside(self, step: int) -> list[str]:
        """Resuming at `step`: move snapshots of later steps to snapshots/abandoned-<time>/."""
        d = self.path / "snapshots"
        newer = [q for s, q in snap.list_snapshots(d) if s > step]
        best = d / "best.pt"
        best_step = snap.snapshot_step(best) if best.is_file() else None
        if best_step is not None and best_step > step:
            newer.append(best)
        if not newer:
            return []
        dest = d / f"abandoned-{dt.datetime.now():%Y%m%d-%H%M%S}"
        n = 1
        while dest.exists():
            n += 1
            dest = d / f"abandoned-{dt.datetime.now():%Y%m%d-%H%M%S}-{n}"
        dest.mkdir()
        for q in newer:
            os.replace(q, dest / q.name)
        names = ", ".join(q.name for q in newer)
        return [f"resuming from step {step}: moved {len(newer)} newer snapshot(s) ({names}) aside to {dest}; "
                f"the logs after step {step} are dropped"]


def _read_owner(path: Path) -> tuple[int, str] | None:
    try:
        pid, _, host = path.read_text().strip().partition(" ")
        return int(pid), host or "?"
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it there; assume alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
