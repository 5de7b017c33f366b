"""Snapshot files: written atomically, loaded without unpickling arbitrary objects.

A write goes to a temp file in the same directory, is fsynced, then renamed over the
target, so a crash mid-write leaves the previous snapshot intact and loadable.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from trainvitals.errors import SnapshotError

__all__ = ["FORMAT", "atomic_save", "read_snapshot", "list_snapshots", "latest_snapshot", "prune",
           "snapshot_step", "params_finite"]

FORMAT = "trainvitals-snapshot/1"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def atomic_save(payload: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            out = _Writes(f)
            try:
                torch.save({"format": FORMAT, **payload}, out)
            except RuntimeError:
                if out.error is not None:  # torch wraps a full disk in an opaque RuntimeError
                    raise out.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # name the snapshot it was writing
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Writes:
    """A file for torch.save that keeps the OSError (ENOSPC, EFBIG) a failed write raised."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_snapshot(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a snapshot with `weights_only=True`; any problem is one SnapshotError line."""
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"snapshot {str(path)!r}: no such file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SnapshotError(
            f"snapshot {str(path)!r} refused: it holds objects that are not plain tensors or "
            f"containers ({first[:160]})"
        ) from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise SnapshotError(
            f"snapshot {str(path)!r} is unreadable (truncated or not a torch file): "
            f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SnapshotError(f"snapshot {str(path)!r} is not a trainvitals snapshot (format {FORMAT} expected)")
    return payload


def list_snapshots(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the step snapshots in `directory`, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_snapshot(directory: str | Path) -> Path | None:
    snaps = list_snapshots(directory)
    return snaps[-1][1] if snaps else None


def prune(directory: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` step snapshots (best.pt is separate and kept)."""
    for _, p in list_snapshots(directory)[:-keep]:
        p.unlink(missing_ok=True)


def snapshot_step(path: str | Path) -> int | None:
    """The global step a snapshot was taken at (memory-mapped: no full load), or None if unreadable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(payload["progress"]["global_step"])
    except Exception:
        return None


def params_finite(module: torch.nn.Module) -> bool:
    """True if every parameter is finite: one fused max-abs per tensor, then one host sync."""
    params = [p.detach() for p in module.parameters()]
    if not params:
        return True
    norms = torch._foreach_norm(params, float("inf"))
    return bool(torch.isfinite(torch.stack([n.float() for n in norms])).all())
