"""Hypothesis strategies for the whole suite, in one module, composed.

Shapes are drawn first, then values; valid values are constructed, not filtered (draw ``h`` and
``d_head``, then ``d_model = h * d_head``), so shrinking works bottom-up and failures shrink to the
smallest configuration that shows them.

Sections below are owned by different parts of the suite; add new strategies to the section you use.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

# --------------------------------------------------------------------------------------------------
# Core: sizes, seeds, tensors
# --------------------------------------------------------------------------------------------------

seeds = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def head_layouts(draw, *, min_heads: int = 1, max_heads: int = 4, max_d_head: int = 8):
    """(h, d_head, d_model) with d_model = h * d_head."""
    h = draw(st.integers(min_heads, max_heads))
    d_head = draw(st.integers(1, max_d_head))
    return h, d_head, h * d_head


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
def tiny_configs(draw, *, positional=("sinusoidal",), norm_placement=("post", "pre"), **fixed):
    """A small encoder-decoder config: 1-2 layers each, 1-3 heads of width 2-4, no dropout, no implicit pad id."""
    from transformer import TransformerConfig

    h = draw(st.integers(1, 3))
    d_k = draw(st.sampled_from([2, 4]))
    settings = dict(
        src_vocab_size=draw(st.integers(5, 13)),
        d_model=h * d_k,
        h=h,
        d_ff=draw(st.integers(2, 12)),
        n_encoder_layers=draw(st.integers(1, 2)),
        n_decoder_layers=draw(st.integers(1, 2)),
        p_drop=0.0,
        positional=draw(st.sampled_from(positional)),
        norm_placement=draw(st.sampled_from(norm_placement)),
        tying="none",
        pad_id=None,
        max_len=32,
    )
    settings["tgt_vocab_size"] = settings["src_vocab_size"]
    settings.update(fixed)
    return TransformerConfig(**settings)
