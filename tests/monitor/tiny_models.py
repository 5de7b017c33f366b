"""Tiny models shaped like the ones users compile, and a plain training loop around them.

`NanoGPT` follows nanoGPT's `model.py` layout (a `transformer` ModuleDict holding `wte`,
`wpe`, `drop`, `h`, `ln_f`; a tied `lm_head`; `forward(idx, targets) -> (logits, loss)`),
written here at toy size. `KwargBlocksGPT` calls its blocks the way HF models do: the
hidden states as a keyword, a tuple back. `CountingBackend` counts what runs compiled.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import trainvitals
from trainvitals.sinks.base import Sink

VOCAB, BLOCK_SIZE = 32, 12
_OURS = os.path.dirname(trainvitals.__file__)


class Memory(Sink):
    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}

    def log(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((step, value))


class CountingBackend:
    """A torch.compile backend counting the graphs it compiles and the ops that run inside
    them: the model's, and trainvitals' own (told apart by the file they were traced
    from). `inner` compiles the graphs (default: Dynamo's graph run as it is)."""

    def __init__(self, inner: str | None = None) -> None:
        self.inner = torch._dynamo.lookup_backend(inner) if inner else None
        self.graphs = 0
        self.model_ops = self.probe_ops = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list) -> object:
        self.graphs += 1
        ops = [n for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module")]
        ours = sum(_OURS in (n.meta.get("stack_trace") or "") for n in ops)
        compiled = self.inner(gm, example_inputs) if self.inner else gm.forward

        def run(*args: object) -> object:
            self.model_ops += len(ops) - ours
            self.probe_ops += ours
            return compiled(*args)
        return run


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_head: int = 2) -> None:
        super().__init__()
        self.c_attn, self.c_proj, self.n_head = nn.Linear(d, 3 * d), nn.Linear(d, d), n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in self.c_attn(x).split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), SelfAttention(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, n_layer: int = 3, d: int = 16) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(VOCAB, d), wpe=nn.Embedding(BLOCK_SIZE, d), drop=nn.Dropout(0.0),
            h=nn.ModuleList(Block(d) for _ in range(n_layer)), ln_f=nn.LayerNorm(d)))
        self.lm_head = nn.Linear(d, VOCAB, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied, as nanoGPT does

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


class KwargBlock(Block):
    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> tuple:
        return (super().forward(hidden_states), None)


class KwargBlocksGPT(nn.Module):
    def __init__(self, n_layer: int = 3, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, d)
        self.layers = nn.ModuleList(KwargBlock(d) for _ in range(n_layer))
        self.head = nn.Linear(d, VOCAB)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.emb(idx)
        for layer in self.layers:
            h = layer(hidden_states=h)[0]
        logits = self.head(h)
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def batches(n: int, batch: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, VOCAB, (n, batch, BLOCK_SIZE + 1), generator=g)
    return [(d[:, :-1], d[:, 1:]) for d in data]
