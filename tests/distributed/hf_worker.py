"""HF `transformers.Trainer` with `TrainvitalsCallback`, alone or under torchrun (CPU, gloo).

    python hf_worker.py OUTDIR --batch B

A tiny GPT-2 from a config; per-device batch B. Rank 0's TensorBoard run holds HF's
own figures (train/loss, train/grad_norm: reduced over the ranks) beside ours; every
rank writes OUTDIR/rank<r>.json with its events.
"""
import argparse
import json
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from trainvitals.integrations.transformers import TrainvitalsCallback

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--batch", type=int, default=4)
args = p.parse_args()
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                                   bos_token_id=0, eos_token_id=0))
tokens = torch.randint(0, 64, (96, 16), generator=torch.Generator().manual_seed(0))
data = [{"input_ids": t, "labels": t} for t in tokens]
cb = TrainvitalsCallback({"gradient_monitor_interval": 1})
targs = TrainingArguments(args.out, max_steps=8, per_device_train_batch_size=args.batch, logging_steps=1,
                          report_to=["tensorboard"], use_cpu=True, learning_rate=1e-3, disable_tqdm=True,
                          save_strategy="no", lr_scheduler_type="constant",
                          ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
                          max_grad_norm=0.5, seed=0, data_seed=0)
Trainer(model=model, args=targs, train_dataset=data, callbacks=[cb]).train()
rank = int(os.environ.get("RANK", "0"))
with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
    json.dump([[e.kind, e.step] for e in cb.events], f)
if torch.distributed.is_initialized():  # HF leaves the group up; gloo's threads at exit can abort a rank
    torch.distributed.destroy_process_group()
