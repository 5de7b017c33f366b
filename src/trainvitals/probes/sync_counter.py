"""Count the Python calls that move a tensor's value to the host, for tests and benchmarks.

Inside ``with count_host_syncs() as syncs:`` every call of ``Tensor.item``, ``.cpu``,
``.tolist``, ``.numpy``, ``__bool__`` (a Python ``if`` on a tensor), ``__float__``,
``__int__``, ``__index__``, ``__repr__`` (printing) and ``.to(...)`` that targets the CPU
from another device is counted; the methods are restored on exit. The count is of
calls from Python: torch's own C++ code is not seen. A call on a CPU tensor counts too,
because on an accelerator the same line would wait for the device.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["count_host_syncs", "count_collectives"]

_METHODS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__",
            "__index__", "__repr__")


def _targets_cpu(args: tuple, kwargs: dict) -> bool:
    device = kwargs.get("device")
    if device is None and args and isinstance(args[0], (str, torch.device)):
        device = args[0]
    return device is not None and torch.device(device).type == "cpu"


class count_host_syncs:
    """Context manager: ``count`` is the number of host-sync calls made inside it.

    ``calls`` counts them by method name. Not thread-safe; do not nest.
    """

    def __init__(self) -> None:
        self.count = 0
        self.calls: Counter[str] = Counter()
        self._saved: dict[str, Any] = {}

    def _record(self, name: str) -> None:
        self.count += 1
        self.calls[name] += 1

    def _wrap(self, name: str, original: Callable) -> Callable:
        def counted(tensor, *args, **kwargs):
            self._record(name)
            return original(tensor, *args, **kwargs)
        return counted

    def _wrap_to(self, original: Callable) -> Callable:
        def counted_to(tensor, *args, **kwargs):
            if tensor.device.type != "cpu" and _targets_cpu(args, kwargs):
                self._record("to")
            return original(tensor, *args, **kwargs)
        return counted_to

    def __enter__(self) -> count_host_syncs:
        if self._saved:
            raise RuntimeError("count_host_syncs is already active; it cannot be nested")
        for name in (*_METHODS, "to"):
            # Remember whether torch.Tensor defines it itself or inherits it from
            # TensorBase, so that exit restores exactly the previous lookup.
            self._saved[name] = torch.Tensor.__dict__.get(name, _INHERITED)
        for name in _METHODS:
            setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))
        torch.Tensor.to = self._wrap_to(torch.Tensor.to)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._saved.items():
            if original is _INHERITED:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)
        self._saved = {}


_INHERITED = object()


_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "broadcast",
                "broadcast_object_list", "reduce_scatter", "reduce_scatter_tensor", "barrier")


class count_collectives:
    """Context manager: ``count`` is the number of torch.distributed collectives called from
    Python inside it (``calls`` by name). DDP's gradient all-reduce runs in C++ and is not
    seen: what is counted is what a monitor or a loop adds. Do not nest."""

    def __init__(self) -> None:
        self.count = 0
        self.calls: Counter[str] = Counter()
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> count_collectives:
        import torch.distributed as dist
        for name in _COLLECTIVES:
            original = self._saved[name] = getattr(dist, name)

            def counted(*args, _original=original, _name=name, **kwargs):
                self.count += 1
                self.calls[_name] += 1
                return _original(*args, **kwargs)
            setattr(dist, name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch.distributed as dist
        for name, original in self._saved.items():
            setattr(dist, name, original)
        self._saved = {}
