"""Relative weight update ||dW|| / ||W|| per parameter, and parameters that did not move.

How dW is obtained, without keeping a copy of the model:

- ``torch.optim.SGD``, ``Adam`` and ``AdamW`` (exactly these classes, fp32/fp64 dense
  parameters, float hyperparameters): dW is rebuilt after the step from what the step
  left behind. SGD with momentum moved the weights by ``-lr * momentum_buffer``, so
  ||dW|| = lr * ||buf|| with no temporary at all. Adam moved them by
  ``-lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`` (v = max_exp_avg_sq with
  amsgrad), plus decoupled weight decay ``-lr * wd * W_old``, which is rewritten in
  terms of the new weights: ``dW = (adam_term - lr * wd * W_new) / (1 - lr * wd)``;
  SGD without momentum or with Nesterov is rebuilt the same way from the gradient.
  The bias corrections use each parameter's own ``step`` (a parameter that missed
  steps has a smaller one) in float64 as the optimizer does. Temporaries are made in
  chunks of at most ``chunk_numel`` elements, so the extra memory is bounded whatever
  the model size. This is the update the optimizer applied before it was rounded into
  the stored weights: it equals W_new - W_old up to that rounding (about 1e-7 relative
  per element in fp32, far below 1e-5 in the norm at usual learning rates).
- Anything else (other optimizers, subclasses, bf16/fp16 weights, sparse or complex
  parameters, tensor learning rates, an optimizer whose defaults hold a key this
  module does not know): a copy of just those parameters, taken after backward (again
  in a step pre-hook where ``GradScaler`` hands a fused optimizer scaled gradients),
  one buffer and one ``torch.stack`` per shape and dtype; transient on accelerators,
  kept between steps on the CPU. For low-precision weights the copy is the honest measure: an update
  smaller than half a bf16 ulp is rounded away, and the weight really does not move.
- A parameter outside the optimizer, without a gradient, or in a group with lr 0 has
  dW = 0 without any computation (for the three known optimizers).
- If the optimizer did not step (``GradScaler`` skipped it after an inf), the result
  says ``skipped``; a fused optimizer told ``found_inf`` counts no parameter frozen.
  A fused SGD step handed still-scaled gradients by ``GradScaler`` is measured by copy
  when its update depends on the gradient (no momentum, or Nesterov).

Modes: ``"rebuild"`` rebuilds wherever the list above allows; ``"copy"`` copies every
parameter; ``"auto"`` (default) rebuilds on accelerators, where memory is what a copy of
the model costs, and copies on the CPU, where time is: there the rebuild's extra
passes over the optimizer state cost more (default LM, 0.9M parameters, 2 threads:
snapshot and update norms 3.6 ms a measured step rebuilt, 2.0 ms copied;
`benchmarks/overhead.py --phases`, 2026-12-02). All results stay on the
device until ``WeightUpdateStats.to_host()``, which makes one transfer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn

from trainvitals.distributed import is_sharded, local_view
from trainvitals.errors import check_choice, check_range, check_type
from trainvitals.probes.gradient_flow import unwrap
from trainvitals.probes.update_rebuild import KNOWN_OPTIMIZERS, adam_norms, rebuildable, sgd_norms

__all__ = ["WeightUpdateProbe", "WeightUpdateStats"]

@dataclass
class WeightUpdateStats:
    """One optimizer step's update and weight norms, as device tensors; ``param_names``
    orders them. What follows from them (the ratios, their mean and maximum, the unchanged
    parameters) is derived on the host by `from_host`: a few floats a parameter, where a
    kernel each would cost more than the floats' transfer."""

    param_names: list[str]  # parameters with requires_grad=True
    update_norms: torch.Tensor  # ||dW||
    weight_norms: torch.Tensor  # ||W|| before the step
    intentionally_frozen: list[str]  # requires_grad=False: listed, never alerted
    skipped: bool = False  # the optimizer did not step
    stepped: torch.Tensor | None = None  # 0-d bool: the step was applied (None: it was)
    sharded: list[bool] = field(default_factory=list)  # per parameter: its norms are of this rank's shard

    def local_sums(self) -> torch.Tensor:
        """What the ranks sum: squared update and weight norms of the sharded parameters
        (FSDP2); replicated ones (DDP) are global already, so this is empty then."""
        if not any(self.sharded):
            return self.update_norms.new_zeros(0)
        mask = torch.tensor(self.sharded, dtype=torch.bool).to(self.update_norms.device, non_blocking=True)
        return torch.cat([self.update_norms[mask], self.weight_norms[mask]]).float().square()

    def with_global(self, sums: torch.Tensor) -> WeightUpdateStats:
        """These stats for the whole parameters, from the ranks' summed `local_sums()`."""
        if not any(self.sharded):
            return self
        mask = torch.tensor(self.sharded, dtype=torch.bool).to(self.update_norms.device, non_blocking=True)
        roots, n = sums.sqrt(), sum(self.sharded)
        dw, w = self.update_norms.clone(), self.weight_norms.clone()
        dw[mask], w[mask] = roots[:n].to(dw.dtype), roots[n:].to(w.dtype)
        return replace(self, update_norms=dw, weight_norms=w)

    def to_host(self) -> dict[str, Any]:
        """Plain Python values, moved to the host in one transfer."""
        return self.from_host(torch.cat(self.host_parts()).tolist())

    def host_parts(self) -> list[torch.Tensor]:
        """The 1-d fp32 tensors `from_host` reads back, in order."""
        parts = [self.update_norms.float(), self.weight_norms.float()]
        if self.stepped is not None:
            parts.append(self.stepped.reshape(1).float())
        return parts

    def from_host(self, values: list[float]) -> dict[str, Any]:
        """``update_ratio`` = ||dW|| / ||W||: 0 if dW = 0, NaN if W = 0 and dW != 0; its mean
        and maximum over the parameters where it is defined; ``unchanged``: dW exactly 0 in a
        step that happened."""
        n = len(self.param_names)
        dw, w = values[:n], values[n:2 * n]
        stepped = self.stepped is None or values[2 * n] != 0
        ratios = [0.0 if d == 0 else (d / x if x > 0 else math.nan) for d, x in zip(dw, w)]
        defined = [r for r in ratios if not math.isnan(r)]
        unchanged = [name for name, d in zip(self.param_names, dw) if d == 0] if stepped else []
        return {
            "update_ratio": dict(zip(self.param_names, ratios)),
            "update_norms": dict(zip(self.param_names, dw)),
            "weight_norms": dict(zip(self.param_names, w)),
            "update_ratio_mean": sum(defined) / len(defined) if defined else math.nan,
            "update_ratio_max": max(defined, default=0.0) if n else math.nan,
            "frozen_params": len(unchanged),
            "unchanged": unchanged,
            "intentionally_frozen": list(self.intentionally_frozen),
            "skipped": self.skipped,
        }


