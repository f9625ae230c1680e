"""Masks and variable length: what padding and causal masks guarantee, in every dtype.

A padded key gets exactly zero weight, so outputs at real positions ignore what the padding holds and
how much of it there is, and a padded batch equals each sequence run alone; without a mask, zero
padding keys still take weight exp(0) / Z. A query with no visible key gets a finite output that reads
nothing, and the fill value must still mean "never" in float16 and bfloat16. A causal mask hides
exactly the future: position i sees positions 0..i. Tests taking ``attention_impl`` run against every
implementation of ``properties/conformance.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from properties.conformance import PROPERTIES, attention_property
from properties.strategies import (
    attention_cases,
    attention_layouts,
    gaussian,
    lengths_with_padding,
    live_rows,
    model_configs,
    seeded_model,
    seeds,
)
from properties.tolerances import FLOAT64, FLOAT64_DEEP
from transformer import Transformer, TransformerConfig
from transformer.attention import scaled_dot_product_attention
from transformer.masks import (
    causal_mask,
    combine,
    key_padding_mask,
    padding_mask_from_ids,
    padding_mask_from_lengths,
)

PADDING = ("padding", "padding+causal")
# (B, H, S_q, S_k, d) = (3, 2, 2, 4, 2), example 1 made only of padding: its query rows see no key.
PADDED_WITH_EMPTY_EXAMPLE = ((3, 2, 2, 4, 2), torch.tensor([4, 0, 2])[:, None, None, None] > torch.arange(4))


def qkv(layout, seed, dtype=torch.float64):
    B, H, n_q, n_k, d = layout
    return (gaussian((B, H, n_q, d), seed, dtype), gaussian((B, H, n_k, d), seed + 1, dtype),
            gaussian((B, H, n_k, d), seed + 2, dtype))


# ------------------------------------------------------------------------------------------------
# Every implementation: padding, empty rows, half precision, causality
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("mask.padding-zero-weight", kind="exact")
@attention_property("padding-zero-weight")
def test_padded_keys_get_exactly_zero_weight(attention_impl, case):
    """mask.padding-zero-weight: every masked key (padding, future, per-head) gets weight exactly 0.0,
    read from the outputs with one-hot values and, where the implementation returns them, its weights."""
    PROPERTIES["padding-zero-weight"].check(attention_impl, case)


@pytest.mark.claim("mask.padding-invariance", kind="exact")
@attention_property("padding-invariance")
def test_outputs_at_real_positions_ignore_padded_contents_and_extra_padding(attention_impl, case):
    """mask.padding-invariance: rewriting the keys and values at padded positions with large garbage,
    and appending more padded positions, leaves every output row that sees a real key unchanged."""
    PROPERTIES["padding-invariance"].check(attention_impl, case)


@pytest.mark.claim("mask.padding-invariance", kind="exact")
@given(case=attention_cases(kinds=PADDING), bad=st.sampled_from((math.nan, math.inf, -math.inf)), seed=seeds)
def test_non_finite_padded_keys_are_harmless_but_non_finite_padded_values_reach_every_row(case, bad, seed):
    """mask.padding-invariance, where "whatever the padded positions hold" stops: in the model's attention a NaN
    or inf in a padded key changes nothing (the mask overwrites its score before the softmax), but a NaN or inf
    in a padded value reaches every output row of its example although its weight is exactly 0, because
    0 x NaN = NaN and 0 x inf = NaN in the weighted sum."""
    (B, H, n_q, n_k, d), allowed = case
    q, k, v = qkv(case[0], seed)
    padded = ~allowed.any(dim=(1, 2))  # (B, S_k): keys no query of the example sees
    assume(bool(padded.any()))
    out, _ = scaled_dot_product_attention(q, k, v, allowed)
    where = padded[:, None, :, None]  # (B, 1, S_k, 1)
    live = live_rows(allowed, (B, H, n_q, n_k))
    out_k, _ = scaled_dot_product_attention(q, torch.where(where, bad, k), v, allowed)
    torch.testing.assert_close(out_k[live], out[live], **FLOAT64)
    out_v, _ = scaled_dot_product_attention(q, k, torch.where(where, bad, v), allowed)
    reached = padded.any(-1)[:, None, None] & live  # (B, H, S_q): live rows of examples with padding
    assert out_v[reached].isnan().all(), "a non-finite padded value should poison its example's rows (0 x NaN)"
    torch.testing.assert_close(out_v[live & ~reached], out[live & ~reached], **FLOAT64)


@pytest.mark.claim("mask.padding-invariance", kind="exact")
@given(pad_id=st.integers(1, 9), extra=st.integers(1, 3), seed=seeds)
def test_the_model_takes_padding_from_the_config_pad_id(pad_id, extra, seed):
    """Without explicit masks the model treats the ids equal to config.pad_id (here 1 to 9) as padding:
    appending them leaves the real positions' outputs unchanged, while appending id 0 (an ordinary token
    then) changes them."""
    config = TransformerConfig.tiny(vocab_size=10, pad_id=pad_id).with_(p_drop=0.0, attn_dropout=0.0)
    torch.manual_seed(seed)
    model = Transformer(config).double().eval()
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, 10, (1, 5), generator=g)
    src[src == pad_id] = (pad_id + 1) % 10
    with torch.no_grad():
        memory = model.encode(src)
        padded = model.encode(torch.cat([src, torch.full((1, extra), pad_id)], 1))[:, :5]
        with_zeros = model.encode(torch.cat([src, torch.zeros(1, extra, dtype=torch.long)], 1))[:, :5]
    torch.testing.assert_close(padded, memory, **FLOAT64_DEEP)
    assert (with_zeros - memory).abs().max() > 1e-6, "id 0 was treated as padding although the config names another"


@pytest.mark.claim("mask.fully-masked-row", kind="exact")
@attention_property("fully-masked-row")
def test_a_query_with_no_visible_key_gets_a_finite_output_that_reads_nothing(attention_impl, case):
    """mask.fully-masked-row: in float32, float16 and bfloat16 a query whose keys are all masked gets
    a finite output that does not depend on any key or value (it reads nothing), and every gradient
    is finite, the intermediate ones included (autograd's anomaly mode checks each backward step for
    NaN: a NaN that a later masked_fill happens to zero is still a NaN in the graph)."""
    PROPERTIES["fully-masked-row"].check(attention_impl, case)


@pytest.mark.claim("mask.low-precision-fill", kind="exact")
@attention_property("low-precision-fill")
def test_masked_weights_are_exactly_zero_in_half_precision(attention_impl, case):
    """mask.low-precision-fill: in float16 and bfloat16 masked weights are exactly 0 (never NaN), and
    the outputs match float64 attention on the same (rounded) inputs within the dtype's tolerance."""
    PROPERTIES["low-precision-fill"].check(attention_impl, case)


