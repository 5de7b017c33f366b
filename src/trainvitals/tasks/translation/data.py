"""Parallel text for the translation task: the built-in corpus (corpus.py) or a TSV file.

Tokens are bytes of UTF-8 shifted by 3, in one vocabulary shared by both sides:
PAD=0, BOS=1, EOS=2, byte b → b+3 (VOCAB_SIZE=259). A batch is (src, tgt_in, tgt_out),
each (B, T) int64 right-padded with PAD: src = bytes+EOS, tgt_in = BOS+bytes,
tgt_out = bytes+EOS.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.tasks.translation.corpus import generate_pairs

__all__ = [
    "BOS_ID", "BYTE_OFFSET", "EOS_ID", "PAD_ID", "VOCAB_SIZE", "Batch", "TranslationData",
    "TranslationDataConfig", "check_fits", "decode", "encode", "load_pairs_tsv", "load_translation_data",
]

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3
VOCAB_SIZE = 256 + BYTE_OFFSET


def encode(text: str) -> list[int]:
    """Text -> token ids (UTF-8 bytes + BYTE_OFFSET), no BOS/EOS."""
    return [b + BYTE_OFFSET for b in text.encode("utf-8")]


def decode(ids: list[int] | torch.Tensor) -> str:
    """Token ids -> text, stopping at the first EOS and skipping PAD/BOS."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    out = bytearray()
    for i in ids:
        if i == EOS_ID:
            break
        if i >= BYTE_OFFSET:
            out.append(i - BYTE_OFFSET)
    return out.decode("utf-8", errors="replace")


# --- the user's own corpus --------------------------------------------------------------

