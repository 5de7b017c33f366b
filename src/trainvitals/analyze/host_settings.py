"""The settings another writer leaves in its logs, in the names trainvitals' settings use.

HF's `TensorBoardCallback` writes its `TrainingArguments` as JSON (text summary `args`)
and the model's config (`model_config`). Read back, they tell `analyze` and `advise`
the LR the user set (not the scheduled one at a step), the clip HF applied
(`max_grad_norm`, 1.0 by default), the warmup, and the model's dropout and sizes, so
advice never proposes a value the run already had.
"""
from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["hf_settings"]

# settings key <- the first of these names present (TrainingArguments, then model configs)
_ARGS = {"lr": ("learning_rate",), "gradient_clip": ("max_grad_norm",), "weight_decay": ("weight_decay",),
         "label_smoothing": ("label_smoothing_factor",), "epochs": ("num_train_epochs",),
         "scheduler": ("lr_scheduler_type",), "max_steps": ("max_steps",), "seed": ("seed",)}
_MODEL = {"d_model": ("n_embd", "hidden_size", "d_model"), "n_layers": ("n_layer", "num_hidden_layers", "num_layers"),
          "dropout": ("resid_pdrop", "hidden_dropout_prob", "dropout"),
          "init_std": ("initializer_range", "init_std"), "vocab_size": ("vocab_size",)}


def hf_settings(texts: dict[str, str]) -> dict[str, Any]:
    """Settings from HF's `args` and `model_config` text summaries ({} when absent or not JSON)."""
    args, model = _json(texts.get("args")), _json(texts.get("model_config"))
    if not args and not model:
        return {}
    out: dict[str, Any] = {"host": "hf"}
    for table, source in ((_ARGS, args), (_MODEL, model)):
        for key, names in table.items():
            value = next((source[n] for n in names if _plain(source.get(n))), None)
            if value is not None:
                out[key] = value
    if out.get("gradient_clip") is not None and out["gradient_clip"] <= 0:
        out["gradient_clip"] = 0.0  # HF clips only at max_grad_norm > 0
    warmup = args.get("warmup_steps")
    ratio = args.get("warmup_ratio") or (warmup if _plain(warmup) and 0 < warmup < 1 else None)
    if _plain(warmup) and (warmup == 0 or warmup >= 1) and not args.get("warmup_ratio"):
        out["warmup_steps"] = int(warmup)
    elif _plain(ratio) and _plain(args.get("max_steps")) and args["max_steps"] > 0:
        out["warmup_steps"] = math.ceil(ratio * args["max_steps"])  # as HF's get_warmup_steps
    return out


def _json(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _plain(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    return isinstance(v, str)