@pytest.mark.claim("mask.low-precision-fill", kind="counterexample")
def test_the_tutorial_fill_minus_1e9_does_not_fit_in_float16(measure):
    """mask.low-precision-fill, its condition: the fill must come from the dtype (finfo.min, or -inf
    with the weights zeroed afterwards). The literal -1e9 of many tutorials exceeds float16's range
    (65504): torch refuses the fill, and the rounded value is -inf (NaN on an empty row)."""
    scores = torch.zeros(1, 2, dtype=torch.float16)
    blocked = torch.tensor([[True, False]])
    with pytest.raises(RuntimeError, match="overflow"):
        scores.masked_fill(blocked, -1e9)
    assert torch.tensor(-1e9).to(torch.float16).item() == -math.inf
    fill = torch.finfo(torch.float16).min
    weights = torch.softmax(scores.masked_fill(blocked, fill), -1)
    measure("counterexample", {"fill": -1e9, "dtype": "float16", "float16_max": torch.finfo(torch.float16).max,
                               "as_float16": "-inf"}, finfo_min_weights=weights.tolist())
    assert weights.tolist() == [[0.0, 1.0]]


@pytest.mark.claim("mask.causal-future-invariance", kind="exact")
@attention_property("causal-future-invariance")
def test_causal_attention_ignores_the_future_and_sees_the_present(attention_impl, case):
    """mask.causal-future-invariance, attention level: with the lower-triangular mask (written here,
    not taken from transformer.masks) rewriting keys and values after position t leaves outputs up to
    t unchanged, while changing the value at t changes the output at t (the present is visible)."""
    PROPERTIES["causal-future-invariance"].check(attention_impl, case)