def load_pairs_tsv(path: str | Path, max_len: int | None = None) -> list[tuple[str, str]]:
    """Read `source<TAB>target` lines (UTF-8). Blank lines are skipped.

    A malformed line raises ConfigError (a ValueError) naming the file, the line number
    and the fault.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data={str(path)!r}: {_not_a_file(p)}; give a UTF-8 file of "
                          f"'source<TAB>target' lines")
    pairs: list[tuple[str, str]] = []
    try:
        fh = p.open("rb")
    except OSError as e:
        raise ConfigError(f"data={str(path)!r}: cannot read ({e.strerror or e})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{p}:{lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ConfigError(f"data: {where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ConfigError(f"data: {where}: expected 'source<TAB>target', found "
                                  f"{len(parts) - 1} tabs")
            src, tgt = parts[0].strip(), parts[1].strip()
            if not src or not tgt:
                raise ConfigError(f"data: {where}: the {'source' if not src else 'target'} side is empty")
            if max_len is not None:
                for side, text in (("source", src), ("target", tgt)):
                    if len(text.encode("utf-8")) > max_len:
                        raise ConfigError(f"data: {where}: the {side} side is {len(text.encode('utf-8'))} "
                                          f"bytes, more than max_len={max_len}; shorten the "
                                          f"line or raise --max-chars")
            pairs.append((src, tgt))
    if not pairs:
        raise ConfigError(f"data: {p}: no 'source<TAB>target' lines")
    return pairs


# --- batches ----------------------------------------------------------------------------

class Batch(NamedTuple):
    src: torch.Tensor  # (B, S) bytes + EOS, PAD-padded
    tgt_in: torch.Tensor  # (B, T) BOS + bytes
    tgt_out: torch.Tensor  # (B, T) bytes + EOS


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    out = torch.tensor([s + [PAD_ID] * (width - len(s)) for s in seqs], dtype=torch.long)
    return out, torch.tensor([len(s) for s in seqs])


class _Split:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.src, self.src_len = _pad([encode(s) + [EOS_ID] for s, _ in pairs])
        self.tgt, self.tgt_len = _pad([[BOS_ID] + encode(t) + [EOS_ID] for _, t in pairs])

    def batch(self, idx: torch.Tensor) -> Batch:
        s, t = int(self.src_len[idx].max()), int(self.tgt_len[idx].max())
        tgt = self.tgt[idx, :t]
        return Batch(self.src[idx, :s], tgt[:, :-1], tgt[:, 1:])


@dataclass
class TranslationDataConfig:
    data: str = ""  # a 'source<TAB>target' file; "" = the built-in English→French corpus
    n_train: int = 20_000  # built-in corpus only
    n_val: int = 1_000  # built-in corpus only
    val_fraction: float = 0.1  # TSV only: share of the (deduplicated) pairs held out
    max_chars: int = 96  # bytes per side, BOS/EOS not counted
    corpus_seed: int = 0  # corpus generation and the TSV split

    def __post_init__(self) -> None:
        check_type("data", self.data, str)
        for name in ("n_train", "n_val", "max_chars", "corpus_seed"):
            check_type(name, getattr(self, name), int)
        check_range("n_train", self.n_train, 1)
        check_range("n_val", self.n_val, 1)
        check_range("max_chars", self.max_chars, 1)
        check_range("val_fraction", self.val_fraction, 0, 0.5, lo_open=True)
        if self.data and not Path(self.data).is_file():
            raise ConfigError(f"data={self.data!r}: {_not_a_file(Path(self.data))}; give a UTF-8 file of "
                              f"'source<TAB>target' lines, or \"\" for the built-in corpus")


def _not_a_file(p: Path) -> str:
    if not p.exists():
        return "no such file"
    return "a directory, not a file" if p.is_dir() else "not a regular file"


class TranslationData:
    """Train and validation pairs, pre-encoded; batches of (src, tgt_in, tgt_out)."""

    def __init__(self, train_pairs: list[tuple[str, str]], val_pairs: list[tuple[str, str]]) -> None:
        if not train_pairs or not val_pairs:
            raise ConfigError(f"data: need at least one training and one validation pair, got "
                              f"{len(train_pairs)} and {len(val_pairs)}")
        self.train, self.val = _Split(train_pairs), _Split(val_pairs)
        self.vocab_size = VOCAB_SIZE
        self._unigram_entropy: float | None = None

    @classmethod
    def builtin(cls, n_train: int = 20_000, n_val: int = 1_000, seed: int = 0,
                max_len: int = 96) -> TranslationData:
        """The generated English→French corpus; validation pairs never occur in training."""
        pairs = generate_pairs(n_train + n_val, seed=seed, max_len=max_len)
        return cls(pairs[n_val:], pairs[:n_val])

    @classmethod
    def from_tsv(cls, path: str | Path, val_fraction: float = 0.1, seed: int = 0,
                 max_len: int | None = 96) -> TranslationData:
        """Pairs from a TSV file; duplicates dropped so no pair is in both splits."""
        check_range("val_fraction", val_fraction, 0, 0.5, lo_open=True)
        pairs = list(dict.fromkeys(load_pairs_tsv(path, max_len=max_len)))
        if len(pairs) < 2:
            raise ConfigError(f"data: {path}: {len(pairs)} distinct pairs; need at least 2 to split")
        random.Random(seed).shuffle(pairs)
        n_val = min(max(1, round(len(pairs) * val_fraction)), len(pairs) - 1)
        return cls(pairs[n_val:], pairs[:n_val])

    @property
    def train_pairs(self) -> list[tuple[str, str]]:
        return self.train.pairs

    @property
    def val_pairs(self) -> list[tuple[str, str]]:
        return self.val.pairs

    def num_train_batches(self, batch_size: int, drop_last: bool = True) -> int:
        n = len(self.train.pairs)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator | None = None,
                      drop_last: bool = True) -> Iterator[Batch]:
        """One shuffled pass over the training pairs; the order comes from `generator`."""
        check_range("batch_size", batch_size, 1)
        order = torch.randperm(len(self.train.pairs), generator=generator)
        stop = self.num_train_batches(batch_size, drop_last) * batch_size
        for i in range(0, stop, batch_size):
            yield self.train.batch(order[i:min(i + batch_size, stop)])

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        """The validation pairs in a fixed order, last batch possibly short."""
        check_range("batch_size", batch_size, 1)
        n = len(self.val.pairs)
        for i in range(0, n, batch_size):
            yield self.val.batch(torch.arange(i, min(i + batch_size, n)))

    def unigram_entropy(self) -> float:
        """Entropy in nats of the training target tokens (bytes + EOS, no PAD).

        The loss of a model that learned only token frequencies: a run stuck at or
        above it has learned nothing, not even the target language.
        """
        if self._unigram_entropy is None:
            toks = self.train.tgt[:, 1:]
            counts = torch.bincount(toks[toks != PAD_ID], minlength=VOCAB_SIZE).double()
            p = counts[counts > 0] / counts.sum()
            self._unigram_entropy = float(-(p * p.log()).sum())
        return self._unigram_entropy

    def describe(self) -> str:
        return (f"{len(self.train.pairs):,} train pairs, {len(self.val.pairs):,} val pairs, "
                f"target unigram entropy {self.unigram_entropy():.3f} nats")


def check_fits(data: TranslationData, vocab_size: int, max_len: int) -> None:
    """Refuse a model too small for the data before a step fails on it."""
    top = max(int(split.src.max()) for split in (data.train, data.val))
    top = max([top] + [int(split.tgt.max()) for split in (data.train, data.val)])
    if top >= vocab_size:
        raise ConfigError(f"vocab_size={vocab_size}: the data has token ids up to {top} (bytes + {BYTE_OFFSET}), "
                          f"so vocab_size must be at least {top + 1} ({VOCAB_SIZE} holds every byte)")
    longest = max(max(split.src.shape[1], split.tgt.shape[1] - 1) for split in (data.train, data.val))
    if longest > max_len:
        raise ConfigError(f"max_len={max_len}: the data's longest sequence is {longest} tokens (EOS or BOS "
                          f"included); raise --max-len to at least {longest} or lower --max-chars")


def load_translation_data(cfg: TranslationDataConfig) -> TranslationData:
    if cfg.data:
        return TranslationData.from_tsv(cfg.data, cfg.val_fraction, cfg.corpus_seed, cfg.max_chars)
    return TranslationData.builtin(cfg.n_train, cfg.n_val, cfg.corpus_seed, cfg.max_chars)
