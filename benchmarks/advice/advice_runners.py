"""Run one configuration on one host, in this process, and leave its logs in a directory.

Hosts: our `train-lm` / `train-translation` (the settings are their config fields, as a
`--config` TOML holds them) and HF's `Trainer` on a GPT-2 built from `GPT2Config`
(the settings are `TrainingArguments` and model-config names, as HF example scripts take
them). Every run is tiny (a few seconds on one CPU thread).
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["run_ours", "run_hf", "final_val_loss"]


def run_ours(task: str, settings: dict[str, Any], logdir: Path) -> int:
    """`train-lm` or `train-translation` with `settings` (config field names; and the
    benchmark's own fault `frozen_block`: that block (or named module) left out of the optimizer, the bug a
    user makes in code, which no config field sets)."""
    given = {**settings, "logdir": str(logdir), "progress_bar": False}
    frozen = given.pop("frozen_block", None)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            _without_block(frozen):
        if task == "lm":
            from trainvitals.tasks.lm.run import train_lm
            return train_lm(given)
        from trainvitals.tasks.translation.run import train_translation
        return train_translation(given)


@contextlib.contextmanager
def _without_block(block: int | str | None):
    """Our trainer's default AdamW, built without the parameters of `model.blocks[block]`
    (a module's name: of that module)."""
    if block is None:
        yield
        return
    from trainvitals.training.trainer import Trainer
    build = Trainer._default_optimizer

    def without(self):
        part = self.module.blocks[block] if isinstance(block, int) else getattr(self.module, block)
        left_out = {id(p) for p in part.parameters()}
        opt = build(self)
        for group in opt.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in left_out]
        return opt
    Trainer._default_optimizer = without
    try:
        yield
    finally:
        Trainer._default_optimizer = build


def _hf_data(text: bytes, block: int, n: int, offset: int):
    import torch
    ids = torch.tensor(list(text[offset: offset + n * block]), dtype=torch.long).view(n, block)
    return [{"input_ids": row, "labels": row} for row in ids]


def run_hf(settings: dict[str, Any], logdir: Path) -> int:
    """HF `Trainer` on a byte-level GPT-2 from `GPT2Config`; `settings` holds
    `TrainingArguments` names, model-config names (n_embd, n_layer, resid_pdrop, ...),
    and the benchmark's own `train_windows` / `block_size` / `train_offset` (the data)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from trainvitals.tasks.lm.data import load_text
    s = dict(settings)
    block, n_train, offset = s.pop("block_size", 32), s.pop("train_windows", 640), s.pop("train_offset", 0)
    model_keys = ("n_embd", "n_layer", "n_head", "resid_pdrop", "embd_pdrop", "attn_pdrop", "initializer_range")
    model_cfg = {k: s.pop(k) for k in model_keys if k in s}
    text = load_text()
    train, val = _hf_data(text, block, n_train, offset), _hf_data(text, block, 256, len(text) - 256 * block - 1)
    torch.manual_seed(s.get("seed", 0))
    config = GPT2Config(vocab_size=256, n_positions=block, **{"n_embd": 32, "n_layer": 2, "n_head": 2,
                                                               "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                                               "attn_pdrop": 0.0, "bos_token_id": 0, "eos_token_id": 0,
                                                               **model_cfg})
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(output_dir=str(logdir), report_to=["tensorboard"],
                             per_device_train_batch_size=16, per_device_eval_batch_size=64,
                             eval_strategy="epoch", logging_strategy="steps", logging_steps=5, save_strategy="no",
                             disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, **s)
    hf_logging.set_verbosity_error()
    os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
        trainer.train()
    return 0


def final_val_loss(logdir: Path) -> float:
    """The last validation loss the run logged (inf when none or non-finite: a failed run)."""
    from trainvitals.analyze.readers import read_runs
    from trainvitals.analyze.roles import apply_roles
    for run in read_runs(logdir).values():
        points = apply_roles(run).series.get("val/loss", [])
        if points and math.isfinite(points[-1][1]):
            return points[-1][1]
    return math.inf
