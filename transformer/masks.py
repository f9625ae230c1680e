"""Attention masks.

Convention (the one `torch.nn.functional.scaled_dot_product_attention` uses): a mask is a boolean
tensor named ``allowed`` that is True where a query MAY attend to a key and False where it may not.
Masks broadcast against attention scores of shape (B, H, S_q, S_k); the helpers below return
(B, 1, 1, S_k) for padding and (1, 1, S_q, S_k) for causality, so ``a & b`` combines them.

(`nn.MultiheadAttention` uses the opposite polarity: there True means "blocked". Convert at the
boundary with ``~allowed``.)
"""

from __future__ import annotations

import torch


def padding_mask_from_lengths(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """Keys at positions >= length are padding.

    Shape: lengths (B,) -> allowed (B, 1, 1, S) with S = max_len or max(lengths).
    """
    if lengths.dim() != 1 or lengths.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"lengths must be a 1-D integer tensor, got shape {tuple(lengths.shape)} and {lengths.dtype}")
    if (lengths < 0).any():
        raise ValueError("lengths must be non-negative")
    if max_len is None and lengths.numel() == 0:
        raise ValueError("no lengths to take the mask length from; pass max_len for an empty batch")
    S = int(lengths.max()) if max_len is None else max_len
    if (lengths > S).any():
        raise ValueError(f"a length exceeds max_len={S}")
    positions = torch.arange(S, device=lengths.device)  # (S,)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)


def key_padding_mask(key_allowed: torch.Tensor) -> torch.Tensor:
    """Lift a per-token padding mask to attention rank.

    Shape: key_allowed (B, S) bool, True at real tokens -> allowed (B, 1, 1, S).
    """
    if key_allowed.dtype != torch.bool:
        raise TypeError(f"padding mask must be torch.bool (True = real token), got {key_allowed.dtype}")
    if key_allowed.dim() != 2:
        raise ValueError(f"padding mask must have shape (batch, seq), got {tuple(key_allowed.shape)}")
    return key_allowed[:, None, None, :]


def padding_mask_from_ids(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Keys holding the pad token are padding.

    Shape: ids (B, S) -> allowed (B, 1, 1, S).
    """
    return key_padding_mask(ids != pad_id)


def causal_mask(n_queries: int, n_keys: int | None = None, offset: int = 0, device=None) -> torch.Tensor:
    """Query i (at absolute position offset + i) may attend to keys 0 .. offset + i, never later ones.

    With a key/value cache the queries are the last ``n_queries`` of ``n_keys`` positions,
    so offset = n_keys - n_queries.
    Shape: -> allowed (1, 1, S_q, S_k).
    """
    n_keys = n_queries if n_keys is None else n_keys
    for name, size in (("n_queries", n_queries), ("n_keys", n_keys)):
        if size < 0:
            raise ValueError(f"{name} must be >= 0, got {size}")
    query_positions = torch.arange(n_queries, device=device)[:, None] + offset  # (S_q, 1)
    key_positions = torch.arange(n_keys, device=device)[None, :]  # (1, S_k)
    return (key_positions <= query_positions)[None, None]  # (1, 1, S_q, S_k)


def combine(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """A key is allowed only if every mask allows it (None masks are ignored)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out
