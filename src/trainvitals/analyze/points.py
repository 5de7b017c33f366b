"""`Points`: one series of a log, (step, value) pairs held as two numpy arrays.

A long run logs millions of points; as a list of Python tuples each costs ~120 bytes,
as arrays 16. `Points` still reads as the list of `(step, value)` tuples it stands for
(indexing, slicing, iteration, `dict(points)`, `==` with a list), so code that walks a
short series need not know; the replay and the JSON writer use the arrays.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Iterable, Iterator

import numpy as np

__all__ = ["Points", "as_arrays"]


class Points(Sequence):
    """(step, value) pairs: `steps` int64, `values` float64, both 1-D and of one length."""

    __slots__ = ("steps", "values")

    def __init__(self, steps: np.ndarray, values: np.ndarray) -> None:
        self.steps = np.asarray(steps, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, float]]) -> "Points":
        pairs = list(pairs)
        return cls(np.array([s for s, _ in pairs], dtype=np.int64), np.array([v for _, v in pairs], dtype=np.float64))

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Points(self.steps[i], self.values[i])
        return int(self.steps[i]), float(self.values[i])

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps.tolist(), self.values.tolist())

    def __eq__(self, other) -> bool:
        if isinstance(other, (Points, list, tuple)):
            return list(self) == list(other)  # a list's ==: NaN equals only itself
        return NotImplemented

    __hash__ = None  # mutable arrays, like a list

    def __repr__(self) -> str:
        shown = list(self[:3])
        return f"Points({len(self)}: {shown}{' ...' if len(self) > 3 else ''})"


def as_arrays(points: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) arrays of any sequence of (step, value) pairs."""
    p = points if isinstance(points, Points) else Points.of(points)
    return p.steps, p.values
