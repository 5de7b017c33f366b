"""A nanoGPT-style training loop watched by trainvitals: a byte-level GPT trained on
Python's own reference docs (they ship with CPython: nothing downloads).

    python examples/plain_loop.py                           # CPU: a few minutes
    python examples/plain_loop.py --device cuda --compile   # a GPU, compiled
    torchrun --standalone --nproc_per_node 2 examples/plain_loop.py   # DDP (gloo on CPU, NCCL on GPUs)

TensorBoard event files and metrics.jsonl go to --logdir (runs/plain_loop), which
belongs to this run: pick another one for the next run. Then
`tensorboard --logdir runs` or `trainvitals analyze runs/plain_loop`.

Steps: trainvitals counts optimizer steps from 1, as `iter_num` does here. nanoGPT's
own `iter_num` starts at 0 and evaluates before stepping, so its iteration N is our
step N + 1 and its "step N" evaluation follows our step N (`monitor.step_end(loss,
step=iter_num + 1)` says so explicitly, e.g. after a resume).
"""
from __future__ import annotations

import argparse
import contextlib
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from trainvitals import Monitor
from trainvitals.tasks.lm.data import load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-iters", type=int, default=1000)
    p.add_argument("--eval-interval", type=int, default=200, help="evaluate every N iterations")
    p.add_argument("--eval-iters", type=int, default=20, help="batches per evaluation")
    p.add_argument("--batch-size", type=int, default=16, help="per process and micro-step")
    p.add_argument("--gradient-accumulation-steps", type=int, default=2)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-backend", default="inductor", help="with --compile (aot_eager: no C++ compiler needed)")
    p.add_argument("--logdir", default="runs/plain_loop")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    ddp = "RANK" in os.environ  # launched by torchrun
    device, rank = args.device, 0
    if ddp:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        rank = dist.get_rank()
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device)
    torch.manual_seed(1337)  # the same initial weights on every rank
    autocast = torch.autocast("cuda", torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()

    data = torch.frombuffer(bytearray(load_text()), dtype=torch.uint8).long()
    split = int(0.9 * len(data))
    sets = {"train": data[:split], "val": data[split:]}
    batches = torch.Generator().manual_seed(1337 + rank)  # each rank draws its own batches

    def get_batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = sets[name]
        ix = torch.randint(len(d) - args.block_size - 1, (args.batch_size,), generator=batches)
        x = torch.stack([d[i:i + args.block_size] for i in ix])
        y = torch.stack([d[i + 1:i + 1 + args.block_size] for i in ix])
        return x.to(device), y.to(device)

    raw_model = GPT(GPTConfig(block_size=args.block_size, n_layers=args.n_layer, n_heads=args.n_head,
                              d_model=args.n_embd)).to(device)
    optimizer = torch.optim.AdamW(raw_model.parameters(), lr=args.lr, weight_decay=0.1)
    model = torch.compile(raw_model, backend=args.compile_backend) if args.compile else raw_model
    if ddp:
        model = DDP(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast:
            return F.cross_entropy(model(x).flatten(0, 1).float(), y.flatten())

    @torch.no_grad()
    def estimate_loss() -> dict[str, torch.Tensor]:
        model.eval()
        out = {name: torch.stack([loss_of(*get_batch(name)) for _ in range(args.eval_iters)]).mean()
               for name in sets}
        model.train()
        return out

    accum = args.gradient_accumulation_steps
    # --- snippet: plain_loop ---
    with Monitor(raw_model, optimizer, logdir=args.logdir) as monitor:
        for iter_num in range(1, args.max_iters + 1):
            step_loss = 0.0
            for micro_step in range(accum):
                if ddp:  # all-reduce the gradients on the last micro-step only
                    model.require_backward_grad_sync = micro_step == accum - 1
                loss = loss_of(*get_batch("train")) / accum
                loss.backward()
                step_loss += loss.detach()
            monitor.after_backward()              # gradients complete, not yet clipped
            monitor.clip_grad_norm_(args.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            monitor.step_end(step_loss)           # stays on the device until a logging step
            if iter_num % args.eval_interval == 0:
                losses = estimate_loss()
                monitor.evaluate(losses["val"])    # the post-epoch checks, at every evaluation
            if monitor.stop_reason:               # e.g. a non-finite loss
                break
    # --- end snippet ---
    if ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
