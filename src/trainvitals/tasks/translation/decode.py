"""Greedy decoding and scoring for the translation model."""
from __future__ import annotations

import torch

from trainvitals import distributed as dist
from trainvitals.tasks.translation.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    TranslationData,
    decode,
)
from trainvitals.tasks.translation.model import TranslationTransformer

__all__ = ["decode_examples", "evaluate", "greedy_decode", "token_accuracy"]


@torch.no_grad()
def greedy_decode(model: TranslationTransformer, src: torch.Tensor,
                  max_len: int | None = None) -> torch.Tensor:
    """src (B, S) -> (B, T) generated tokens, T <= max_len, without BOS.

    Each row ends with EOS and is PAD after it. A row still unfinished after max_len
    tokens is cut and its last token replaced by EOS. max_len defaults to the
    model's max_len - 1 (the BOS takes one position).
    """
    limit = model.config.max_len - 1
    max_len = limit if max_len is None else max_len
    if not 1 <= max_len <= limit:
        raise ValueError(f"max_len={max_len}: allowed is 1 <= max_len <= {limit} "
                         f"(the model's max_len minus the BOS)")
    was_training = model.training
    model.eval()
    try:
        memory, memory_mask = model.encode(src)
        B = src.shape[0]
        ys = torch.full((B, 1), BOS_ID, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for step in range(max_len):
            nxt = model.decode(ys, memory, memory_mask)[:, -1].argmax(dim=-1)
            if step == max_len - 1:
                nxt = torch.full_like(nxt, EOS_ID)
            nxt = torch.where(done, torch.full_like(nxt, PAD_ID), nxt)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
            done |= nxt == EOS_ID
            # one host sync per generated token; decoding is not on the training hot path
            if bool(done.all()):
                break
        return ys[:, 1:]
    finally:
        model.train(was_training)


def token_accuracy(logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """Share of non-PAD target tokens whose argmax prediction is right (0-dim tensor)."""
    keep = tgt_out != PAD_ID
    hits = (logits.argmax(dim=-1) == tgt_out) & keep
    return hits.sum() / keep.sum().clamp(min=1)


@torch.no_grad()
def evaluate(model: TranslationTransformer, data: TranslationData,
             batch_size: int = 256) -> tuple[float, float]:
    """(loss, token accuracy) on the validation pairs, both averaged per target token.

    The loss is plain cross-entropy (no label smoothing), comparable with
    data.unigram_entropy(). Under torch.distributed each rank takes its rows of every
    batch and the sums are reduced (one collective): the figures of one process.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        for src, tgt_in, tgt_out in map(dist.shard_rows, data.val_batches(batch_size)):
            if not len(tgt_out):
                continue  # a last batch with fewer rows than ranks
            count += int((tgt_out != PAD_ID).sum())  # on the CPU copy: no device sync
            src, tgt_in, tgt_out = src.to(device), tgt_in.to(device), tgt_out.to(device)
            logits = model(src, tgt_in)
            keep = tgt_out != PAD_ID
            loss_sum += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                ignore_index=PAD_ID, reduction="sum")
            hits += ((logits.argmax(dim=-1) == tgt_out) & keep).sum()
    finally:
        model.train(was_training)
    totals = torch.stack([loss_sum, hits, torch.tensor(float(count), dtype=torch.float64, device=device)])
    if dist.active():
        totals = dist.all_reduce_sum(totals.to(dist.collective_device()))
    loss_sum, hits, count = totals.tolist()
    return loss_sum / count, hits / count


def decode_examples(model: TranslationTransformer, data: TranslationData,
                    n: int = 3) -> list[tuple[str, str, str]]:
    """(source, reference, hypothesis) for the first `n` validation pairs, greedily decoded."""
    device = next(model.parameters()).device
    batch = next(data.val_batches(n))
    hyp = greedy_decode(model, batch.src.to(device)).cpu()
    return [(s, r, decode(h)) for (s, r), h in zip(data.val_pairs[:n], hyp)]
