"""Shared test helpers: run the CLI in a fresh process, read logs back."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

TINY = ["--n-layers", "2", "--d-model", "32", "--n-heads", "2", "--block-size", "32", "--batch-size", "8",
        "--no-progress-bar"]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "trainvitals", *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def jsonl_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        if r["type"] == "scalar":
            out.setdefault(r["tag"], []).append((r["step"], float(r["value"])))
    return out


def tb_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_SNIPPET = re.compile(r"^[ \t]*# --- snippet: (?P<name>[\w-]+) ---\n(?P<code>.*?)^[ \t]*# --- end snippet ---",
                      re.M | re.S)


def snippets() -> dict[str, str]:
    """name -> the dedented code of each marked snippet in examples/ (what the README shows)."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.py")):
        for m in _SNIPPET.finditer(path.read_text()):
            assert m["name"] not in found, f"snippet {m['name']!r} is marked twice"
            found[m["name"]] = textwrap.dedent(m["code"])
    return found
