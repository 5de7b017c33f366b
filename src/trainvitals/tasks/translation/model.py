"""A pre-LayerNorm encoder-decoder transformer for byte-level translation, written out.

Not `nn.Transformer`: every block is a plain module in `encoder.layers` /
`decoder.layers`, so probes can hook each one (named "encoder.<i>" / "decoder.<i>").
A block's first argument is its residual stream, which is what a gain probe measures.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainvitals.errors import ConfigError, check_range, check_type
from trainvitals.tasks.translation.data import PAD_ID, VOCAB_SIZE

__all__ = ["TranslationModelConfig", "TranslationTransformer"]


@dataclass
class TranslationModelConfig:
    vocab_size: int = VOCAB_SIZE  # shared by source and target
    d_model: int = 128
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    d_ff: int = 0  # feed-forward width; 0 = 4 * d_model
    dropout: float = 0.0
    max_len: int = 128  # longest source or target sequence in tokens, BOS/EOS included
    label_smoothing: float = 0.0
    tie_embeddings: bool = True  # output head shares the token embedding matrix
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_encoder_layers",
                     "n_decoder_layers", "d_ff", "max_len"):
            check_type(name, getattr(self, name), int)
        for name in ("vocab_size", "d_model", "n_heads", "n_encoder_layers", "n_decoder_layers"):
            check_range(name, getattr(self, name), 1)
        if self.vocab_size <= PAD_ID + 2:
            raise ConfigError(f"vocab_size={self.vocab_size}: must hold PAD, BOS, EOS and tokens")
        check_range("d_ff", self.d_ff, 0)
        check_range("max_len", self.max_len, 2)
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: "
                              f"choose d_model a multiple of n_heads")
        check_range("dropout", self.dropout, 0, 1, hi_open=True)
        check_range("label_smoothing", self.label_smoothing, 0, 1, hi_open=True)
        check_type("tie_embeddings", self.tie_embeddings, bool)
        check_range("init_std", self.init_std, 0, lo_open=True)

    @property
    def ff_width(self) -> int:
        return self.d_ff or 4 * self.d_model


def _usable(mask: torch.Tensor | None) -> torch.Tensor | None:
    # a query with no key to attend (an all-PAD row) would give NaN; let it see every key:
    # its output is garbage but finite, and the loss ignores it
    if mask is None:
        return None
    return mask | ~mask.any(dim=-1, keepdim=True)


class Attention(nn.Module):
    """Multi-head attention; self-attention when `memory` is None."""

    def __init__(self, cfg: TranslationModelConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = cfg.n_heads, cfg.dropout
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """x (B, T, C), memory (B, S, C); mask (B, 1, T|1, S) bool, True = may attend."""
        B, T, C = x.shape
        src = x if memory is None else memory
        k, v = self.kv(src).split(C, dim=2)
        # (B, L, C) -> (B, heads, L, C/heads)
        q, k, v = (t.view(B, t.shape[1], self.n_heads, C // self.n_heads).transpose(1, 2)
                   for t in (self.q(x), k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


def _mlp(cfg: TranslationModelConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cfg.d_model, cfg.ff_width), nn.GELU(),
                         nn.Linear(cfg.ff_width, cfg.d_model), nn.Dropout(cfg.dropout))


class EncoderBlock(nn.Module):
    """x + self_attn(ln(x)), then + mlp(ln(x))."""

    def __init__(self, cfg: TranslationModelConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.mlp = _mlp(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask=mask))
        return x + self.mlp(self.ln2(x))


class DecoderBlock(nn.Module):
    """x + causal_self_attn(ln(x)), + cross_attn(ln(x), memory), + mlp(ln(x))."""

    def __init__(self, cfg: TranslationModelConfig) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attn, self.cross_attn = Attention(cfg), Attention(cfg)
        self.mlp = _mlp(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop(self.self_attn(self.ln1(x), mask=self_mask, causal=True))
        x = x + self.drop(self.cross_attn(self.ln2(x), memory, mask=memory_mask))
        return x + self.mlp(self.ln3(x))


class Encoder(nn.Module):
    def __init__(self, cfg: TranslationModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.n_encoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask=mask)
        return self.norm(x)


class Decoder(nn.Module):
    def __init__(self, cfg: TranslationModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_decoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None,
                memory_mask: torch.Tensor | None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, memory, self_mask=self_mask, memory_mask=memory_mask)
        return self.norm(x)


class TranslationTransformer(nn.Module):
    """Encoder-decoder over a shared vocabulary; PAD (id 0) is masked everywhere."""

    def __init__(self, cfg: TranslationModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.src_pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.tgt_pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=self.config.init_std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _embed(self, ids: torch.Tensor, pos: nn.Embedding, side: str) -> torch.Tensor:
        T = ids.shape[1]
        if T > self.config.max_len:
            raise ValueError(f"{side} length {T} exceeds max_len={self.config.max_len}")
        return self.drop(self.tok_emb(ids) + pos(torch.arange(T, device=ids.device)))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> memory (B, S, C) and its key mask (B, 1, 1, S), True = not PAD."""
        # masks are built even without PAD: checking for PAD would cost a host sync
        mask = (src != PAD_ID)[:, None, None, :]
        return self.encoder(self._embed(src, self.src_pos, "source"), _usable(mask)), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor,
               memory_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) -> logits (B, T, vocab), attending to an encoded source."""
        T = tgt_in.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt_in.device).tril()
        self_mask = _usable(causal & (tgt_in != PAD_ID)[:, None, None, :])
        x = self.decoder(self._embed(tgt_in, self.tgt_pos, "target"), memory,
                         self_mask, _usable(memory_mask))
        return self.head(x)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """src (B, S), tgt_in (B, T) int64 -> logits (B, T, vocab)."""
        memory, memory_mask = self.encode(src)
        return self.decode(tgt_in, memory, memory_mask)

    def loss(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over non-PAD target tokens, with config.label_smoothing."""
        return self.loss_of(self(src, tgt_in), tgt_out)

    def loss_of(self, logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """The loss of logits (B, T, vocab) against tgt_out (B, T)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                               ignore_index=PAD_ID, label_smoothing=self.config.label_smoothing)