# ------------------------------------------------------------------------------------------------
# The mask helpers and the project's attention
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("mask.causal-future-invariance", "mask.padding-zero-weight", kind="exact")
@given(n_q=st.integers(1, 7), n_k=st.integers(1, 7), offset=st.integers(0, 4), batch=st.integers(1, 4),
       data=st.data())
def test_mask_helpers_follow_their_definitions(n_q, n_k, offset, batch, data):
    """causal_mask: query i (absolute position offset + i) sees key j iff j <= offset + i; padding
    masks: key j of example b is real iff j < length_b, shaped (B, 1, 1, S) so they broadcast over
    heads and queries; combine is the logical AND."""
    i, j = torch.arange(n_q)[:, None], torch.arange(n_k)[None, :]
    assert torch.equal(causal_mask(n_q, n_k, offset=offset), (j <= i + offset)[None, None])
    lengths = data.draw(lengths_with_padding(batch=batch, max_len=n_k, allow_empty=True), label="lengths")
    real = torch.arange(n_k)[None, :] < lengths[:, None]  # (B, S_k)
    assert torch.equal(padding_mask_from_lengths(lengths, n_k), real[:, None, None, :])
    assert torch.equal(key_padding_mask(real), real[:, None, None, :])
    ids = torch.where(real, 1 + torch.arange(n_k), 0)
    assert torch.equal(padding_mask_from_ids(ids, pad_id=0), real[:, None, None, :])
    both = combine(padding_mask_from_lengths(lengths, n_k), None, causal_mask(n_q, n_k, offset=offset))
    assert torch.equal(both, real[:, None, None, :] & (j <= i + offset))


@pytest.mark.claim("mask.padding-zero-weight", kind="exact")
@given(case=attention_cases(), seed=seeds)
def test_boolean_mask_equals_its_additive_form_and_float_masks_are_refused(case, seed):
    """Both mask dtypes: a boolean mask and its additive float form (0 / -inf, given as ``bias``) give
    the same attention on every row that sees a key; a float 0/1 tensor passed as ``allowed`` is
    refused (it would be read as +0/+1 scores, i.e. no mask at all)."""
    layout, allowed = case
    q, k, v = qkv(layout, seed)
    additive = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, -math.inf)
    by_bool, w_bool = scaled_dot_product_attention(q, k, v, allowed)
    by_bias, w_bias = scaled_dot_product_attention(q, k, v, bias=additive)
    live = live_rows(allowed, w_bool.shape)
    torch.testing.assert_close(by_bias[live], by_bool[live], **FLOAT64)
    torch.testing.assert_close(w_bias[live], w_bool[live], **FLOAT64)
    with pytest.raises(TypeError, match="torch.bool"):
        scaled_dot_product_attention(q, k, v, allowed.to(q.dtype))


@pytest.mark.claim("mask.unmasked-padding-leaks", kind="exact")
@given(layout=attention_layouts(), pad=st.integers(1, 3), seed=seeds)
def test_without_a_mask_zero_padding_keys_take_weight_exp0_over_z_and_move_outputs(layout, pad, seed):
    """mask.unmasked-padding-leaks: zero-vector padding keys score 0, so without a mask each takes
    weight exp(0) / Z with Z = sum_j exp(s_j) over real and padding keys, and the outputs move away
    from the masked ones (generic inputs: by far more than round-off)."""
    B, H, n_q, n_k, d = layout
    q, k, v = qkv(layout, seed)
    k_pad = torch.cat([k, torch.zeros(B, H, pad, d, dtype=k.dtype)], 2)
    v_pad = torch.cat([v, torch.zeros(B, H, pad, d, dtype=v.dtype)], 2)
    leaky, weights = scaled_dot_product_attention(q, k_pad, v_pad)
    real_scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    z = real_scores.exp().sum(-1, keepdim=True) + pad * math.exp(0.0)  # (B, H, S_q, 1)
    torch.testing.assert_close(weights[..., n_k:], (math.exp(0.0) / z).expand(B, H, n_q, pad), **FLOAT64)
    assert (weights[..., n_k:] > 0).all()
    real_only = (torch.arange(n_k + pad) < n_k)[None, None, None, :]  # (1, 1, 1, S_k + pad)
    masked, _ = scaled_dot_product_attention(q, k_pad, v_pad, real_only)
    assert ((leaky - masked).abs().amax(-1) > 1e-9).all(), "padding left some output unchanged"