@dataclass
class _Snapshot:
    names: list[str]
    params: list[torch.Tensor]
    frozen: list[str]
    weight_norms: torch.Tensor
    zero: list[int]  # dW = 0 by construction
    rebuilt: dict[int, list[int]]  # param group index -> parameter indices
    groups: dict[int, dict[str, Any]]  # hyperparameters at step time
    copied: list[_Copy]  # the copied parameters, by layout
    found_inf: torch.Tensor | None


@dataclass
class _Copy:
    """Copies of the parameters `indices`, all of one shape, dtype and device, as the rows
    of one buffer: one `torch.stack` copies them and one norm call measures them, where a
    copy and a norm per parameter cost a kernel launch each (53 on the default LM, 8 layouts)."""
    indices: list[int]
    buffer: torch.Tensor  # (len(indices), *shape)
    rows: list[torch.Tensor]  # buffer.unbind(0)

    @classmethod
    def empty(cls, indices: list[int], like: torch.Tensor) -> "_Copy":
        buffer = torch.empty((len(indices), *like.shape), dtype=like.dtype, device=like.device)
        return cls(indices, buffer, list(buffer.unbind(0)))

    def row_norms(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.buffer.reshape(len(self.indices), -1), 2, dim=1,
                                        dtype=torch.float32)


