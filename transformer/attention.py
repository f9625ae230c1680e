"""Scaled dot-product attention, multi-head attention with a key/value cache, additive attention.

Masks follow `transformer.masks`: boolean ``allowed``, True where a query may attend to a key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _check_attention_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if not (q.dim() == k.dim() == v.dim()) or q.dim() < 2:
        raise ValueError(
            f"q, k, v must have the same rank >= 2, got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same width d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same length, got {k.shape[-2]} and {v.shape[-2]}")


def check_mask(allowed: torch.Tensor, scores_shape: torch.Size) -> None:
    """A mask must be boolean, of the scores' rank, and broadcast to their shape without enlarging it.

    The equal-rank rule refuses a (B, S_k) padding mask given where (B, 1, 1, S_k) is meant: read
    against (B, H, S_q, S_k) it would silently broadcast over queries instead of keys.
    """
    if allowed.dtype != torch.bool:
        raise TypeError(f"attention mask must be torch.bool (True = may attend), got {allowed.dtype}")
    if allowed.dim() != len(scores_shape):
        raise ValueError(
            f"attention mask must have the scores' rank {len(scores_shape)} (shape {tuple(scores_shape)}), "
            f"got shape {tuple(allowed.shape)}"
        )
    try:
        broadcast = torch.broadcast_shapes(allowed.shape, scores_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != scores_shape:
        raise ValueError(
            f"attention mask of shape {tuple(allowed.shape)} does not broadcast to scores of shape {tuple(scores_shape)}"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V   (section 3.2.1, equation 1).

    Masked keys are filled with the dtype's most negative finite value (never overflows in
    float16/bfloat16, never -inf - -inf = NaN) and their weights are then set to exactly zero, so a
    query with no allowed key returns a zero vector with finite gradients.

    Shape: q (..., S_q, d_k), k (..., S_k, d_k), v (..., S_k, d_v), allowed/bias broadcast to
    (..., S_q, S_k) -> output (..., S_q, d_v), weights (..., S_q, S_k).
    """
    _check_attention_inputs(q, k, v)
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., S_q, S_k)
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        check_mask(allowed, scores.shape)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # (..., S_q, S_k)
    if allowed is not None:
        weights = weights.masked_fill(~allowed, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=training)
    return weights @ v, weights  # (..., S_q, d_v), (..., S_q, S_k)