# ------------------------------------------------------------------------------------------------
# The whole model: batches of different lengths, causal decoding
# ------------------------------------------------------------------------------------------------


@pytest.mark.claim("mask.batch-equals-individual", kind="exact")
@given(config=model_configs(max_layers=2), batch=st.integers(1, 3), src_len=st.integers(1, 6),
       tgt_len=st.integers(1, 6), extra=st.integers(0, 3), seed=seeds, data=st.data())
def test_padded_batch_equals_each_sequence_alone_and_padding_length_does_not_matter(
        config, batch, src_len, tgt_len, extra, seed, data):
    """mask.batch-equals-individual: sources and targets of different lengths, padded (to the longest
    plus ``extra``) and run together, give every sequence the log-probabilities it gets alone."""
    model = seeded_model(config, seed)
    src_lengths = data.draw(lengths_with_padding(batch=batch, max_len=src_len), label="src_lengths")
    tgt_lengths = data.draw(lengths_with_padding(batch=batch, max_len=tgt_len), label="tgt_lengths")
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len + extra), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, tgt_len + extra), generator=g)
    src_real = torch.arange(src_len + extra)[None] < src_lengths[:, None]  # (B, S)
    tgt_real = torch.arange(tgt_len + extra)[None] < tgt_lengths[:, None]  # (B, T)
    batched = model(src, tgt, src_key_allowed=src_real, tgt_key_allowed=tgt_real)  # (B, T, V)
    for b in range(batch):
        s, t = int(src_lengths[b]), int(tgt_lengths[b])
        alone = model(src[b:b + 1, :s], tgt[b:b + 1, :t])[0]
        torch.testing.assert_close(batched[b, :t], alone, **FLOAT64_DEEP)


@pytest.mark.claim("mask.causal-future-invariance", kind="exact")
@given(config=model_configs(max_layers=2), batch=st.integers(1, 3), length=st.integers(2, 6), seed=seeds,
       data=st.data())
def test_decoder_ignores_later_tokens_encoder_sees_them(config, batch, length, seed, data):
    """mask.causal-future-invariance, whole model: changing target tokens after t leaves the decoder's
    outputs up to t unchanged, and every decoder self-attention row puts zero weight on later keys and
    positive weight on the present one; changing the source token after t changes the encoder's
    output at t (no causal mask there)."""
    model = seeded_model(config, seed)
    t = data.draw(st.integers(0, length - 2), label="t")
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, length), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, length), generator=g)
    memory = model.encode(src)
    out = model.decode(tgt, memory)
    for layer in model.decoder.layers:
        w = layer.self_attn.last_weights  # (B, H, T, T)
        assert (w.triu(1) == 0).all(), "a decoder position attends to a later one"
        assert (w.diagonal(dim1=-2, dim2=-1) > 0).all(), "a decoder position cannot see itself"
    later = tgt.clone()
    later[:, t + 1:] = (tgt[:, t + 1:] + 1) % config.tgt_vocab_size
    torch.testing.assert_close(model.decode(later, memory)[:, : t + 1], out[:, : t + 1], **FLOAT64_DEEP)
    src2 = src.clone()
    src2[:, t + 1] = (src[:, t + 1] + 1) % config.src_vocab_size
    moved = (model.encode(src2)[:, t] - memory[:, t]).abs().amax(-1)  # (B,)
    assert (moved > 1e-9).all(), "the encoder's output at t ignored a later source token"