class WeightUpdateProbe:
    """Measure one optimizer step: call ``before_step()`` after backward, then
    ``optimizer.step()``, then ``after_step()``, then ``collect()``."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 mode: str = "auto", chunk_numel: int = 1 << 24) -> None:
        check_type("optimizer", optimizer, torch.optim.Optimizer)
        check_choice("mode", mode, ("auto", "rebuild", "copy"))
        check_type("chunk_numel", chunk_numel, int)
        check_range("chunk_numel", chunk_numel, 1)
        self.model, self.optimizer = model, optimizer
        self.mode, self.chunk_numel = mode, chunk_numel
        self._named_params = list(unwrap(model).named_parameters())  # once: a module walk costs ~0.7 ms
        self._kept: tuple[tuple, list[_Copy]] | None = None  # CPU copy buffers, kept: no allocation per step
        self._order: tuple[tuple[int, ...], torch.Tensor] | None = None  # the last permutation `_in_order` made
        self._handles: list[Any] = []
        self._snapshot: _Snapshot | None = None
        self._stepped = False
        self._stats: WeightUpdateStats | None = None

    def before_step(self) -> None:
        """Take what the measurement needs, now: after backward, before the update.

        It works where the whole step runs inside ``optimizer.step(closure)`` (Lightning's
        automatic optimization calls this from the closure, after backward), where a step
        pre-hook would fire before backward. A step post-hook tells whether the step
        happened (``GradScaler`` skips it after an inf)."""
        self._remove_hooks()
        self._stepped, self._stats = False, None
        self._snapshot = self._take_snapshot(scaled_grads=False)
        self._handles = [self.optimizer.register_step_pre_hook(self._on_pre_step),
                         self.optimizer.register_step_post_hook(self._on_post_step)]

    @property
    def measured(self) -> bool:
        """A step was measured since the last ``before_step()``."""
        return self._stats is not None

    @property
    def armed(self) -> bool:
        """``before_step()`` was called and ``after_step()`` not yet."""
        return bool(self._handles)

    def after_step(self) -> None:
        """Compute the step's updates (on the device) and disarm."""
        if not self._handles:
            raise RuntimeError("after_step() without before_step(): call before_step() "
                               "before optimizer.step()")
        self._remove_hooks()
        snap, self._snapshot = self._snapshot, None
        self._stats = self._measure(snap) if snap is not None and self._stepped \
            else self._skipped()

    def collect(self) -> WeightUpdateStats:
        """The last measured step."""
        if self._stats is None:
            raise RuntimeError("collect() before a measured step: call before_step(), "
                               "optimizer.step(), after_step() first")
        return self._stats

    def close(self) -> None:
        """Remove the step hooks and drop the model and optimizer."""
        self._remove_hooks()
        self._snapshot = self._stats = None
        self._kept = self._order = None
        self.model = self.optimizer = None  # type: ignore[assignment]

    # -- step hooks ----------------------------------------------------------------

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _on_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # A fused optimizer stepped by GradScaler gets still-scaled gradients (grad_scale is
        # set only for the step): updates that depend on the gradient are copied instead.
        # The weights have not moved yet, so the snapshot can be taken again.
        if getattr(optimizer, "grad_scale", None) is not None:
            self._snapshot = self._take_snapshot(scaled_grads=True)

    def _on_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._stepped = True
        if self._snapshot is not None:
            self._snapshot.found_inf = getattr(optimizer, "found_inf", None)

    @torch.no_grad()
    def _take_snapshot(self, scaled_grads: bool) -> _Snapshot:
        names, params, frozen = self._parameters()
        group_of = {id(p): g for g, group in enumerate(self.optimizer.param_groups)
                    for p in group["params"]}
        may_rebuild = self.mode != "copy" and self._known_optimizer()
        zero, copied, rebuilt, groups = [], [], {}, {}
        for i, p in enumerate(params):
            g = group_of.get(id(p))
            if g is None or p.grad is None:
                zero.append(i)  # the optimizer skips it
                continue
            group = self.optimizer.param_groups[g]
            if may_rebuild and (self.mode == "rebuild" or p.device.type != "cpu") \
                    and rebuildable(group, p, scaled_grads):
                if group["lr"] == 0:
                    zero.append(i)
                else:
                    rebuilt.setdefault(g, []).append(i)
                    groups.setdefault(g, {k: v for k, v in group.items() if k != "params"})
            else:
                copied.append(i)
        local = [local_view(p.detach()) for p in params]  # a DTensor's shard; summed over ranks later
        device = local[0].device if local else torch.device("cpu")
        copies = self._copies(copied, local)
        others = sorted(set(range(len(local))) - set(copied))  # their norms straight from the weights
        other_norms = torch._foreach_norm([local[i] for i in others], 2, dtype=torch.float32) if others else []
        weight_norms = self._in_order(len(local), [(c.indices, c.row_norms()) for c in copies]
                                      + [(others, _stack(other_norms, device))], device)
        return _Snapshot(names, params, frozen, weight_norms, zero, rebuilt, groups, copies, None)

    def _copies(self, indices: list[int], local: list[torch.Tensor]) -> list[_Copy]:
        """Copies of `local[i]` for `i` in `indices`, now: into buffers kept between steps on
        the CPU (allocating and first-touching megabytes each step costs more than the copy),
        transient elsewhere."""
        key = tuple((i, local[i].shape, local[i].dtype, local[i].device) for i in indices)
        if self._kept is not None and self._kept[0] == key:
            copies = self._kept[1]
        else:
            layouts: dict[tuple, list[int]] = {}
            for i, shape, dtype, dev in key:
                layouts.setdefault((shape, dtype, dev), []).append(i)
            copies = [_Copy.empty(idx, local[idx[0]]) for idx in layouts.values()]
            on_cpu = all(dev.type == "cpu" for _, _, _, dev in key)
            self._kept = (key, copies) if on_cpu else None
        for c in copies:
            torch.stack([local[i] for i in c.indices], out=c.buffer)
        return copies

    def _in_order(self, n: int, parts: list[tuple[list[int], torch.Tensor]], device: torch.device) -> torch.Tensor:
        """One value per parameter, in parameter order, from parts that hold some indices each."""
        parts = [(idx, v) for idx, v in parts if idx]
        if not parts:
            return torch.zeros(n, device=device)
        order = tuple(i for idx, _ in parts for i in idx)
        values = torch.cat([v.reshape(-1).to(device, torch.float32) for _, v in parts])
        if order == tuple(range(n)):
            return values
        if self._order is None or self._order[0] != order or self._order[1].device != device:
            self._order = (order, torch.tensor(order).argsort().to(device))
        return values[self._order[1]]

    def _parameters(self) -> tuple[list[str], list[torch.Tensor], list[str]]:
        names, params, frozen = [], [], []
        for name, p in self._named_params:
            if p.requires_grad:
                names.append(name)
                params.append(p)
            else:
                frozen.append(name)
        return names, params, frozen

    def _known_optimizer(self) -> bool:
        keys = KNOWN_OPTIMIZERS.get(type(self.optimizer))
        return keys is not None and set(self.optimizer.defaults) <= keys

    # -- measuring -----------------------------------------------------------------

    @torch.no_grad()
    def _measure(self, snap: _Snapshot) -> WeightUpdateStats:
        device = snap.weight_norms.device
        parts: list[tuple[list[int], torch.Tensor]] = \
            [(snap.zero, torch.zeros(len(snap.zero), device=device))] if snap.zero else []
        for g, indices in snap.rebuilt.items():
            rebuild = adam_norms if "betas" in snap.groups[g] else sgd_norms
            norms = rebuild(self.optimizer, snap.groups[g], [snap.params[i] for i in indices],
                            self.chunk_numel)
            parts.append((indices, _stack(norms, device)))
        if snap.copied:  # the copies become W_old - W_new
            torch._foreach_sub_([r for c in snap.copied for r in c.rows],
                                [local_view(snap.params[i].detach()) for c in snap.copied for i in c.indices])
            parts += [(c.indices, c.row_norms()) for c in snap.copied]
            snap.copied = []
        update_norms = self._in_order(len(snap.params), parts, device)
        stepped = None
        if snap.found_inf is not None:
            stepped = snap.found_inf.to(device) == 0
            update_norms = torch.where(stepped, update_norms, 0.0)
        return _stats(snap, update_norms, stepped)

    def _skipped(self) -> WeightUpdateStats:
        names, params, frozen = self._parameters()
        device = params[0].device if params else torch.device("cpu")
        zeros = torch.zeros(len(params), device=device)
        snap = _Snapshot(names, params, frozen, zeros, [], {}, {}, [], None)
        no_step = torch.zeros((), dtype=torch.bool, device=device)
        return _stats(snap, zeros, no_step, skipped=True)


def _stats(snap: _Snapshot, dw: torch.Tensor, stepped: torch.Tensor | None,
           skipped: bool = False) -> WeightUpdateStats:
    return WeightUpdateStats(snap.names, dw, snap.weight_norms, snap.frozen, skipped, stepped,
                             [is_sharded(p) for p in snap.params])


def _stack(norms: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    if not norms:
        return torch.zeros(0, device=device)
    return torch.stack([n if n.device == device else n.to(device) for n in norms])
