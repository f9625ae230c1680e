"""Greedy decoding, two ways: recompute the whole prefix each step, or feed one token with a cache."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .model import Transformer


class Generated(NamedTuple):
    """Greedy output of rows that stop at EOS.

    ``tokens[b, :lengths[b]]`` is row b from its BOS up to and including its first EOS (the whole row
    if it never produced one); everything after that is the pad id.
    Shape: tokens (B, 1 + steps), lengths (B,).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_new_tokens: int, bos_id: int,
                  src_key_allowed: torch.Tensor | None = None, use_cache: bool = True, *,
                  eos_id: int | None = None, pad_id: int | None = None) -> torch.Tensor | Generated:
    """Generate up to ``max_new_tokens`` tokens after ``bos_id``, taking the arg-max at each step.

    Generation is sequential: step t needs the token chosen at step t - 1. Every token fed back is
    a real token (the target padding mask is all True), so a BOS or a generated token equal to
    ``config.pad_id`` is never read as padding; source padding is derived as in `Transformer.encode`.
    With ``eos_id``, a row that produces EOS is finished: its later tokens are ``pad_id`` (default
    ``config.pad_id``), and generation stops once every row has finished.
    Shape: src (B, S) -> tokens (B, 1 + max_new_tokens) starting with bos_id; with eos_id,
    `Generated` (tokens (B, 1 + steps), lengths (B,)) with steps <= max_new_tokens.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    pad_id = model.config.pad_id if pad_id is None else pad_id
    if eos_id is not None and pad_id is None:
        raise ValueError("eos_id needs a pad id to fill the rows that have finished: pass pad_id or set config.pad_id")
    src_key_allowed = model._key_allowed(src, src_key_allowed)
    memory = model.encode(src, src_key_allowed)  # (B, S, d_model)
    ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)  # (B, 1)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)  # (B,)
    cache = model.new_cache() if use_cache else None
    for _ in range(max_new_tokens):
        fresh = ys[:, -1:] if use_cache else ys  # (B, 1) with a cache, else the whole prefix (B, t)
        real = torch.ones_like(fresh, dtype=torch.bool)  # generated tokens are never padding
        states = model.decode(fresh, memory, src_key_allowed, real, cache=cache)  # (B, *, d_model)
        next_token = model.generator(states[:, -1:]).argmax(dim=-1)  # (B, 1)
        if eos_id is not None:
            next_token = next_token.masked_fill(finished[:, None], pad_id)
            finished = finished | (next_token[:, 0] == eos_id)
        ys = torch.cat([ys, next_token], dim=1)
        if eos_id is not None and finished.all():
            break
    return ys if eos_id is None else Generated(ys, _lengths_to_eos(ys, eos_id))


def _lengths_to_eos(tokens: torch.Tensor, eos_id: int) -> torch.Tensor:
    # tokens (B, T) starting with BOS -> (B,): up to and including the first EOS after BOS, else T
    is_eos = tokens[:, 1:] == eos_id  # (B, T - 1)
    first = is_eos.int().argmax(dim=1) + 2  # argmax returns the first maximum
    return torch.where(is_eos.any(dim=1), first, torch.full_like(first, tokens.shape[1]))
