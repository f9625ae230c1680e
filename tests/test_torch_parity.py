"""The model agrees with PyTorch's own Transformer modules given the same weights (float64).

PyTorch is an independent implementation of the same paper, so agreement over drawn
configurations (depths, widths, heads, padding, post-LN and pre-LN) is evidence that the
reference code is right, not merely self-consistent.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from properties.strategies import (
    gaussian,
    lengths_with_padding,
    model_configs,
    seeded_model,
    seeds,
)
from properties.tolerances import FLOAT64, FLOAT64_DEEP
from tests.torch_reference import copy_attention, torch_decoder, torch_encoder
from transformer import MultiHeadAttention, causal_mask, padding_mask_from_lengths
from transformer.attention import scaled_dot_product_attention

# Positions are added to the embeddings only: torch's modules have no rotary or ALiBi attention.
CONFIGS = model_configs(positional=("sinusoidal",), max_layers=2)


@given(config=CONFIGS, batch=st.integers(1, 3), src_len=st.integers(1, 6), seed=seeds, data=st.data())
def test_encoder_matches_torch_transformer_encoder(config, batch, src_len, seed, data):
    """Our encoder stack equals nn.TransformerEncoder with copied weights at every real position."""
    model = seeded_model(config, seed)
    lengths = data.draw(lengths_with_padding(batch=batch, max_len=src_len))
    x = gaussian((batch, src_len, config.d_model), seed)
    allowed = padding_mask_from_lengths(lengths, src_len)  # (B, 1, 1, S)
    ours = model.encoder(x, allowed)
    theirs = torch_encoder(config, model.encoder)(x, src_key_padding_mask=~allowed[:, 0, 0, :])
    real = allowed[:, 0, 0, :]
    torch.testing.assert_close(ours[real], theirs[real], **FLOAT64_DEEP)


@given(config=CONFIGS, batch=st.integers(1, 3), src_len=st.integers(1, 6), tgt_len=st.integers(1, 6),
       seed=seeds, data=st.data())
def test_decoder_matches_torch_transformer_decoder(config, batch, src_len, tgt_len, seed, data):
    """Our decoder stack (causal self-attention, cross-attention with memory padding) equals nn.TransformerDecoder."""
    model = seeded_model(config, seed)
    lengths = data.draw(lengths_with_padding(batch=batch, max_len=src_len))
    y = gaussian((batch, tgt_len, config.d_model), seed + 1)
    memory = gaussian((batch, src_len, config.d_model), seed + 2)
    memory_allowed = padding_mask_from_lengths(lengths, src_len)
    ours = model.decoder(y, memory, causal_mask(tgt_len), memory_allowed)
    theirs = torch_decoder(config, model.decoder)(
        y, memory, tgt_mask=~causal_mask(tgt_len)[0, 0], memory_key_padding_mask=~memory_allowed[:, 0, 0, :])
    torch.testing.assert_close(ours, theirs, **FLOAT64_DEEP)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@given(config=CONFIGS, batch=st.integers(1, 3), src_len=st.integers(1, 6), tgt_len=st.integers(1, 6),
       seed=seeds, data=st.data())
def test_whole_model_matches_torch_nn_transformer(config, batch, src_len, tgt_len, seed, data):
    """Embeddings -> nn.Transformer (copied weights) -> our generator gives our model's log-probabilities."""
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, tgt_len), generator=g)
    lengths = data.draw(lengths_with_padding(batch=batch, max_len=src_len))
    src_real = padding_mask_from_lengths(lengths, src_len)[:, 0, 0, :]  # (B, S)
    reference = nn.Transformer(config.d_model, config.h, config.n_encoder_layers, config.n_decoder_layers,
                               config.d_ff, dropout=0.0, batch_first=True,
                               norm_first=config.norm_placement == "pre").to(torch.float64).eval()
    reference.encoder = torch_encoder(config, model.encoder)
    reference.decoder = torch_decoder(config, model.decoder)
    hidden = reference(model.src_embed(src), model.tgt_embed(tgt), tgt_mask=~causal_mask(tgt_len)[0, 0],
                       src_key_padding_mask=~src_real, memory_key_padding_mask=~src_real)
    torch.testing.assert_close(model(src, tgt, src_key_allowed=src_real), model.generator(hidden),
                               **FLOAT64_DEEP)


@given(h=st.integers(1, 4), d_k=st.integers(1, 4), batch=st.integers(1, 3), n_q=st.integers(1, 6),
       n_k=st.integers(1, 6), causal=st.booleans(), seed=seeds, data=st.data())
def test_multi_head_attention_matches_torch_multihead_attention(h, d_k, batch, n_q, n_k, causal, seed, data):
    """Our multi-head attention and its weights equal nn.MultiheadAttention (True = blocked there)."""
    d_model = h * d_k
    torch.manual_seed(seed)
    ours = MultiHeadAttention(d_model, h).to(torch.float64)
    theirs = nn.MultiheadAttention(d_model, h, batch_first=True).to(torch.float64)
    copy_attention(ours, theirs)
    q, kv = gaussian((batch, n_q, d_model), seed), gaussian((batch, n_k, d_model), seed + 1)
    lengths = data.draw(lengths_with_padding(batch=batch, max_len=n_k))
    allowed = padding_mask_from_lengths(lengths, n_k)
    if causal:
        allowed = allowed & causal_mask(n_q, n_k, offset=n_k - n_q)
    out = ours(q, kv, kv, allowed)
    # nn.MultiheadAttention takes a (B * H, S_q, S_k) mask of blocked positions.
    blocked = (~allowed).expand(batch, h, n_q, n_k).reshape(batch * h, n_q, n_k)
    expected, expected_weights = theirs(q, kv, kv, attn_mask=blocked, average_attn_weights=False)
    rows_alive = allowed.expand(batch, h, n_q, n_k).any(-1)  # torch gives NaN on fully masked rows (#41508)
    torch.testing.assert_close(ours.last_weights[rows_alive], expected_weights[rows_alive],
                               **FLOAT64)
    alive_queries = rows_alive.all(1)  # (B, S_q)
    torch.testing.assert_close(out[alive_queries], expected[alive_queries], **FLOAT64)


@given(batch=st.integers(1, 3), heads=st.integers(1, 3), n_q=st.integers(1, 6), n_k=st.integers(1, 6),
       d_k=st.integers(1, 8), seed=seeds, data=st.data())
def test_attention_matches_torch_scaled_dot_product_attention(batch, heads, n_q, n_k, d_k, seed, data):
    """Explicit matmul-scale-mask-softmax-matmul equals F.scaled_dot_product_attention with a boolean mask."""
    q = gaussian((batch, heads, n_q, d_k), seed)
    k, v = gaussian((batch, heads, n_k, d_k), seed + 1), gaussian((batch, heads, n_k, d_k), seed + 2)
    lengths = data.draw(lengths_with_padding(batch=batch, max_len=n_k))
    allowed = padding_mask_from_lengths(lengths, n_k) & causal_mask(n_q, n_k, offset=max(n_k - n_q, 0))
    allowed = allowed | (torch.arange(n_k) == 0)  # keep a key per row: torch returns NaN for fully masked rows
    ours, _ = scaled_dot_product_attention(q, k, v, allowed)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=allowed),
                               **FLOAT64)
