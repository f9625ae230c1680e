"""The encoder and decoder layers: sub-layers wrapped in residual connections and LayerNorm."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, MultiHeadAttention
from .config import TransformerConfig
from .embeddings import ALiBi, RotaryEmbedding

ACTIVATION_FUNCTIONS = {"relu": F.relu, "gelu": F.gelu}


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, the same weights at every position (section 3.3)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATION_FUNCTIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATION_FUNCTIONS)}")
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.activation = ACTIVATION_FUNCTIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, S, d_model) -> (B, S, d_model)
        return self.w_2(self.activation(self.w_1(x)))


class ResidualSublayer(nn.Module):
    """Residual connection around one sub-layer, with dropout on the sub-layer's output (section 5.4).

    post-LN (paper): LayerNorm(x + Dropout(Sublayer(x)))
    pre-LN:          x + Dropout(Sublayer(LayerNorm(x)))   (keeps an un-normalised identity path)
    """

    def __init__(self, d_model: int, p_drop: float, norm_placement: str, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(p_drop)
        self.pre_norm = norm_placement == "pre"

    def forward(self, x: torch.Tensor, sublayer) -> torch.Tensor:
        # x (B, S, d_model) -> (B, S, d_model)
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


def self_attention(config: TransformerConfig) -> MultiHeadAttention:
    """A self-attention module carrying the relative-position variant the config asks for."""
    rotary = RotaryEmbedding(config.d_k, config.pe_base) if config.positional == "rope" else None
    alibi = ALiBi(config.h) if config.positional == "alibi" else None
    return MultiHeadAttention(config.d_model, config.h, config.qk_projection, config.attn_dropout, rotary, alibi)


class EncoderLayer(nn.Module):
    """Self-attention, add & norm, feed-forward, add & norm (section 3.1)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = self_attention(config)
        self.feed_forward = PositionwiseFeedForward(config.d_model, config.d_ff, config.activation)
        args = (config.d_model, config.p_drop, config.norm_placement, config.layer_norm_eps)
        self.attn_block, self.ff_block = ResidualSublayer(*args), ResidualSublayer(*args)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        # x (B, S, d_model), allowed (B, 1, 1, S) -> (B, S, d_model)
        x = self.attn_block(x, lambda y: self.self_attn(y, y, y, allowed))
        return self.ff_block(x, self.feed_forward)


@dataclass
class LayerCache:
    """One decoder layer's caches: its own past keys/values and the projected encoder memory."""

    self_attn: KVCache = field(default_factory=KVCache)
    cross_attn: KVCache = field(default_factory=lambda: KVCache(static=True))


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, feed-forward; each add & norm."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.self_attn = self_attention(config)
        self.cross_attn = MultiHeadAttention(config.d_model, config.h, config.qk_projection, config.attn_dropout)
        self.feed_forward = PositionwiseFeedForward(config.d_model, config.d_ff, config.activation)
        args = (config.d_model, config.p_drop, config.norm_placement, config.layer_norm_eps)
        self.self_block, self.cross_block, self.ff_block = (ResidualSublayer(*args) for _ in range(3))

    def forward(self, y: torch.Tensor, memory: torch.Tensor, self_allowed: torch.Tensor | None,
                memory_allowed: torch.Tensor | None, cache: LayerCache | None = None,
                offset: int = 0) -> torch.Tensor:
        # y (B, T, d_model), memory (B, S, d_model), self_allowed (B|1, 1, T, T_seen), memory_allowed (B, 1, 1, S)
        self_cache, cross_cache = (cache.self_attn, cache.cross_attn) if cache is not None else (None, None)
        y = self.self_block(y, lambda z: self.self_attn(z, z, z, self_allowed, self_cache, offset))
        y = self.cross_block(y, lambda z: self.cross_attn(z, memory, memory, memory_allowed, cross_cache))
        return self.ff_block(y, self.feed_forward)
