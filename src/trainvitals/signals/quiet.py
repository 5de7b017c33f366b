"""Proving a detector quiet over a long block of steps (a replay feeds millions).

A detector's `update` is the one implementation of its rule. Some detectors also have a
`quiet_plan(...)`: given a block of the values `update` would be fed, it returns None
unless it can prove, vectorised, that `update` would raise nothing on any of them from
the detector's present state; then it returns a function that moves the state to where
those `update` calls would have left it, bit for bit (`tests/signals/test_quiet_plans.py`
checks both against `update` itself). Where a plan says None the caller feeds the block
to `update`, step by step. Only the helpers the plans share live here.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["run_lengths", "previous_min", "lowest", "exact_sum3"]


def run_lengths(b: np.ndarray, carry: int) -> np.ndarray:
    """A counter of consecutive True: r[i] = r[i-1] + 1 where b[i], else 0 (r[-1] = carry)."""
    idx = np.arange(len(b))
    last_false = np.maximum.accumulate(np.where(b, -1, idx)) if len(b) else idx
    r = idx - last_false
    none = last_false < 0
    r[none] = carry + idx[none] + 1
    return r


def previous_min(history: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """For each x, the lowest of the len(history) values just before it (history, then xs)."""
    w = len(history)
    return sliding_window_view(np.concatenate((history, xs)), w)[:len(xs)].min(axis=1)


def lowest(low: float | None, low_step: int | None, xs: np.ndarray, steps: np.ndarray) -> tuple:
    """(low, its step) after `if low is None or x < low: low, low_step = x, step` over xs:
    the first of the lowest xs where it is below `low`."""
    k = int(np.argmin(xs))
    if low is None or xs[k] < low:
        return float(xs[k]), int(steps[k])
    return low, low_step


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(a + b) and its rounding error e (a + b = s + e exactly; Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def exact_sum3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """`math.fsum((a, b, c))` row by row: the correctly rounded sum. a + b + c = s + e1 + e2
    exactly (TwoSum twice); where e1 + e2 is a double, fl(s + (e1 + e2)) is one rounding of
    the exact sum, so it is fsum's; the rare other rows, and any overflow, are fsum'd."""
    with np.errstate(invalid="ignore", over="ignore"):
        s1, e1 = _two_sum(a, b)
        s, e2 = _two_sum(s1, c)
        t, e3 = _two_sum(e1, e2)
        out = s + t
        bad = (e3 != 0) | ~np.isfinite(out) | ~np.isfinite(s1) | ~np.isfinite(e3)
    for i in np.flatnonzero(bad).tolist():
        out[i] = math.fsum((float(a[i]), float(b[i]), float(c[i])))
    return out
