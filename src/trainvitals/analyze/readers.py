"""Read a run's logs into scalar series: TensorBoard event files, trainvitals JSONL, CSV,
and the `trainer_state.json` an HF `Trainer` writes into each checkpoint.

Damage inside a log (a truncated event file, a bad JSON line, a cell that is not a
number) is kept out of the series and described in `RunLog.problems`; only a path that
cannot be a log at all raises `ConfigError`.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from trainvitals.analyze.points import Points
from trainvitals.analyze.tfrecord import EventFileScalars, read_event_file
from trainvitals.errors import ConfigError
from trainvitals.sinks.base import SETTINGS_TAG

__all__ = ["EXPECTED", "HF_STATE", "RunLog", "event_file_bytes", "hf_tag", "is_event_file", "read_run", "read_runs"]

Progress = Callable[[int], None]
Series = dict[str, Points]  # reads as {tag: [(step, value), ...]}

EXPECTED = ("expected a TensorBoard log directory, an events.out.tfevents file, a .jsonl, a .csv, "
            "or an HF trainer_state.json (or a checkpoint directory holding one)")
HF_STATE = "trainer_state.json"
_MAX_LINE_PROBLEMS = 10  # per file; the rest are counted in one more line


@dataclass
class RunLog:
    """One run: tag -> `Points`, (step, value) pairs sorted by step, the events its JSONL holds, the
    settings trainvitals wrote (`trainvitals.monitor.settings`; empty for other writers),
    and one line per thing that could not be read. `index` says what the steps count."""
    name: str
    series: Series = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    index: str = "step"  # "step" | "epoch" (an epoch CSV)
    settings: dict = field(default_factory=dict)
    texts: dict = field(default_factory=dict)  # TensorBoard text summaries by tag (HF's "args", "model_config")

    @property
    def empty(self) -> bool:
        """Nothing was read: no scalar and no event."""
        return not self.events and not any(self.series.values())


def is_event_file(path: Path) -> bool:
    return path.is_file() and "tfevents" in path.name


def _event_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_event_file(p))


def read_run(path: str | Path, *, check_crc: bool = False, progress: Progress | None = None) -> RunLog:
    """Read one run: a directory of event files (merged), one event file, a .jsonl, a .csv
    or an HF `trainer_state.json`.

    A directory with no event files reads its .jsonl (the one holding scalars, with the
    others' events and settings, e.g. `metrics.jsonl` beside `events.jsonl`); one with a
    `trainer_state.json` (an HF checkpoint) reads that, and one whose `checkpoint-N/`
    subdirectories hold them (an HF output directory) reads the latest. The JSONL
    beside event files (trainvitals writes both) gives the run's events.
    `check_crc` also verifies each event record's data checksum (slower). `progress(n)`
    is called as event file bytes are read, n at a time.
    """
    path = Path(path)
    try:
        return _read_run(path, check_crc, progress)
    except OSError as e:  # unreadable directory or file: the user's to fix
        raise ConfigError(f"{path}: cannot read ({e.strerror or e}); {EXPECTED}") from None


def _read_run(path: Path, check_crc: bool, progress: Progress | None) -> RunLog:
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory; {EXPECTED}")
    if path.is_dir():
        files = _event_files(path)
        jsonls = sorted(path.glob("*.jsonl"))
        name = path.resolve().name
        if files:
            run = _read_event_files(name, files, check_crc, progress)
            for j in jsonls:
                events, problems = _jsonl_events(j)
                run.events += events
                run.problems += problems
            return run
        if jsonls:
            return _read_jsonls(jsonls, name)
        state = _hf_state_in(path)
        if state is not None:
            return _read_hf_state(state, name)
        runs = _run_dirs(path)
        hint = f" (it holds {len(runs)} runs in subdirectories: use read_runs)" if runs else ""
        raise ConfigError(f"{path}: no event files or .jsonl in this directory{hint}; "
                          f"{EXPECTED}")
    if is_event_file(path):
        return _read_event_files(path.resolve().parent.name, [path], check_crc, progress)
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path, path.stem)
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    if path.suffix.lower() == ".json":
        return _read_hf_state(path, path.resolve().parent.name)
    raise ConfigError(f"{path}: not a log this reads; {EXPECTED}")


def read_runs(path: str | Path, *, check_crc: bool = False, progress: Progress | None = None) -> dict[str, RunLog]:
    """One RunLog per run under `path`, keyed by name.

    A directory holding no event files itself but subdirectories that do (at any
    depth) gives one run per such subdirectory, keyed by its relative path, sorted;
    anything else is one run, read by `read_run`.
    """
    path = Path(path)
    try:
        runs = _run_dirs(path) if path.is_dir() and not _event_files(path) else {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e}); {EXPECTED}") from None
    if runs:
        return {key: _renamed(read_run(d, check_crc=check_crc, progress=progress), key) for key, d in runs.items()}
    run = read_run(path, check_crc=check_crc, progress=progress)
    return {run.name: run}


def event_file_bytes(path: str | Path) -> int:
    """Bytes of the event files `read_runs(path)` reads: what its `progress` counts to."""
    path = Path(path)
    try:
        if not path.is_dir():
            return path.stat().st_size if is_event_file(path) else 0
        dirs = [path] if _event_files(path) else list(_run_dirs(path).values())
        return sum(f.stat().st_size for d in dirs for f in _event_files(d))
    except OSError:
        return 0  # read_runs says what is wrong


def _renamed(run: RunLog, name: str) -> RunLog:
    run.name = name
    return run


def _run_dirs(root: Path) -> dict[str, Path]:
    found = {d.relative_to(root).as_posix(): d
             for d in root.rglob("*") if d.is_dir() and _event_files(d)}
    return dict(sorted(found.items()))


def _read_event_files(name: str, files: list[Path], check_crc: bool, progress: Progress | None) -> RunLog:
    run = RunLog(name=name)
    parts = []
    for f in files:
        try:
            part = read_event_file(f, check_crc=check_crc, progress=progress)
        except OSError as e:
            run.problems.append(f"{f.name}: cannot read ({e.strerror or e})")
            continue
        parts.append(part)
        run.problems += part.problems
        for tag, _, text, _ in part.texts:
            run.texts[tag.removesuffix("/text_summary")] = text
            if tag in (SETTINGS_TAG, SETTINGS_TAG + "/text_summary"):
                _add_settings(run, _json_object(text), f"{f.name}: {SETTINGS_TAG}")
        del part  # the merge frees each file's arrays as it goes
    run.series = _merge_event_files(parts)
    return run


def _json_object(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _add_settings(run: RunLog, settings, where: str) -> None:
    """Later records update earlier ones."""
    if isinstance(settings, dict):
        run.settings.update(settings)
    else:
        run.problems.append(f"{where}: settings are not a JSON object, left out")


def _merge_event_files(parts: list[EventFileScalars]) -> Series:
    """Concatenate files in order; apply restarts (purge_step); keep the last value per step."""
    names: dict[str, int] = {}
    cols: list[tuple[np.ndarray, ...]] = []
    purges, offset = [], 0
    for p in parts:
        purges += [(s + offset, step) for s, step in p.purges]
        offset += p.records
    offset = 0
    for p in parts:
        remap = np.array([names.setdefault(t, len(names)) for t in p.tags] or [0], np.int32)
        same_ids = np.array_equal(remap, np.arange(len(remap)))
        # the record numbers only where a restart is to be applied (a long log's are 80 MB)
        seq = (p.seq + offset if offset else p.seq) if purges else None
        cols.append((p.tag_id if same_ids else remap[p.tag_id], p.step, p.value, seq))
        offset += p.records
    parts.clear()  # the caller's list: its arrays are freed as they are merged
    if not cols:
        return {}
    tag_id, step, value, seq = (np.concatenate(c) if len(c) > 1 and c[0] is not None else c[0] for c in zip(*cols))
    del cols
    if purges:
        keep = np.ones(len(seq), dtype=bool)
        for at, first_step in purges:  # TensorBoard hides what a restarted run overwrote
            keep &= ~((seq < at) & (step >= first_step))
        tag_id, step, value = tag_id[keep], step[keep], value[keep]
    del seq
    tags = list(names)
    series = {}
    # per tag, in write order: one pass a tag for a few tags, a sort for many
    by_tag = _split_by_tag(tag_id, len(tags))
    for t, idx in by_tag:
        s, v = step[idx], value[idx]  # `idx` a slice where the tags take turns (one event a step)
        if np.any(s[1:] <= s[:-1]):
            o = np.argsort(s, kind="stable")
            s, v = s[o], v[o]
            last = np.append(s[1:] != s[:-1], True)  # the last write of each step wins
            s, v = s[last], v[last]
        series[tags[t]] = Points(s, v)
    return dict(sorted(series.items()))


def _split_by_tag(tag_id: np.ndarray, n_tags: int):
    """(tag, indices of its rows in order) for every tag present: a slice where every row
    holds the tags in one order, over and over (our sink's one event a step), which is
    checked in one pass instead of a pass a tag."""
    period = len(np.unique(tag_id[:n_tags])) if len(tag_id) else 0
    if period and period == n_tags and len(tag_id) % period == 0 and \
            (tag_id.reshape(-1, period) == tag_id[:period]).all():
        for j, t in enumerate(tag_id[:period].tolist()):
            yield t, slice(j, None, period)
        return
    if n_tags <= 32:
        for t in range(n_tags):
            idx = np.flatnonzero(tag_id == t)
            if len(idx):
                yield t, idx
        return
    order = np.argsort(tag_id, kind="stable")
    bounds = np.flatnonzero(np.diff(tag_id[order])) + 1
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(order)]):
        yield int(tag_id[order[lo]]), order[lo:hi]


def _number(x) -> float:
    """A JSON number or one of the strings trainvitals writes for non-finite values."""
    if isinstance(x, bool):
        raise TypeError
    if isinstance(x, str) and x.strip().lower() not in ("nan", "inf", "-inf", "+inf",
                                                        "infinity", "-infinity"):
        raise ValueError
    return float(x)


def _int_step(x) -> int:
    if isinstance(x, bool):
        raise TypeError
    if isinstance(x, int):
        return x
    if isinstance(x, str) and x.strip().lstrip("+-").isdigit():
        return int(x)
    f = float(x)
    if not math.isfinite(f) or f != int(f):
        raise ValueError
    return int(f)


class _Problems:
    """Per-file line problems, capped so a broken file does not flood the report."""

    def __init__(self, name: str) -> None:
        self.name, self.lines, self.more = name, [], 0

    def add(self, line_no: int, why: str) -> None:
        if len(self.lines) < _MAX_LINE_PROBLEMS:
            self.lines.append(f"{self.name} line {line_no}: {why}")
        else:
            self.more += 1

    def done(self) -> list[str]:
        tail = [f"{self.name}: {self.more} more bad lines"] if self.more else []
        return self.lines + tail


def _sorted_series(points: dict[str, dict[int, float]]) -> Series:
    return {tag: Points.of(sorted(by_step.items())) for tag, by_step in sorted(points.items())}


def _read_jsonl(path: Path, name: str) -> RunLog:
    run = RunLog(name=name)
    points: dict[str, dict[int, float]] = {}
    problems = _Problems(path.name)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                problems.add(line_no, "not JSON")
                continue
            if not isinstance(rec, dict):
                problems.add(line_no, "not a JSON object")
            elif rec.get("type") == "scalar":
                try:
                    tag, step, value = rec["tag"], _int_step(rec["step"]), _number(rec["value"])
                    if not isinstance(tag, str):
                        raise TypeError
                    points.setdefault(tag, {})[step] = value
                except (KeyError, TypeError, ValueError):
                    problems.add(line_no, "scalar needs a tag, an integer step and a number value")
            elif rec.get("type") == "event":
                if "kind" in rec:
                    run.events.append({k: v for k, v in rec.items() if k != "type"})
                else:
                    problems.add(line_no, "event without a kind")
            elif rec.get("type") == "settings":
                _add_settings(run, rec.get("settings"), f"{path.name} line {line_no}")
    run.series = _sorted_series(points)
    run.problems = problems.done()
    return run


def _read_jsonls(paths: list[Path], name: str) -> RunLog:
    """One or more .jsonl of one run, e.g. a loop's `metrics.jsonl` (scalars) beside an
    `events.jsonl`: the one holding scalars is the run, the others add events and settings."""
    runs = [_read_jsonl(p, name) for p in paths]
    with_scalars = [i for i, r in enumerate(runs) if any(r.series.values())]
    if len(with_scalars) > 1:
        raise ConfigError(f"{paths[0].parent}: {len(with_scalars)} .jsonl files here hold scalars "
                          f"({', '.join(paths[i].name for i in with_scalars)}); pass the one to analyze")
    run = runs.pop(with_scalars[0] if with_scalars else 0)
    seen = {(e.get("kind"), e.get("step"), e.get("message")) for e in run.events}
    for other in runs:  # a loop may write its events to both: each once
        run.events += [e for e in other.events if (e.get("kind"), e.get("step"), e.get("message")) not in seen]
        run.problems += other.problems
        run.settings = {**other.settings, **run.settings}
    return run


def _jsonl_events(path: Path) -> tuple[list[dict], list[str]]:
    """Only the events of a JSONL (its scalars duplicate the event files beside it)."""
    events, problems = [], _Problems(path.name)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                if '"event"' not in line:  # skip parsing the (many) scalar lines
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    problems.add(line_no, "not JSON")
                    continue
                if isinstance(rec, dict) and rec.get("type") == "event" and "kind" in rec:
                    events.append({k: v for k, v in rec.items() if k != "type"})
    except OSError as e:
        return [], [f"{path.name}: cannot read ({e.strerror or e})"]
    return events, problems.done()


def _read_csv(path: Path) -> RunLog:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = csv.reader(f)
        header = [h.strip() for h in next(rows, [])]
        skip = 1 if len(header) > 1 and header[0] == "" else 0  # pandas' unnamed index column
        index = header[skip].lower() if len(header) > skip else ""
        if index not in ("step", "epoch"):
            raise ConfigError(f"{path}: the CSV header must start with 'step' or 'epoch' "
                              f"followed by tag names, got {','.join(header[:4])!r}; {EXPECTED}")
        tags = header[skip + 1:]
        run = RunLog(name=path.stem, index=index)
        points: dict[str, dict[int, float]] = {t: {} for t in tags}
        problems = _Problems(path.name)
        for line_no, row in enumerate(rows, 2):
            row = row[skip:]
            if not any(c.strip() for c in row):
                continue
            try:
                at = _int_step(row[0])
            except ValueError:
                problems.add(line_no, f"{index} {row[0]!r} is not an integer")
                continue
            for tag, cell in zip(tags, row[1:]):
                cell = cell.strip()
                if not cell:
                    continue  # missing
                try:
                    points[tag][at] = float(cell)  # also parses nan, inf, -inf
                except ValueError:
                    problems.add(line_no, f"{tag} {cell!r} is not a number")
    run.series = _sorted_series(points)
    run.problems = problems.done()
    return run


def _hf_state_in(folder: Path) -> Path | None:
    """`folder/trainer_state.json`, else that of its latest `checkpoint-N/` (the one
    with the largest N holds the longest history)."""
    if (folder / HF_STATE).is_file():
        return folder / HF_STATE
    found = [(int(d.name[len("checkpoint-"):]), d / HF_STATE) for d in folder.glob("checkpoint-*")
             if d.name[len("checkpoint-"):].isdigit() and (d / HF_STATE).is_file()]
    return max(found)[1] if found else None


def hf_tag(key: str) -> str:
    """The TensorBoard tag HF's `TensorBoardCallback` writes for a `log_history` key
    (its `rewrite_logs`): `eval_loss` -> `eval/loss`, `loss` -> `train/loss`."""
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return "train/" + key


def _read_hf_state(path: Path, name: str) -> RunLog:
    """An HF `trainer_state.json`: each `log_history` entry is one logging call at its
    `step` (HF's global_step: optimizer steps, 1-based). Keys are renamed as HF's
    TensorBoard callback names them, so a run reads the same from either file."""
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except ValueError as e:
        raise ConfigError(f"{path}: not JSON ({e}); {EXPECTED}") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ConfigError(f"{path}: no 'log_history' list, so not an HF trainer_state.json; {EXPECTED}")
    run = RunLog(name=name)
    points: dict[str, dict[int, float]] = {}
    problems = _Problems(path.name)
    for i, entry in enumerate(history):
        try:
            step = _int_step(entry["step"])
        except (KeyError, TypeError, ValueError):
            problems.add(i + 1, "log_history entry without an integer 'step'")
            continue
        for key, value in entry.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # strings, lists: not scalars
            points.setdefault(hf_tag(key), {})[step] = float(value)
    run.series = _sorted_series(points)
    run.problems = [p.replace(" line ", " log_history entry ") for p in problems.done()]
    return run
