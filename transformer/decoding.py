"""Greedy decoding, two ways: recompute the whole prefix each step, or feed one token with a cache."""

from __future__ import annotations

import torch

from .model import Transformer


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_new_tokens: int, bos_id: int,
                  src_key_allowed: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
    """Generate ``max_new_tokens`` tokens after ``bos_id``, taking the arg-max at each step.

    Generation is sequential: step t needs the token chosen at step t - 1.
    Shape: src (B, S) -> tokens (B, 1 + max_new_tokens), starting with bos_id.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    src_key_allowed = model._key_allowed(src, src_key_allowed)
    memory = model.encode(src, src_key_allowed)  # (B, S, d_model)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
    cache = model.new_cache() if use_cache else None
    for _ in range(max_new_tokens):
        fresh = ys[:, -1:] if use_cache else ys  # (B, 1) with a cache, else the whole prefix (B, t)
        states = model.decode(fresh, memory, src_key_allowed, cache=cache)  # (B, *, d_model)
        next_token = model.generator(states[:, -1:]).argmax(dim=-1)  # (B, 1)
        ys = torch.cat([ys, next_token], dim=1)
    return ys
