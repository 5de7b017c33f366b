"""`GradientFlowStats`: one measured step's gradient figures, kept on the device.

Gains from the input and output gradient norms of each measured block call (see
`gradient_flow.py` for how they are measured), global and per-parameter gradient norms,
and what torch.distributed ranks sum to get the global batch's figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["GradientFlowStats"]


@dataclass
class GradientFlowStats:
    """One step's gradient measurements, as device tensors (fp32).

    Under torch.distributed the figures of one rank are local: `local_sums()` gives what
    the ranks sum (squared norms), `with_global(sums)` the same stats for the global batch."""

    gains: torch.Tensor  # (n_blocks,), NaN where a block was not measured
    block_names: list[str]
    mean_gain: torch.Tensor  # arithmetic mean over measured blocks (the seed's)
    max_gain: torch.Tensor
    amplification: torch.Tensor  # product of every measured call's gain
    grad_norm: torch.Tensor  # global 2-norm of parameter grads, as clip_grad_norm_ returns
    param_norms: torch.Tensor  # (n_params,), 2-norm of each parameter's grad
    param_names: list[str] = field(default_factory=list)
    nonfinite: torch.Tensor | None = None  # (n_params,) bool: grad norm is NaN or inf
    call_norms: torch.Tensor | None = None  # (2, n_calls): ||dL/dx||, ||dL/dy|| of each measured call
    call_blocks: list[int] = field(default_factory=list)  # the block of each call
    sharded: list[bool] = field(default_factory=list)  # per parameter: its norm is of this rank's shard
    measured: torch.Tensor | None = None  # (n_calls,) bool, when known only on the device (compiled)

    @classmethod
    def build(cls, call_norms: torch.Tensor, call_blocks: list[int], block_names: list[str],
              param_norms: torch.Tensor, param_names: list[str], sharded: list[bool],
              measured: torch.Tensor | None = None) -> GradientFlowStats:
        gains, mean_gain, max_gain, amplification = _gains(call_norms, call_blocks, len(block_names), measured)
        return cls(gains, list(block_names), mean_gain, max_gain, amplification,
                   torch.linalg.vector_norm(param_norms), param_norms, param_names, ~torch.isfinite(param_norms),
                   call_norms, call_blocks, sharded, measured)

    def scaled(self, grad_scale: torch.Tensor | float) -> GradientFlowStats:
        """Gradient norms divided by a loss scale still in the gradients (gains are ratios:
        the scale cancels in them)."""
        return self.build(self.call_norms, self.call_blocks, self.block_names, self.param_norms / grad_scale,
                          self.param_names, self.sharded, self.measured)

    def local_sums(self) -> torch.Tensor:
        """What the ranks sum: the squared norms of each call's activation gradients, and
        of each sharded parameter's gradient shard (a replicated gradient is global already)."""
        parts = [self.call_norms.reshape(-1).float()]
        if any(self.sharded):
            parts.append(self.param_norms[_mask(self.sharded, self.param_norms.device)].float())
        return torch.cat(parts).square()

    def with_global(self, sums: torch.Tensor) -> GradientFlowStats:
        """These stats over the global batch, from the ranks' summed `local_sums()`."""
        roots = sums.sqrt()
        n = self.call_norms.numel()
        param_norms = self.param_norms
        if any(self.sharded):
            param_norms = param_norms.clone()
            param_norms[_mask(self.sharded, param_norms.device)] = roots[n:].to(param_norms.dtype)
        return self.build(roots[:n].reshape(self.call_norms.shape), self.call_blocks, self.block_names,
                          param_norms, self.param_names, self.sharded, self.measured)

    def to_host(self) -> dict[str, Any]:
        """Plain Python values, moved to the host in one transfer."""
        return self.from_host(torch.cat(self.host_parts()).tolist())

    def host_parts(self) -> list[torch.Tensor]:
        """The 1-d fp32 tensors `from_host` reads back, in order (a caller may batch
        several steps' parts into one transfer)."""
        device = self.grad_norm.device
        parts = [
            self.gains.to(device, torch.float32),
            torch.stack([self.mean_gain, self.max_gain, self.amplification, self.grad_norm]).float(),
            self.param_norms.to(device, torch.float32),
        ]
        if self.nonfinite is not None:
            parts.append(self.nonfinite.to(device, torch.float32))
        return parts

    def from_host(self, values: list[float]) -> dict[str, Any]:
        n_blocks, n_params = len(self.block_names), len(self.param_names)
        gains, values = values[:n_blocks], values[n_blocks:]
        (mean_gain, max_gain, amplification, grad_norm), values = values[:4], values[4:]
        norms, flags = values[:n_params], values[n_params:]
        return {
            "mean_gain": mean_gain,
            "max_gain": max_gain,
            "amplification": amplification,
            "grad_norm": grad_norm,
            "gains": dict(zip(self.block_names, gains)),
            "nonfinite_params": [n for n, bad in zip(self.param_names, flags) if bad],
            "param_grad_norms": dict(zip(self.param_names, norms)),
        }


def _mask(flags: list[bool], device: torch.device) -> torch.Tensor:
    return torch.tensor(flags, dtype=torch.bool).to(device, non_blocking=True)


def _gains(call_norms: torch.Tensor, call_blocks: list[int], n_blocks: int,
           measured: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Per-block gains, their mean and maximum over the measured blocks, and the product of
    every call's gain. A block called several times gets the geometric mean of its calls.
    `measured`: one pooled call per block, in block order, measured where True."""
    device = call_norms.device
    nan = torch.full((), math.nan, device=device)
    if not call_blocks:
        return torch.full((n_blocks,), math.nan, device=device), nan, nan, nan
    ratios = call_norms[0] / call_norms[1]
    if measured is not None:  # decided on the device: no host sync
        ratios = torch.where(measured, ratios, nan)
        some = measured.any()
        mean = torch.where(measured, ratios, 0.0).sum() / measured.sum()
        largest = torch.where(some, torch.where(measured, ratios, -math.inf).max(), nan)
        product = torch.where(some, torch.where(measured, ratios, 1.0).prod(), nan)
        return ratios, mean, largest, product
    if call_blocks == list(range(n_blocks)):  # every block measured once, in block order
        return ratios, ratios.mean(), ratios.max(), ratios.prod()
    values = []
    for block in range(n_blocks):
        calls = [k for k, b in enumerate(call_blocks) if b == block]
        if not calls:
            values.append(nan)
        elif len(calls) == 1:
            values.append(ratios[calls[0]])
        else:  # geometric mean over the calls
            values.append(ratios[calls].log().mean().exp())
    gains = torch.stack(values)
    measured = gains[[b for b in range(n_blocks) if b in call_blocks]]
    return gains, measured.mean(), measured.max(), ratios.prod()
