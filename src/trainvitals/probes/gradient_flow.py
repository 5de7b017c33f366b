"""Per-block gradient gain and parameter-gradient health, measured on the device.

Gain (DESIGN.md, departure 3): for a block with input x and output y,
``gain = ||dL/dx|| / ||dL/dy||``, the factor by which the block scales the gradient
flowing back through it (a block y = 2x has gain 2).

How it is measured. ``attach()`` puts a forward pre-hook and a forward hook on each
block. They register ``Tensor.register_hook`` on the block's input (before the block
runs) and on its output (after it returns); in backward those tensor hooks store
``vector_norm(grad)`` in fp32 as a 0-d device tensor. Nothing reaches the host until
``GradientFlowStats.to_host()``.

- In-place ops: a tensor hook registered before an in-place op receives the gradient
  of the value the tensor had then, so a block that does ``x += f(x)`` on its input,
  or ``relu_`` on its output, is measured at its real input and output.
  ``register_full_backward_hook`` is not used: it wraps inputs in a view and fails
  when the block modifies them in place.
- A tensor with several consumers: autograd sums the contributions before a tensor
  hook runs, so the hook sees the total gradient once. ||dL/dx|| is therefore the whole
  gradient reaching the input, including paths that bypass the block if the model
  reuses x outside it (not the case for GPT-style blocks that own their residual).
  The output of block i that feeds block i+1 unchanged is measured once and shared.
- A block called several times between ``attach()`` (or ``collect()``) and the next
  ``collect()`` (weight sharing, gradient accumulation over micro-batches) gets one
  gain per call; its reported gain is the geometric mean over calls, and
  ``amplification`` multiplies every call's gain. If a backward runs twice over the
  same graph, the last one wins.
- A block whose input does not require grad, or whose gradients never arrived, has
  gain NaN; means, maxima and products are taken over the measured blocks.
- Forward calls during a backward (activation-checkpoint recomputation) are ignored.

Under ``torch.compile`` the hooks see that Dynamo is tracing them and put gauges
(``probes/gauge.py``) in the graph instead of tensor hooks: no graph break. The block
hooks then stay attached for good (Dynamo does not see hooks added or removed after it
compiled, and re-adding them would recompile), so every step runs the same graphs and
a step that is not measured only adds to a buffer nobody reads. Calls of one block in a
measured step are pooled there: its gain is sqrt(sum ||dL/dx||^2 / sum ||dL/dy||^2) over
the calls, the gain over the step's whole batch (equal to the eager gain when the block
runs once a step). A model must be compiled after the probe is attached (Dynamo keeps
what it compiled before, without the hooks): the `Monitor` attaches at construction.

``nonfinite`` flags a parameter whose gradient 2-norm is NaN or inf: a NaN or inf in
the gradient, or entries past ~1e19 whose squares overflow fp32, which
``clip_grad_norm_(error_if_nonfinite=True)`` treats the same way.
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

from trainvitals.distributed import is_sharded, local_view
from trainvitals.errors import ConfigError
from trainvitals.probes.flow_stats import GradientFlowStats
from trainvitals.probes.gauge import with_first_float_gauged

__all__ = ["GradientFlowProbe", "GradientFlowStats", "find_blocks", "unwrap"]

_LISTS = (nn.ModuleList, nn.Sequential)
# -1 outside a backward; a forward seen inside one is activation-checkpoint recomputation.
_graph_task_id = getattr(torch._C, "_current_graph_task_id", lambda: -1)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside `torch.compile`'s and DDP's wrappers (whose parameter names carry
    `_orig_mod.` and `module.`)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's transformer blocks, named, in registration order.

    Rule: every ``nn.ModuleList`` or ``nn.Sequential`` whose members are block-like -
    at least one member, all of the same class, each with parameters and with child
    modules of its own (so a list of bare ``nn.Linear`` heads is not a block list) - and
    that does not lie inside a block already found. Block i of a list is named
    "<parent path>.<i>", or "<i>" when the parent is the model itself
    (``model.blocks`` -> "0".."5"; ``model.encoder.layers`` -> "encoder.0"). When one
    parent holds several block lists, the list's own path is used instead
    ("decoder.self_layers.0").
    """
    lists: list[tuple[str, nn.Module]] = []
    for path, module in unwrap(model).named_modules():
        if any(found == "" or path.startswith(f"{found}.") for found, _ in lists):
            continue
        if isinstance(module, _LISTS) and _block_like(list(module)):
            lists.append((path, module))
    parents: dict[str, int] = {}
    for path, _ in lists:
        parent = path.rpartition(".")[0]
        parents[parent] = parents.get(parent, 0) + 1
    blocks = []
    for path, container in lists:
        parent = path.rpartition(".")[0]
        prefix = path if parents[parent] > 1 else parent
        for i, block in enumerate(container):
            blocks.append((f"{prefix}.{i}" if prefix else str(i), block))
    return blocks


