"""Learning rate: linear warmup, then cosine decay (or constant); a pure function of the step."""
from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(step: int, peak: float, warmup_steps: int, decay_steps: int, schedule: str = "cosine",
          min_ratio: float = 0.1) -> float:
    """LR for optimizer step `step` (0-based). Stateless, so resuming needs only the step."""
    if warmup_steps and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant" or decay_steps <= warmup_steps:
        return peak
    progress = min(1.0, (step - warmup_steps) / max(1, decay_steps - warmup_steps))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
