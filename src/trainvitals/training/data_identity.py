"""What a `--data` path holds, so a resumed run can check it is given the same data.

Stored in the snapshot as size and SHA-256 of the bytes a task reads: the file, or for
a directory its `*.txt` files in sorted order (with their relative names).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from trainvitals.errors import ConfigError

__all__ = ["fingerprint", "resolved"]


def resolved(path: str) -> str:
    """The absolute path, so a resume from another working directory finds the data."""
    return str(Path(path).expanduser().resolve()) if path else path


def fingerprint(path: str) -> dict[str, object]:
    p = Path(path)
    files = sorted(p.rglob("*.txt")) if p.is_dir() else [p]
    h, size = hashlib.sha256(), 0
    try:
        for f in files:
            if p.is_dir():
                h.update(str(f.relative_to(p)).encode() + b"\0")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
                    size += len(chunk)
    except OSError as e:
        raise ConfigError(f"data={path!r}: cannot read ({e.strerror or e})") from None
    return {"size": size, "sha256": h.hexdigest()}
