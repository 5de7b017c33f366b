"""How the `Monitor`'s pending figures travel: across the ranks in one `all_reduce` at a
logging step, then to the host in one transfer."""
from __future__ import annotations

from typing import Iterable

import torch

from trainvitals import distributed as dist
from trainvitals.monitor.outbox import StopReason

__all__ = ["reduce_pending", "to_host", "split"]


def reduce_pending(losses: list, measured: list, rank_stop: StopReason | None) -> tuple[list, list, torch.Tensor]:
    """The global figures of what is pending, in one all_reduce over the ranks: step
    losses become their mean, probe figures the global batch's; a stop asked on any
    rank is taken on all (the votes come back with the rest, in flush's one transfer)."""
    device = dist.collective_device()
    reasons = list(StopReason)
    stop = torch.zeros(len(reasons), device=device)
    if rank_stop is not None:
        stop[reasons.index(rank_stop)] = 1
    parts = [torch.stack([torch.as_tensor(l, dtype=torch.float32).to(device).reshape(())
                          for _, l, _, _ in losses]) if losses else stop[:0], stop]
    for _, flow, weights in measured:
        parts += [flow.local_sums(), weights.local_sums() if weights is not None else stop[:0]]
    flat = dist.all_reduce_sum(torch.cat([p.to(device, torch.float32) for p in parts]))
    sizes = [p.numel() for p in parts]
    out = list(flat.split(sizes))
    means = out[0] / dist.world_size()
    losses = [(step, means[i], lr, skipped) for i, (step, _, lr, skipped) in enumerate(losses)]
    measured = [(step, flow.with_global(out[2 + 2 * i]),
                 weights.with_global(out[3 + 2 * i]) if weights is not None else None)
                for i, (step, flow, weights) in enumerate(measured)]
    return losses, measured, out[1]


def to_host(parts: Iterable[torch.Tensor]) -> list[float]:
    parts = [p.reshape(-1) for p in parts]
    if not parts:
        return []
    device = parts[0].device
    return torch.cat([p.to(device, torch.float32) for p in parts]).tolist()


def split(values: list[float], groups: list[list[torch.Tensor]]) -> list[list[float]]:
    out, pos = [], 0
    for group in groups:
        n = sum(p.numel() for p in group)
        out.append(values[pos:pos + n])
        pos += n
    return out
