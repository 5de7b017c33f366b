"""The run's settings, written once into its logs, so advice replayed from them names
the values the run really had.

Every host hands the `Monitor` a `run_info` (our `Trainer`: its config and model sizes;
a plain loop: the optimizer's `initial_lr` or `lr`, and what the user passes; the HF and
Lightning callbacks: their framework's clip and warmup). At the first logging step the
Monitor writes its plain values once, with the number of monitored blocks, as one
record (`Sink.settings`): the TensorBoard text summary `run/settings` (JSON) and a
`{"type": "settings", ...}` line of the JSONL log. `trainvitals analyze` reads it back
(`RunLog.settings`) and uses it wherever no flag gives the value.

| key | what |
|---|---|
| `lr` | the peak learning rate the user set |
| `warmup_steps`, `gradient_clip` | the run's warmup and clip (0: none) |
| `num_layers` | blocks the gradient monitor watches |
| `unigram_entropy`, `uniform_loss` | reference levels of the loss checks |
| others (`weight_decay`, `d_model`, `n_layers`, `dropout`, `epochs`, `scheduler`, ...) | what the post-epoch advice names |
| our `train-*` commands: every config field but `logdir` | what `trainvitals advise --out` rebuilds the next run's config from |
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["run_settings"]


def run_settings(run_info: dict[str, Any], num_layers: int | None = None) -> dict[str, Any]:
    """The plain (number, string, bool, or a list of those) facts of `run_info`, and
    `num_layers` when known; nested or non-finite values are left out."""
    out = {k: v for k, v in run_info.items() if isinstance(k, str) and _plain(v)}
    if num_layers is not None:
        out["num_layers"] = int(num_layers)
    return dict(sorted(out.items()))


def _plain(v: Any) -> bool:
    if isinstance(v, list):  # a list setting (evaluation_epochs) of plain values
        return all(_plain(x) and not isinstance(x, list) for x in v)
    if isinstance(v, (bool, str, int)):
        return True
    return isinstance(v, float) and math.isfinite(v)