@dataclass
class KVCache:
    """Keys and values of the positions seen so far, per layer, for incremental decoding.

    ``static`` caches (cross-attention) are filled once from the encoder output and reused.
    Shape: keys, values (B, H, S_seen, d_k).
    """

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    static: bool = False

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # k, v (B, H, S_new, d_k) -> all keys and values (B, H, S_seen + S_new, d_k)
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = torch.cat([self.keys, k], dim=2)
            self.values = torch.cat([self.values, v], dim=2)
        return self.keys, self.values


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    (Section 3.2.2.) Heads are split by reshape and transpose; d_k = d_model / h.
    ``qk_projection``: "separate" (paper), "shared" (W^K is W^Q, as in Reformer) or "none"
    (queries and keys are the inputs themselves; values and output keep their projections).
    ``rotary`` / ``alibi`` inject relative position into self-attention (see `embeddings`).
    After each call, ``last_weights`` holds the attention weights (B, H, S_q, S_k), detached.
    """

    def __init__(self, d_model: int, h: int, qk_projection: str = "separate", attn_dropout: float = 0.0,
                 rotary: nn.Module | None = None, alibi: nn.Module | None = None):
        super().__init__()
        if d_model % h != 0:
            raise ValueError(f"d_model={d_model} is not divisible by h={h} heads")
        self.d_model, self.h, self.d_k = d_model, h, d_model // h
        self.qk_projection = qk_projection
        self.attn_dropout = attn_dropout
        if qk_projection == "separate":
            self.w_q, self.w_k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        elif qk_projection == "shared":
            self.w_q = nn.Linear(d_model, d_model)
            self.w_k = self.w_q  # one module, one tensor: W^K is W^Q
        elif qk_projection == "none":
            self.w_q = self.w_k = nn.Identity()
        else:
            raise ValueError(f"unknown qk_projection {qk_projection!r}; expected separate, shared or none")
        self.w_v, self.w_o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.rotary, self.alibi = rotary, alibi
        self.last_weights: torch.Tensor | None = None

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, S, d_model) -> (B, H, S, d_k)
        B, S, _ = x.shape
        return x.view(B, S, self.h, self.d_k).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, H, S, d_k) -> (B, S, d_model)
        B, _, S, _ = x.shape
        return x.transpose(1, 2).reshape(B, S, self.d_model)

    def head_projections(self, i: int) -> dict[str, torch.Tensor]:
        """Head i's own slices: W_i^Q, W_i^K, W_i^V as (d_k, d_model) and W_i^O as (d_model, d_k)."""
        rows = slice(i * self.d_k, (i + 1) * self.d_k)
        eye = torch.eye(self.d_model, dtype=self.w_v.weight.dtype)
        w_q = eye if self.qk_projection == "none" else self.w_q.weight
        w_k = eye if self.qk_projection == "none" else self.w_k.weight
        return {"w_q": w_q[rows], "w_k": w_k[rows], "w_v": self.w_v.weight[rows], "w_o": self.w_o.weight[:, rows]}

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                allowed: torch.Tensor | None = None, cache: KVCache | None = None,
                query_offset: int = 0) -> torch.Tensor:
        # query (B, S_q, d_model), key/value (B, S_k, d_model), allowed -> (B, H, S_q, S_k)
        _check_model_input(query, self.d_model, "query")
        _check_model_input(key, self.d_model, "key")
        _check_model_input(value, self.d_model, "value")
        q = self.split_heads(self.w_q(query))  # (B, H, S_q, d_k)
        if cache is not None and cache.static and cache.keys is not None:
            k, v = cache.keys, cache.values  # cross-attention: memory projected once
        else:
            k = self.split_heads(self.w_k(key))  # (B, H, S_new, d_k)
            v = self.split_heads(self.w_v(value))
            if self.rotary is not None:
                k = self.rotary(k, query_offset + torch.arange(k.shape[2], device=k.device))
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H, S_k, d_k)
        q_positions = query_offset + torch.arange(q.shape[2], device=q.device)
        if self.rotary is not None:
            q = self.rotary(q, q_positions)
        bias = None
        if self.alibi is not None:
            bias = self.alibi(q_positions, torch.arange(k.shape[2], device=k.device))  # (H, S_q, S_k)
        out, weights = scaled_dot_product_attention(
            q, k, v, allowed, bias=bias, dropout_p=self.attn_dropout, training=self.training)
        self.last_weights = weights.detach()
        return self.w_o(self.merge_heads(out))  # (B, S_q, d_model)


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: score(q, k) = v^T tanh(W_q q + W_k k), then softmax and a weighted sum.

    It materialises an (B, S_q, S_k, d_a) intermediate, unlike dot-product attention.
    """

    def __init__(self, d_k: int, d_a: int):
        super().__init__()
        self.w_q = nn.Linear(d_k, d_a, bias=False)
        self.w_k = nn.Linear(d_k, d_a, bias=False)
        self.v = nn.Linear(d_a, 1, bias=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # q (B, S_q, d_k), k (B, S_k, d_k), v (B, S_k, d_v) -> (B, S_q, d_v), weights (B, S_q, S_k)
        _check_attention_inputs(q, k, v)
        hidden = torch.tanh(self.w_q(q)[:, :, None, :] + self.w_k(k)[:, None, :, :])  # (B, S_q, S_k, d_a)
        scores = self.v(hidden).squeeze(-1)  # (B, S_q, S_k)
        if allowed is not None:
            check_mask(allowed, scores.shape)
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if allowed is not None:
            weights = weights.masked_fill(~allowed, 0.0)
        return weights @ v, weights


def _check_model_input(x: torch.Tensor, d_model: int, name: str) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{name} must have shape (batch, seq, d_model={d_model}), got {tuple(x.shape)}")
