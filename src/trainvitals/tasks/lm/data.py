"""Byte-level text data for the LM: the embedded corpus or the user's own files.

The default corpus is the text of `pydoc_data.topics` (Python's own reference
documentation, ~0.46 MB of English), which ships with CPython: nothing downloads.
An epoch is one pass over the training text cut into non-overlapping windows, in an
order drawn from (seed, epoch), so a run resumed at (epoch, batch) sees exactly the
batches an uninterrupted run would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from trainvitals.errors import ConfigError, check_range

__all__ = ["LMDataConfig", "ByteCorpus", "load_text", "check_vocab", "unigram_entropy", "describe"]


@dataclass
class LMDataConfig:
    data: str = ""  # a .txt file or a directory of .txt files; "" = the embedded corpus
    val_fraction: float = 0.1  # the tail of the text held out for validation

    def __post_init__(self) -> None:
        check_range("val_fraction", self.val_fraction, 0, 0.5, lo_open=True)
        if self.data and not Path(self.data).exists():
            raise ConfigError(f"data={self.data!r}: no such file or directory; "
                              f"give a .txt file or a directory of .txt files")


def load_text(path: str = "") -> bytes:
    if not path:
        from pydoc_data.topics import topics
        return "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    p = Path(path)
    files = sorted(p.rglob("*.txt")) if p.is_dir() else [p]
    if not files:
        raise ConfigError(f"data={path!r}: the directory holds no .txt files")
    try:
        text = b"\n\n".join(f.read_bytes() for f in files)
    except OSError as e:
        raise ConfigError(f"data={path!r}: cannot read ({e.strerror or e})") from None
    if not text.strip():
        raise ConfigError(f"data={path!r}: empty (no text to train on); give a .txt file or a directory of "
                          f".txt files")
    return text


def check_vocab(corpus: "ByteCorpus", vocab_size: int) -> None:
    """Refuse a vocabulary that cannot hold the data's byte values (the model would fail mid-step)."""
    top = int(max(corpus.train.max(), corpus.val.max()))
    if top >= vocab_size:
        raise ConfigError(f"vocab_size={vocab_size}: the data holds byte values up to {top}, so vocab_size "
                          f"must be at least {top + 1} (256 holds every byte)")


def unigram_entropy(tokens: torch.Tensor, vocab_size: int = 256) -> float:
    """Entropy in nats of the token frequencies: the loss of a model that learned only those."""
    counts = torch.bincount(tokens.flatten(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


class ByteCorpus:
    """Train/val windows of `block_size + 1` bytes (input and shifted target)."""

    def __init__(self, text: bytes, block_size: int, batch_size: int, val_fraction: float = 0.1,
                 seed: int = 0) -> None:
        data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
        n_val = max(int(len(data) * val_fraction), block_size + 1)
        if len(data) - n_val < (block_size + 1) * batch_size:
            raise ConfigError(
                f"data: {len(data)} bytes is too small for batch_size={batch_size} windows of "
                f"block_size={block_size}; give more text or lower batch_size/block_size"
            )
        self.train, self.val = data[:-n_val], data[-n_val:]
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.unigram_entropy = unigram_entropy(self.train)

    def _windows(self, data: torch.Tensor) -> torch.Tensor:
        n = (len(data) - 1) // self.block_size
        starts = torch.arange(n) * self.block_size
        return starts

    def num_batches(self) -> int:
        return len(self._windows(self.train)) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one training epoch, shuffled by (seed, epoch)."""
        starts = self._windows(self.train)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        # a random phase per epoch, so windows do not always start at the same bytes
        shift = int(torch.randint(self.block_size, (1,), generator=g))
        starts = starts[starts + shift + self.block_size + 1 <= len(self.train)] + shift
        order = starts[torch.randperm(len(starts), generator=g)]
        for i in range(len(order) // self.batch_size):
            yield self._batch(self.train, order[i * self.batch_size:(i + 1) * self.batch_size])

    def validation(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = self._windows(self.val)
        for i in range(0, len(starts), self.batch_size):
            yield self._batch(self.val, starts[i:i + self.batch_size])

    def _batch(self, data: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = starts[:, None] + torch.arange(self.block_size + 1)  # (B, T+1)
        chunk = data[idx]
        return chunk[:, :-1], chunk[:, 1:]


def describe(corpus: ByteCorpus) -> str:
    return (f"{len(corpus.train):,} train bytes, {len(corpus.val):,} val bytes, "
            f"unigram entropy {corpus.unigram_entropy:.3f} nats ({corpus.unigram_entropy / math.log(2):.2f} bits)")
