"""What trainvitals needs from torch.distributed, and nothing of its own.

Under `torchrun` every process runs the same code. The rules (DESIGN.md):
- figures are global: what a probe measures on its rank (sums of squares, losses) is
  summed over the ranks in one `all_reduce` per logging step, before any ratio or root;
- one voice: only the main process (rank 0) has sinks and writes files;
- one decision: a decision taken from a local value (a non-finite loss seen by one
  rank, a SIGTERM) is reduced first, so every rank takes it at the same step.

Single-process use needs none of this: every function here is a no-op then.
"""
from __future__ import annotations

import datetime as dt
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["world_size", "rank", "is_main", "active", "init_from_env", "all_reduce_sum", "any_rank",
           "shard_rows", "barrier", "shutdown", "collective_device", "gather_objects", "local_view", "is_sharded"]


def active() -> bool:
    """A process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0, or no process group; before one is made, what torchrun's RANK says."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def init_from_env(device: str = "auto") -> torch.device | None:
    """Under torchrun (WORLD_SIZE > 1 in the environment) make the default process group:
    NCCL with one CUDA device per local rank, gloo on the CPU. Returns this rank's device,
    or None when not launched by torchrun (or a group exists already)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return None
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=dt.timedelta(minutes=10))
    return torch.device("cuda", local) if use_cuda else torch.device("cpu")


def shutdown() -> None:
    """Destroy the process group, if one was made."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place (one collective); returns it."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: torch.Tensor | bool) -> bool:
    """True on every rank if it is true on any (one collective and one host sync)."""
    t = torch.as_tensor(flag, dtype=torch.float32).reshape(())
    if active():
        t = t.to(collective_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def barrier() -> None:
    if active():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (JSON-like values and tensors), in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard_rows(batch: Any, index: int | None = None, count: int | None = None) -> Any:
    """This rank's rows of a global batch: rank r of N takes rows r*B..(r+1)*B of every
    tensor (B = rows / N, the last ranks one fewer when N does not divide them)."""
    index = rank() if index is None else index
    count = world_size() if count is None else count
    if count == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        rows = batch.shape[0] if batch.dim() else 0
        if not rows:
            return batch
        base, extra = divmod(rows, count)
        start = index * base + min(index, extra)
        return batch[start:start + base + (index < extra)]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(shard_rows(b, index, count) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_rows(b, index, count) for b in batch)
    if isinstance(batch, dict):
        return {k: shard_rows(v, index, count) for k, v in batch.items()}
    return batch


def is_sharded(t: torch.Tensor) -> bool:
    """A DTensor split over ranks (FSDP2 parameters, their gradients and optimizer state)."""
    placements = getattr(t, "placements", None)
    return placements is not None and any(p.is_shard() for p in placements)


def local_view(t: torch.Tensor) -> torch.Tensor:
    """The part of `t` this rank holds: a DTensor's local shard, a plain tensor itself."""
    return t.to_local() if hasattr(t, "to_local") and hasattr(t, "placements") else t


def collective_device() -> torch.device:
    """Where this rank's collectives run: its CUDA device under NCCL, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
