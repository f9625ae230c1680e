"""Hypothesis strategies for the conformance properties: layouts, masks, padded token batches.

Shapes are drawn first, then values; valid values are constructed, not filtered, so that a failure
shrinks to the smallest configuration that shows it. Tensor values come from a drawn seed
(``gaussian``), so a shrunk case is a handful of integers and a mask: short enough to print.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

seeds = st.integers(min_value=0, max_value=2**31 - 1)

LOW_PRECISION = (torch.float16, torch.bfloat16)  # the CPU runs every attention op in both
MASK_KINDS = ("padding", "causal", "padding+causal", "per-head")
PADDING = ("padding", "padding+causal")


def gaussian(shape, seed: int, dtype=torch.float64, scale: float = 1.0) -> torch.Tensor:
    """A reproducible standard-normal tensor (values come from the seed, shapes from hypothesis)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@st.composite
def lengths_with_padding(draw, *, batch: int, max_len: int, allow_empty: bool = False):
    """Per-example lengths in [1, max_len] (or [0, max_len]); the longest fills the padded length."""
    low = 0 if allow_empty else 1
    lengths = draw(st.lists(st.integers(low, max_len), min_size=batch, max_size=batch))
    if max(lengths) < max_len:
        lengths[draw(st.integers(0, batch - 1))] = max_len
    return torch.tensor(lengths)


@st.composite
def attention_layouts(draw, *, min_heads: int = 2, max_heads: int = 3, max_len: int = 6, max_d: int = 4,
                      self_attention: bool = False):
    """(B, H, S_q, S_k, d) with at least two heads, B != H, and key length S_k outside {B, H}.

    Distinct sizes make a batch/head/length mix-up change shapes or values instead of cancelling
    out; queries and keys have their own lengths unless ``self_attention``.
    """
    heads = draw(st.integers(min_heads, max_heads))
    batch = draw(st.sampled_from([b for b in range(1, 5) if b != heads]))
    lengths = [s for s in range(2, max_len + 1) if s not in (batch, heads)]
    n_k = draw(st.sampled_from(lengths))
    n_q = n_k if self_attention else draw(st.integers(1, max_len))
    return batch, heads, n_q, n_k, draw(st.integers(1, max_d))


@st.composite
def attention_masks(draw, *, batch: int, heads: int, n_q: int, n_k: int, kinds=MASK_KINDS,
                    fully_masked_row: bool = False):
    """A boolean ``allowed`` mask (True = may attend) of rank 4 that broadcasts to (B, H, S_q, S_k).

    "padding": per-example key lengths, (B, 1, 1, S_k); "causal": the S_q queries are the last S_q of
    S_k positions (offset S_k - S_q, or 0 when S_q > S_k), (1, 1, S_q, S_k); "padding+causal": both;
    "per-head": an arbitrary pattern per example, head and query, (B, H, S_q, S_k). Without
    ``fully_masked_row`` every query keeps at least one key; with it at least one query row has none
    (an example whose keys are all padding, or one blanked row).
    """
    from transformer.masks import causal_mask, padding_mask_from_lengths

    kind = draw(st.sampled_from(kinds))
    if kind == "per-head":
        bits = draw(st.lists(st.booleans(), min_size=batch * heads * n_q * n_k, max_size=batch * heads * n_q * n_k))
        allowed = torch.tensor(bits).reshape(batch, heads, n_q, n_k)
        allowed[..., draw(st.integers(0, n_k - 1))] = True  # one key per row stays visible
    else:
        lengths = draw(lengths_with_padding(batch=batch, max_len=n_k))
        allowed = padding_mask_from_lengths(lengths, n_k) if "padding" in kind else None
        if "causal" in kind:
            causal = causal_mask(n_q, n_k, offset=max(n_k - n_q, 0))  # key 0 is always visible
            allowed = causal if allowed is None else allowed & causal
    if fully_masked_row:
        if kind in PADDING and batch > 1:
            allowed = allowed.clone()
            allowed[draw(st.integers(0, batch - 1))] = False  # an example made only of padding
        else:
            allowed = allowed.expand(batch, heads, n_q, n_k).clone()
            allowed[draw(st.integers(0, batch - 1)), draw(st.integers(0, heads - 1)), draw(st.integers(0, n_q - 1))] = False
    return allowed


@st.composite
def attention_cases(draw, *, kinds=MASK_KINDS, fully_masked_row: bool = False, optional_mask: bool = False,
                    **layout):
    """(layout, allowed): ``attention_layouts(**layout)`` then a mask for it (or None, if
    ``optional_mask``). One value, so that a property can pin a case with ``@example``."""
    B, H, n_q, n_k, d = shape = draw(attention_layouts(**layout))
    masks = attention_masks(batch=B, heads=H, n_q=n_q, n_k=n_k, kinds=kinds, fully_masked_row=fully_masked_row)
    return shape, draw(st.none() | masks if optional_mask else masks)


def live_rows(allowed: torch.Tensor | None, shape) -> torch.Tensor:
    """(B, H, S_q) bool: query rows that may attend to at least one key."""
    if allowed is None:
        return torch.ones(shape[:-1], dtype=torch.bool)
    return allowed.expand(shape).any(-1)


@st.composite
def padded_ids(draw, vocab: int, *, batch: int | None = None, max_batch: int = 3, max_len: int = 6,
               min_len: int = 1):
    """{"ids": (B, S) token ids drawn one by one (they shrink to 0), "lengths": per-example real lengths,
    the longest filling S; the rest is padding at the end}."""
    batch = batch or draw(st.integers(1, max_batch))
    length = draw(st.integers(min_len, max_len))
    ids = draw(st.lists(st.lists(st.integers(0, vocab - 1), min_size=length, max_size=length),
                        min_size=batch, max_size=batch))
    lengths = draw(st.lists(st.integers(1, length), min_size=batch, max_size=batch))
    lengths[draw(st.integers(0, batch - 1))] = length
    return {"ids": ids, "lengths": lengths}
