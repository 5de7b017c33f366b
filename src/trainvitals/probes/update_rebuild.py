"""Rebuilding ||dW|| after an SGD, Adam or AdamW step from what the step left behind.

The update the optimizer applied is recomputed from its state (momentum buffer, Adam's
moments and step counts) in chunks of at most ``chunk_numel`` elements, so no copy of the
model is kept; ``trainvitals.probes.weight_updates`` says when this path is taken.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["KNOWN_OPTIMIZERS", "rebuildable", "adam_norms", "sgd_norms"]

_SGD_KEYS = {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
             "foreach", "differentiable", "fused"}
_ADAM_KEYS = {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach",
              "capturable", "differentiable", "fused", "decoupled_weight_decay"}
KNOWN_OPTIMIZERS = {torch.optim.SGD: _SGD_KEYS, torch.optim.Adam: _ADAM_KEYS,
          torch.optim.AdamW: _ADAM_KEYS}


def rebuildable(group: dict[str, Any], p: torch.Tensor, scaled_grads: bool) -> bool:
    if p.dtype not in (torch.float32, torch.float64) or p.grad.is_sparse or hasattr(p, "placements"):
        return False
    sgd_uses_grad = "momentum" in group and (group["momentum"] == 0 or group["nesterov"])
    if sgd_uses_grad and scaled_grads:
        return False  # whether a fused kernel unscales .grad in place is not ours to know
    scalars = [group["lr"], group["weight_decay"], *group.get("betas", ())]
    if any(isinstance(v, torch.Tensor) for v in scalars):
        return False
    # dW is rebuilt through a division by 1 - lr * wd where the update involves W_old.
    uses_old_w = group.get("decoupled_weight_decay", False) or sgd_uses_grad
    lr, wd = group["lr"], group["weight_decay"]
    return not (uses_old_w and wd and 1 - lr * wd == 0)


def _chunks(params: list[torch.Tensor], chunk_numel: int) -> Iterator[list[torch.Tensor]]:
    chunk, size = [], 0
    for p in params:
        if chunk and size + p.numel() > chunk_numel:
            yield chunk
            chunk, size = [], 0
        chunk.append(p)
        size += p.numel()
    if chunk:
        yield chunk


def _bias_corrections(states: list[dict[str, Any]], h: dict[str, Any],
                      params: list[torch.Tensor]) -> tuple[list[torch.Tensor], ...]:
    """Per parameter: -lr * sqrt(1 - b2^t) / (1 - b1^t), and eps * sqrt(1 - b2^t)."""
    steps = [s["step"] if isinstance(s["step"], torch.Tensor) else torch.tensor(float(s["step"]))
             for s in states]
    steps = torch.stack([t.to(steps[0].device) for t in steps])
    if steps.device.type != "mps":  # the optimizer does this in float64 on the host
        steps = steps.to(torch.float64)
    beta1, beta2 = h["betas"]
    root = (1 - torch.pow(beta2, steps)).sqrt_()
    coef = root * (-h["lr"]) / (1 - torch.pow(beta1, steps))
    both = torch.stack([coef, root * h["eps"]])
    devices = {p.device for p in params}
    if len(devices) == 1:  # one small host-to-device copy, so the foreach ops stay on device
        both = both.to(devices.pop(), torch.float32)
        return both[0].unbind(), both[1].unbind()
    return ([c.to(p.device, torch.float32) for c, p in zip(both[0], params)],
            [e.to(p.device, torch.float32) for e, p in zip(both[1], params)])


def adam_norms(optimizer: torch.optim.Optimizer, h: dict[str, Any], params: list[torch.Tensor],
                chunk_numel: int) -> list[torch.Tensor]:
    # dW = coef * m / (sqrt(v) + eps * root)  [- lr * wd * W_new, all / (1 - lr * wd)]
    second = "max_exp_avg_sq" if h["amsgrad"] else "exp_avg_sq"
    lr, wd = h["lr"], h["weight_decay"] if h.get("decoupled_weight_decay", False) else 0.0
    norms: list[torch.Tensor] = []
    for chunk in _chunks(params, chunk_numel):
        states = [optimizer.state[p] for p in chunk]
        coef, eps = _bias_corrections(states, h, chunk)
        denom = torch._foreach_sqrt([s[second] for s in states])
        torch._foreach_add_(denom, eps)
        update = torch._foreach_div([s["exp_avg"] for s in states], denom)
        del denom
        torch._foreach_mul_(update, coef)
        if wd:
            torch._foreach_add_(update, [p.detach() for p in chunk], alpha=-lr * wd)
        chunk_norms = torch._foreach_norm(update, 2, dtype=torch.float32)
        if wd:
            torch._foreach_div_(chunk_norms, abs(1 - lr * wd))
        norms.extend(chunk_norms)
        del update
    return norms


def sgd_norms(optimizer: torch.optim.Optimizer, h: dict[str, Any], params: list[torch.Tensor],
               chunk_numel: int) -> list[torch.Tensor]:
    lr, momentum, wd = h["lr"], h["momentum"], h["weight_decay"]
    if momentum != 0 and not h["nesterov"]:
        bufs = [optimizer.state[p]["momentum_buffer"] for p in params]
        norms = torch._foreach_norm(bufs, 2, dtype=torch.float32)
        torch._foreach_mul_(norms, lr)
        return list(norms)
    if momentum == 0 and not wd:
        norms = torch._foreach_norm([p.grad for p in params], 2, dtype=torch.float32)
        torch._foreach_mul_(norms, lr)
        return list(norms)
    # dW = -lr * (g + momentum * buf + wd * W_new) / (1 - lr * wd), sign of g by `maximize`
    norms = []
    for chunk in _chunks(params, chunk_numel):
        direction = torch._foreach_mul([p.grad for p in chunk], -1.0 if h["maximize"] else 1.0)
        if momentum != 0:
            bufs = [optimizer.state[p]["momentum_buffer"] for p in chunk]
            torch._foreach_add_(direction, bufs, alpha=momentum)
        if wd:
            torch._foreach_add_(direction, [p.detach() for p in chunk], alpha=wd)
        chunk_norms = torch._foreach_norm(direction, 2, dtype=torch.float32)
        torch._foreach_mul_(chunk_norms, lr / abs(1 - lr * wd))
        norms.extend(chunk_norms)
        del direction
    return norms
