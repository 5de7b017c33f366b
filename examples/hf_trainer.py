"""Hugging Face `transformers.Trainer` watched by trainvitals: a GPT-2 built from a config
(no weights download) learns the bytes of Python's own reference docs (no tokenizer, no
dataset download: they ship with CPython).

    pip install "trainvitals[hf]"
    python examples/hf_trainer.py
    python examples/hf_trainer.py --resume        # continue from the latest checkpoint (HF's defaults)
    torchrun --standalone --nproc_per_node 2 examples/hf_trainer.py   # HF's DDP

Our tags go into the TensorBoard run HF writes (--output-dir/runs/*), beside HF's own;
events print to the console. `trainvitals analyze runs/hf_trainer` reads them back.
"""
from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from trainvitals.integrations.transformers import TrainvitalsCallback
from trainvitals.tasks.lm.data import load_text


class ByteWindows(torch.utils.data.Dataset):
    """Non-overlapping windows of `block_size` bytes; the model shifts the labels itself."""

    def __init__(self, data: torch.Tensor, block_size: int) -> None:
        self.windows = data[:len(data) // block_size * block_size].view(-1, block_size)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.windows[i], "labels": self.windows[i]}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--eval-steps", type=int, default=200, help="evaluate (and save) every N steps")
    p.add_argument("--eval-batches", type=int, default=20, help="size of the evaluation set, in batches")
    p.add_argument("--batch-size", type=int, default=16, help="per device")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--output-dir", default="runs/hf_trainer")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output-dir")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    data = torch.frombuffer(bytearray(load_text()), dtype=torch.uint8).long()
    split = int(0.9 * len(data))
    train_set = ByteWindows(data[:split], args.block_size)
    eval_set = torch.utils.data.Subset(ByteWindows(data[split:], args.block_size),
                                       range(args.eval_batches * args.batch_size))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=args.block_size, n_layer=args.n_layer,
                                       n_head=args.n_head, n_embd=args.n_embd, bos_token_id=0, eos_token_id=0))
    training_args = TrainingArguments(
        args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.lr, warmup_steps=0.05, max_grad_norm=1.0, eval_strategy="steps",
        eval_steps=args.eval_steps, save_steps=args.eval_steps, logging_steps=10, report_to=["tensorboard"],
        use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(), disable_tqdm=True)
    # --- snippet: hf_trainer ---
    trainer = Trainer(model=model, args=training_args, train_dataset=train_set, eval_dataset=eval_set,
                      callbacks=[TrainvitalsCallback()])
    trainer.train(resume_from_checkpoint=args.resume or None)
    # --- end snippet ---


if __name__ == "__main__":
    main()
