"""The ways a benchmark run is made to go wrong, each a small, realistic mistake.

* `LossScaleOverflow`: fp16-style loss scaling whose back-off is broken: the loss is
  scaled by S before backward, every parameter gradient is stored in float16 (so
  entries past 65504 become inf) and unscaled, and S doubles every `growth_every`
  steps and never backs off. The first overflow sends inf into the optimizer.
* `CorruptBatch`: one batch mid-run arrives with extreme values: its embeddings are
  multiplied by `embedding_scale` (1e30: past float32's range once squared, as a
  corrupt record of huge feature values would be). A finite x300 batch, even with a
  30x LR on its step, was absorbed by LayerNorm, clipping and Adam: no failure.
* `optimizer_without_block`: the user's own AdamW, built from a parameter list that
  forgot one block.
* `NoisyLabels`: a tiny training text whose targets have a fraction of bytes replaced
  by random ones (fixed per position: the labels are wrong, not noisy per epoch), seen
  `passes_per_epoch` times between validations; validation is clean text.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from trainvitals.tasks.lm.data import ByteCorpus
from trainvitals.training.callbacks import TrainerCallback

__all__ = ["LossScaleOverflow", "CorruptBatch", "optimizer_without_block", "NoisyLabels"]


class LossScaleOverflow(TrainerCallback):
    state_key = "fault_loss_scale"

    def __init__(self, loss_scale: float, growth_every: int) -> None:
        self.scale, self.growth_every = float(loss_scale), growth_every
        self._handles: list[Any] = []

    def on_train_begin(self, trainer) -> None:
        model = trainer.model

        def scale_output(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            if out.requires_grad:
                out.register_hook(lambda g: g * self.scale)

        def to_fp16(g: torch.Tensor) -> torch.Tensor:
            return g.half().float() / self.scale  # inf past 65504, as an fp16 .grad would be

        self._handles.append(model.head.register_forward_hook(scale_output))
        self._handles += [p.register_hook(to_fp16) for p in model.parameters() if p.requires_grad]

    def on_step_end(self, trainer) -> None:
        if trainer.global_step % self.growth_every == 0:
            self.scale *= 2.0

    def on_train_end(self, trainer) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class CorruptBatch(TrainerCallback):
    state_key = "fault_corrupt_batch"

    def __init__(self, bad_step: int, embedding_scale: float = 1e30) -> None:
        self.bad_step, self.embedding_scale = bad_step, embedding_scale
        self._handle: Any = None
        self._active = False

    def on_train_begin(self, trainer) -> None:
        def corrupt(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor | None:
            return out * self.embedding_scale if self._active and module.training else None

        self._handle = trainer.model.tok_emb.register_forward_hook(corrupt)

    def on_step_begin(self, trainer) -> None:
        self._active = trainer.global_step + 1 == self.bad_step

    def on_train_end(self, trainer) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def optimizer_without_block(model: nn.Module, block: int, lr: float, weight_decay: float,
                            betas: tuple[float, float]) -> torch.optim.Optimizer:
    left_out = {id(p) for p in model.blocks[block].parameters()}
    params = [p for p in model.parameters() if id(p) not in left_out]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


class NoisyLabels(ByteCorpus):
    """Trainer data: clean inputs, targets with `noise` of bytes replaced (fixed per position)."""

    def __init__(self, text: bytes, train_bytes: int, val_bytes: int, block_size: int, batch_size: int,
                 noise: float, seed: int, passes_per_epoch: int = 1) -> None:
        train, val = text[:train_bytes], text[-val_bytes:]
        super().__init__(train + val, block_size, batch_size, len(val) / (len(train) + len(val)), seed)
        self.passes = passes_per_epoch  # a tiny text: several passes between validations
        g = torch.Generator().manual_seed(seed)
        flip = torch.rand(len(self.train), generator=g) < noise
        self.noisy = self.train.clone()
        self.noisy[flip] = torch.randint(256, (int(flip.sum()),), generator=g)

    def num_batches(self) -> int:
        return super().num_batches() * self.passes

    def epoch(self, epoch: int):
        for p in range(self.passes):
            yield from super().epoch(epoch * self.passes + p)

    def _batch(self, data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super()._batch(data, starts)
        if data is self.train:  # training batches get the wrong labels; validation stays clean
            y = self.noisy[starts[:, None] + 1 + torch.arange(self.block_size)]
        return x, y
