"""JSONL log in the run directory: one scalar or event per line."""
from __future__ import annotations

import json
import math
import os
import time
import weakref
from pathlib import Path
from typing import Any, TextIO

from trainvitals.events import Event
from trainvitals.sinks.base import Sink

__all__ = ["JSONLSink"]


class JSONLSink(Sink):
    def __init__(self, path: str | Path, purge_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if purge_step is not None and self.path.exists():
            _purge(self.path, purge_step)
        self._f = open(self.path, "a", encoding="utf-8")
        self._heads: dict[str, str] = {}
        self._lines: list[str] = []  # lines not yet written: one write a flush
        weakref.finalize(self, _write_out, self._f, self._lines)  # a sink dropped unflushed loses nothing

    def log(self, tag: str, value: float, step: int) -> None:
        # the line json.dumps would write, built directly (a scalar a line is the hot path)
        head = self._heads.get(tag)
        if head is None:
            head = self._heads[tag] = '{"type": "scalar", "tag": %s, "step": ' % json.dumps(tag)
        value = float(value)
        shown = repr(value) if math.isfinite(value) else f'"{value}"'
        self._lines.append(f'{head}{int(step)}, "value": {shown}, "wall_time": {time.time()!r}}}\n')

    def emit(self, event: Event) -> None:
        self._write({"type": "event", **event.to_dict()})

    def settings(self, settings: dict[str, Any]) -> None:
        """A `{"type": "settings", "step": 0, "settings": {...}}` line (step 0: a resume keeps it)."""
        self._write({"type": "settings", "step": 0, "settings": settings})

    def _write(self, record: dict) -> None:
        self._lines.append(json.dumps(record) + "\n")

    def flush(self) -> None:
        _write_out(self._f, self._lines)
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()


def _write_out(f: TextIO, lines: list[str]) -> None:
    if lines and not f.closed:
        f.write("".join(lines))
        lines.clear()


def _purge(path: Path, purge_step: int) -> None:
    """Drop records at or after `purge_step` (a resumed run rewrites them), atomically."""
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                step = json.loads(line).get("step")
            except json.JSONDecodeError:
                continue  # a half-written last line from a crash
            if step is None or step < purge_step:
                kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
