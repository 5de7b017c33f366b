"""What a host hands the `Monitor`, read the way the monitor needs it: the model's parameter
groups, the loss scale a `GradScaler` still holds in the gradients (on the device), the
optimizer's settings, and a loss given as a float, a 0-dim tensor or a NumPy scalar."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.amp.grad_scaler import OptState

from trainvitals.errors import ConfigError
from trainvitals.probes.gradient_flow import unwrap

__all__ = ["param_groups", "loss_scale", "optimizer_facts", "loss_value"]


def param_groups(model: nn.Module, blocks: Sequence[tuple[str, nn.Module]]) -> dict[str, str]:
    """Parameter name -> the block that holds it, else the module that owns it."""
    block_of = {id(p): name for name, block in blocks for p in block.parameters()}
    return {name: block_of.get(id(p), name.rpartition(".")[0] or name) for name, p in unwrap(model).named_parameters()}


def loss_scale(grad_scale: Any, optimizer: torch.optim.Optimizer | None) -> tuple[Any, bool]:
    """(the loss scale still in the gradients, or None; whether an enabled GradScaler is in use)."""
    if not isinstance(grad_scale, torch.amp.GradScaler):
        return grad_scale, False
    if not grad_scale.is_enabled():
        return None, False
    # private but long-stable: the scale as a device tensor (get_scale() is .item()), and
    # whether unscale_() has already run for this optimizer this step
    states = grad_scale._per_optimizer_states
    states = [states[id(optimizer)]] if optimizer is not None and id(optimizer) in states else states.values()
    if any(state["stage"] is OptState.UNSCALED for state in states):
        return None, True
    return grad_scale._scale, True


def optimizer_facts(optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    if optimizer is None or not optimizer.param_groups:
        return {}
    g = optimizer.param_groups[0]
    lr = g.get("initial_lr", g.get("lr"))  # a torch scheduler keeps the configured LR there
    return {k: float(v) for k, v in (("lr", lr), ("weight_decay", g.get("weight_decay")))
            if isinstance(v, (int, float))}


def loss_value(name: str, x: Any) -> float | None:
    """A loss as a float: from a float, an int, a 0-dim tensor or a NumPy scalar (None stays None)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor) and x.dim() == 0 and (x.is_floating_point() or not x.dtype.is_complex):
        return float(x.detach().item())
    if hasattr(x, "dtype") and getattr(x, "shape", None) == () and hasattr(x, "item"):  # NumPy scalar or 0-d array
        x = x.item()
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    shape = f" of shape {tuple(x.shape)}" if hasattr(x, "shape") else ""
    raise ConfigError(f"{name}={_short(x)} ({type(x).__name__}{shape}): expected one number, a float, "
                      "a 0-dim tensor or a NumPy scalar (e.g. losses.mean())")


def _short(x: Any) -> str:
    text = " ".join(repr(x).split())
    return text if len(text) <= 40 else text[:37] + "..."
