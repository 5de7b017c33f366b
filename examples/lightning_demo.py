"""PyTorch Lightning watched by trainvitals: a byte-level GPT trained on Python's own
reference docs (they ship with CPython: nothing downloads).

    pip install "trainvitals[lightning]"
    python examples/lightning_demo.py
    python examples/lightning_demo.py --devices 2        # Lightning's DDP, processes started by Lightning
    torchrun --standalone --nproc_per_node 2 examples/lightning_demo.py --devices 2   # or by torchrun

Our tags go to the trainer's loggers (TensorBoard: --logdir/lightning_logs/version_N),
events to the console. `trainvitals analyze runs/lightning_demo/lightning_logs/version_0`
reads them back.
"""
from __future__ import annotations

import argparse

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from trainvitals.integrations.lightning import TrainvitalsCallback
from trainvitals.tasks.lm.data import load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig


class LitGPT(L.LightningModule):
    def __init__(self, config: GPTConfig, lr: float) -> None:
        super().__init__()
        self.model, self.lr = GPT(config), lr

    def loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x).flatten(0, 1).float(), y.flatten())

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.loss(batch)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.loss(batch), sync_dist=True)  # what TrainvitalsCallback reads

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.1)


def windows(data: torch.Tensor, block_size: int) -> TensorDataset:
    """Inputs and next-byte targets of non-overlapping windows."""
    w = data[:(len(data) - 1) // block_size * block_size + 1]
    return TensorDataset(w[:-1].view(-1, block_size), w[1:].view(-1, block_size))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-steps", type=int, default=1000)
    p.add_argument("--val-check-interval", type=int, default=200, help="validate every N batches")
    p.add_argument("--val-batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16, help="per device")
    p.add_argument("--accumulate-grad-batches", type=int, default=1)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--devices", type=lambda v: v if v == "auto" else int(v), default="auto",
                   help="under torchrun: --nproc_per_node")
    p.add_argument("--logdir", default="runs/lightning_demo")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    data = torch.frombuffer(bytearray(load_text()), dtype=torch.uint8).long()
    split = int(0.9 * len(data))
    train = DataLoader(windows(data[:split], args.block_size), batch_size=args.batch_size, shuffle=True)
    val = DataLoader(windows(data[split:], args.block_size), batch_size=args.batch_size)
    L.seed_everything(0)
    model = LitGPT(GPTConfig(block_size=args.block_size, n_layers=args.n_layer, n_heads=args.n_head,
                             d_model=args.n_embd), args.lr)
    # --- snippet: lightning ---
    trainer = L.Trainer(max_steps=args.max_steps, devices=args.devices, val_check_interval=args.val_check_interval,
                        limit_val_batches=args.val_batches, accumulate_grad_batches=args.accumulate_grad_batches,
                        gradient_clip_val=1.0, logger=TensorBoardLogger(args.logdir),
                        callbacks=[TrainvitalsCallback()])   # reads the "val_loss" you self.log
    trainer.fit(model, train, val)
    # --- end snippet ---


if __name__ == "__main__":
    main()