def _block_like(members: list[nn.Module]) -> bool:
    if not members or len({type(m) for m in members}) != 1:
        return False
    return all(
        next(m.parameters(), None) is not None and next(m.children(), None) is not None
        for m in members
    )


def _first_float_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj if obj.is_floating_point() else None
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        for item in obj:
            found = _first_float_tensor(item)
            if found is not None:
                return found
    return None


class GradientFlowProbe:
    """Per-block gradient gain plus global and per-parameter gradient norms.

    Call ``attach()`` before the forward of a monitored step, ``collect()`` after the
    backward and before gradient clipping (parameters are those the model had when the
    probe was made) (after ``GradScaler.unscale_``, or the
    gradient norms carry the loss scale; gains do not), then ``detach()``. Without
    ``attach()`` no hook exists and ``collect()`` still measures the parameter gradients.
    """

    def __init__(self, model: nn.Module,
                 blocks: Sequence[tuple[str, nn.Module]] | None = None) -> None:
        model = unwrap(model)
        found = find_blocks(model) if blocks is None else list(blocks)
        if blocks is None and not found:
            raise ConfigError(
                f"blocks=None: no list of blocks found in {type(model).__name__} (looked for "
                "an nn.ModuleList or nn.Sequential of same-class modules with parameters); "
                "pass blocks=[(name, module), ...], or blocks=[] to measure gradients only"
            )
        names = [name for name, _ in found]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"blocks: names must be unique, repeated: {', '.join(duplicates)}")
        self.model: nn.Module | None = model
        # walking the module tree costs ~0.7 ms a call on a small model: once, here
        self._named_params = list(model.named_parameters())
        self._dtensors = any(hasattr(p, "placements") for _, p in self._named_params)
        self.grads_fp32 = True  # the last collect() read fp32 gradients only
        self.block_names = names
        self._blocks = [module for _, module in found]
        self._module_handles: list[Any] = []
        self._tensor_handles: list[Any] = []
        self._measuring = False
        self._compiled = False  # Dynamo traced the hooks: they stay attached (module docstring)
        self._warned = False
        # (n_blocks, 4) leaf whose .grad the gauges fill: sum ||dL/dx||^2, calls, sum ||dL/dy||^2, calls
        self._sink: torch.Tensor | None = None
        self._reset()

    @property
    def parameters(self) -> list[nn.Parameter]:
        """The model's parameters, as when the probe was made."""
        return [p for _, p in self._named_params]

    @property
    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The measured blocks, named."""
        return list(zip(self.block_names, self._blocks))

    @property
    def attached(self) -> bool:
        """Whether the next forward/backward is measured (between ``attach()`` and ``detach()``)."""
        return self._measuring

    def attach(self) -> None:
        """Hook every block for the next forward/backward; starts a fresh measurement."""
        if self.model is None:
            raise RuntimeError("GradientFlowProbe is closed")
        self._reset()
        device = self._device()
        if self._sink is None or self._sink.device != device:
            self._sink = torch.zeros(len(self._blocks), 4, device=device, requires_grad=True)
        self._sink.grad = None
        self._measuring = self._window = True
        if self._module_handles:
            return
        for index, block in enumerate(self._blocks):
            self._module_handles.append(
                block.register_forward_pre_hook(self._pre_hook(index), with_kwargs=True))
            self._module_handles.append(block.register_forward_hook(self._post_hook(index)))

    def detach(self) -> None:
        """Stop measuring and remove the hooks (under torch.compile the block hooks stay,
        until ``close()``); what was measured so far stays for ``collect()``."""
        self._measuring = False
        for handle in self._tensor_handles:
            handle.remove()
        self._tensor_handles = []
        if not self._compiled:
            self._remove_module_hooks()
        self._last_out = None

    def close(self) -> None:
        """Remove every hook and drop the model."""
        self.detach()
        self._remove_module_hooks()
        self._reset()
        self.model, self._blocks, self._sink = None, [], None

    def _remove_module_hooks(self) -> None:
        for handle in self._module_handles:
            handle.remove()
        self._module_handles = []

    @torch.no_grad()
    def collect(self) -> GradientFlowStats:
        """Gains of the calls since ``attach()`` / the last ``collect()``, and grad norms.

        Ends the measurement window: the next forward starts a new one.
        """
        if self.model is None:
            raise RuntimeError("GradientFlowProbe is closed")
        with_grad = [(name, p.grad) for name, p in self._named_params if p.grad is not None]
        names = [name for name, _ in with_grad]
        if self._dtensors:  # a DTensor's shard: its norm is summed over ranks
            grads, sharded = [local_view(g) for _, g in with_grad], [is_sharded(g) for _, g in with_grad]
        else:
            grads, sharded = [g for _, g in with_grad], [False] * len(with_grad)
        self.grads_fp32 = all(g.dtype == torch.float32 for g in grads)
        device = grads[0].device if grads else self._device()
        if grads:
            norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
            param_norms = torch.stack(norms if all(n.device == device for n in norms)
                                      else [n.to(device) for n in norms])
        else:
            param_norms = torch.zeros(0, device=device)
        measured = None  # known on the host: the eager calls' blocks
        pooled = self._sink.grad if self._sink is not None and self._window else None
        if pooled is not None:  # the gauges of a compiled graph ran (eager calls, if any, are left out)
            self._compiled = True
            measured = ((pooled[:, 1] > 0) & (pooled[:, 3] > 0)).to(device)
            call_norms, call_blocks = pooled[:, 0::2].T.sqrt().to(device), list(range(len(self._blocks)))
            self._sink.grad = None
        else:
            call_norms, call_blocks = self._call_norms(device)
            if self._window and grads and self._blocks and not self._hooks_ran and not self._warned:
                self._warned = True
                warnings.warn(
                    "gradient gains not measured: the block hooks did not run in this step's forward, or no "
                    "block's input or output carried a gradient. If the model was compiled and run before "
                    "the Monitor was made, make the Monitor first (torch.compile keeps the code it compiled "
                    "without the hooks)", stacklevel=3)
        for handle in self._tensor_handles:
            handle.remove()
        self._tensor_handles = []
        self._reset()
        return GradientFlowStats.build(call_norms, call_blocks, self.block_names, param_norms, names, sharded,
                                       measured)

    # -- internals -------------------------------------------------------------------

    def _reset(self) -> None:
        self._norms: list[torch.Tensor | None] = []  # one slot per hooked tensor
        self._calls: list[tuple[int, int | None, int | None]] = []  # block, x slot, y slot
        self._pending: dict[int, int | None] = {}
        self._last_out: tuple[weakref.ref, int, int] | None = None
        self._hooks_ran = False  # an eager hook ran while measuring
        self._window = False  # attach() opened this measurement window

    def _device(self) -> torch.device:
        p = next(self.model.parameters(), None) if self.model is not None else None
        return p.device if p is not None else torch.device("cpu")

    def _watch(self, tensor: torch.Tensor) -> int:
        slot = len(self._norms)
        self._norms.append(None)
        norms = self._norms

        def store(grad: torch.Tensor) -> None:
            norms[slot] = torch.linalg.vector_norm(grad, dtype=torch.float32)

        self._tensor_handles.append(tensor.register_hook(store))
        return slot

    def _pre_hook(self, index: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if torch.compiler.is_compiling():  # Dynamo is tracing: a gauge in the graph
                sink = self._sink[index, 0:2]
                if _first_float_tensor(args) is not None:
                    return with_first_float_gauged(args, sink)[0], kwargs
                return args, with_first_float_gauged(kwargs, sink)[0]
            if not self._measuring or _graph_task_id() != -1:
                return None  # not measured, or recomputation inside a backward
            self._hooks_ran = True
            x = _first_float_tensor(args)
            if x is None:
                x = _first_float_tensor(kwargs)
            slot = None
            if x is not None and x.requires_grad and torch.is_grad_enabled():
                last = self._last_out
                if last is not None and last[0]() is x and last[1] == x._version:
                    slot = last[2]  # the previous block's output, unchanged: share it
                else:
                    slot = self._watch(x)
            self._pending[index] = slot
        return hook

    def _post_hook(self, index: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if torch.compiler.is_compiling():
                return with_first_float_gauged(output, self._sink[index, 2:4])[0]
            if not self._measuring or _graph_task_id() != -1 or index not in self._pending:
                return None
            x_slot = self._pending.pop(index)
            y = _first_float_tensor(output)
            y_slot = None
            if y is not None and y.requires_grad and torch.is_grad_enabled():
                y_slot = self._watch(y)
                self._last_out = (weakref.ref(y), y._version, y_slot)
            if x_slot is not None or y_slot is not None:
                self._calls.append((index, x_slot, y_slot))
        return hook

    def _call_norms(self, device: torch.device) -> tuple[torch.Tensor, list[int]]:
        """(2, n_calls) input and output gradient norms of the calls the backward reached."""
        xs, ys, blocks = [], [], []
        for block, x_slot, y_slot in self._calls:
            if x_slot is None or y_slot is None:
                continue
            gx, gy = self._norms[x_slot], self._norms[y_slot]
            if gx is None or gy is None:
                continue  # the backward did not reach this call
            xs.append(gx.to(device))
            ys.append(gy.to(device))
            blocks.append(block)
        if not xs:
            return torch.zeros(2, 0, device=device), []
        return torch.stack([torch.stack(xs), torch.stack(ys)]), blocks
