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
