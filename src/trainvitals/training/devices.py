"""Where the trainer runs and how a batch gets there: the device, moving a batch of any
shape (tensor, tuple, NamedTuple, list, dict) to it, and counting its rows."""
from __future__ import annotations

from typing import Any

import torch

from trainvitals import distributed as dist
from trainvitals.errors import ConfigError

__all__ = ["select_device", "to_device", "rows"]


def select_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available here; use 'cpu' or 'auto'")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        # under torchrun each process has its own device (init_from_env set it)
        return torch.device("cuda", torch.cuda.current_device()) if dist.active() else torch.device("cuda")
    return torch.device("cpu" if name == "auto" else name)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def rows(batch: Any) -> int:
    """Rows in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0] if batch.dim() else 1
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    return next((rows(b) for b in items if isinstance(b, (torch.Tensor, list, tuple, dict))), 1)
