"""Gradient norms at block boundaries, measured inside `torch.compile`'s graphs.

A tensor hook that stores a norm in a Python list is a side effect Dynamo cannot put in
a graph: it breaks the graph there and runs the rest of the frame eagerly. A gauge is
instead plain autograd math: ``gauged(x, sink)`` is ``x`` in forward, and in backward
the squared 2-norm of the gradient passing through it, with a count of one, becomes the
gradient of ``sink`` (a 2-element view of a leaf tensor). Dynamo traces it as an
autograd function, AOTAutograd puts the norm in the compiled backward, and the
autograd engine sums what every call contributes into the leaf's ``.grad``, where the
probe reads it after the backward. No hook runs in backward, nothing leaves the device.
"""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["gauged", "with_first_float_gauged"]


class _Gauge(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
        # a new tensor (a view would forbid the block's in-place ops on it); the compiler
        # elides the copy
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        squared = torch.linalg.vector_norm(grad, dtype=torch.float32).square()
        return grad, torch.stack([squared, torch.ones_like(squared)])


def gauged(x: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
    """`x`, whose gradient adds [||grad||^2, 1] to `sink`'s gradient in backward."""
    return _Gauge.apply(x, sink)


def with_first_float_gauged(obj: Any, sink: torch.Tensor) -> tuple[Any, bool]:
    """(`obj` with its first floating-point tensor gauged, whether that tensor carries a
    gradient). Looks through plain tuples, lists and dicts, as the eager hooks do; a
    container of another type is left as it is (its block goes unmeasured)."""
    if isinstance(obj, torch.Tensor):
        if not obj.is_floating_point():
            return obj, False
        if obj.requires_grad and torch.is_grad_enabled():
            return gauged(obj, sink), True
        return obj, False
    if type(obj) in (tuple, list):
        for i, item in enumerate(obj):
            if _holds_float(item):
                new, done = with_first_float_gauged(item, sink)
                return type(obj)([*obj[:i], new, *obj[i + 1:]]), done
    if type(obj) is dict:
        for key, item in obj.items():
            if _holds_float(item):
                new, done = with_first_float_gauged(item, sink)
                return {**obj, key: new}, done
    return obj, False


def _holds_float(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.is_floating_point()
    if type(obj) in (tuple, list):
        return any(_holds_float(item) for item in obj)
    if type(obj) is dict:
        return any(_holds_float(item) for item in obj.values())
    return False
