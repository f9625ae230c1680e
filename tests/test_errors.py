"""Bad input gets a clear error naming the problem, never a silent wrong answer or a NaN."""

from __future__ import annotations

import pytest
import torch

from transformer import (
    MultiHeadAttention,
    RotaryEmbedding,
    Transformer,
    TransformerConfig,
    causal_mask,
    greedy_decode,
    key_padding_mask,
    noam_rate,
    padding_mask_from_lengths,
    scaled_dot_product_attention,
    sinusoidal_encoding,
)
from transformer.training import LabelSmoothingLoss


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(TransformerConfig.tiny(vocab_size=7, positional="learned", max_len=5)).eval()


def test_heads_must_divide_d_model_in_config():
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by h=4"):
        TransformerConfig.tiny(d_model=10, h=4)


def test_heads_must_divide_d_model_in_attention():
    with pytest.raises(ValueError, match=r"d_model=6 is not divisible by h=4"):
        MultiHeadAttention(6, 4)


@pytest.mark.parametrize("field, value", [("activation", "swish"), ("norm_placement", "sandwich"),
                                          ("positional", "random"), ("tying", "two-way"),
                                          ("qk_projection", "tied")])
def test_unknown_choices_are_named(field, value):
    with pytest.raises(ValueError, match=rf"unknown {field} '{value}'"):
        TransformerConfig.tiny(**{field: value})


def test_unknown_qk_projection_in_attention():
    with pytest.raises(ValueError, match="unknown qk_projection 'tied'"):
        MultiHeadAttention(4, 2, qk_projection="tied")


@pytest.mark.parametrize("field, value, message", [
    ("d_model", 0, "d_model must be a positive integer"),
    ("n_encoder_layers", -1, "n_encoder_layers must be >= 0"),
    ("p_drop", 1.0, r"p_drop must be in \[0, 1\)"),
    ("pad_id", 99, "pad_id=99 is outside the vocabulary"),
])
def test_out_of_range_settings_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig.tiny(**{field: value})


def test_three_way_tying_needs_a_shared_vocabulary():
    with pytest.raises(ValueError, match="three-way tying needs a shared vocabulary"):
        TransformerConfig(src_vocab_size=10, tgt_vocab_size=12, d_model=8, h=2, tying="three-way")


def test_attention_input_of_wrong_rank(model):
    attn = model.encoder.layers[0].self_attn
    with pytest.raises(ValueError, match=r"query must have shape \(batch, seq, d_model=8\), got \(3, 8\)"):
        attn(torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(3, 8))


def test_attention_input_of_wrong_width(model):
    attn = model.encoder.layers[0].self_attn
    with pytest.raises(ValueError, match=r"key must have shape \(batch, seq, d_model=8\), got \(1, 3, 6\)"):
        attn(torch.zeros(1, 3, 8), torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))


def test_queries_and_keys_of_different_width():
    with pytest.raises(ValueError, match="queries and keys need the same width d_k, got 4 and 3"):
        scaled_dot_product_attention(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(2, 3))


def test_keys_and_values_of_different_length():
    with pytest.raises(ValueError, match="keys and values need the same length, got 3 and 2"):
        scaled_dot_product_attention(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4))


def test_q_k_v_of_different_rank():
    with pytest.raises(ValueError, match="same rank"):
        scaled_dot_product_attention(torch.zeros(1, 2, 4), torch.zeros(3, 4), torch.zeros(3, 4))


def test_float_mask_is_refused():
    q = torch.zeros(1, 2, 4)
    with pytest.raises(TypeError, match="attention mask must be torch.bool"):
        scaled_dot_product_attention(q, q, q, allowed=torch.ones(1, 2, 2))


def test_mask_of_wrong_shape_is_refused():
    q = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match=r"mask of shape \(1, 3, 2\) does not broadcast to scores of shape \(1, 2, 2\)"):
        scaled_dot_product_attention(q, q, q, allowed=torch.ones(1, 3, 2, dtype=torch.bool))


def test_padding_mask_of_the_wrong_rank_is_refused_not_broadcast_over_queries(model):
    """A (B, S_k) mask against (B, H, S_q, S_k) scores would broadcast over queries; it is an error."""
    attn = model.encoder.layers[0].self_attn
    x = torch.zeros(2, 2, 8)
    with pytest.raises(ValueError, match=r"must have the scores' rank 4"):
        attn(x, x, x, torch.ones(2, 2, dtype=torch.bool))


def test_model_padding_mask_dtype_and_shape(model):
    src, tgt = torch.ones(2, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.long)
    with pytest.raises(TypeError, match="padding mask must be torch.bool"):
        model(src, tgt, src_key_allowed=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"padding mask shape \(2, 4\) != token ids shape \(2, 3\)"):
        model(src, tgt, src_key_allowed=torch.ones(2, 4, dtype=torch.bool))


def test_key_padding_mask_checks():
    with pytest.raises(TypeError, match="padding mask must be torch.bool"):
        key_padding_mask(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"padding mask must have shape \(batch, seq\)"):
        key_padding_mask(torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("bad, message", [(-1, r"found ids in \[-1, 3\]"),
                                          (7, r"found ids in \[2, 7\] but the vocabulary has 7")])
def test_token_ids_out_of_range(model, bad, message):
    src = torch.tensor([[1, 2, 3]])
    src[0, 0] = bad
    with pytest.raises(ValueError, match=message):
        model(src, torch.tensor([[1, 2]]))


def test_token_ids_must_be_integers(model):
    with pytest.raises(TypeError, match="source token ids must be an integer tensor"):
        model.encode(torch.ones(1, 3))


def test_token_ids_must_be_two_dimensional(model):
    with pytest.raises(ValueError, match=r"src and tgt must be \(batch, seq\)"):
        model(torch.ones(3, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))


@pytest.mark.parametrize("src_shape,tgt_shape", [((2, 3), (1, 2)), ((1, 3), (1,)), ((3,), (3, 2))])
def test_source_and_target_need_the_same_batch_and_two_dimensions(model, src_shape, tgt_shape):
    with pytest.raises(ValueError, match=r"src and tgt must be \(batch, seq\) with the same batch"):
        model(torch.ones(src_shape, dtype=torch.long), torch.ones(tgt_shape, dtype=torch.long))


def test_sequence_longer_than_the_learned_position_table(model):
    with pytest.raises(ValueError, match=r"position 5 is past the learned position table \(max_len=5\)"):
        model.encode(torch.ones(1, 6, dtype=torch.long))


def test_lengths_must_be_integer_and_in_range():
    with pytest.raises(ValueError, match="lengths must be a 1-D integer tensor"):
        padding_mask_from_lengths(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="non-negative"):
        padding_mask_from_lengths(torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="exceeds max_len=2"):
        padding_mask_from_lengths(torch.tensor([3, 2]), max_len=2)


def test_odd_widths_for_sinusoids_and_rotations():
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_encoding(torch.arange(3), 5)
    with pytest.raises(ValueError, match="even per-head width"):
        RotaryEmbedding(3)


def test_schedule_steps_count_from_one():
    with pytest.raises(ValueError, match="steps count from 1"):
        noam_rate(0, 512, 4000)


def test_label_smoothing_checks():
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        LabelSmoothingLoss(5, smoothing=1.5, pad_id=None)
    with pytest.raises(ValueError, match="do not match target"):
        LabelSmoothingLoss(5, pad_id=None)(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_causal_mask_shape():
    assert causal_mask(2, 5, offset=3).shape == (1, 1, 2, 5)


@pytest.mark.parametrize("field, value, message", [
    ("pe_base", 0.0, "pe_base must be a positive number"),
    ("pe_base", -10000.0, "pe_base must be a positive number"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be a positive number"),
    ("layer_norm_eps", -1e-5, "layer_norm_eps must be a positive number"),
    ("adam_eps", 0.0, "adam_eps must be a positive number"),
    ("adam_betas", (1.0, 0.98), r"adam_betas must both be in \[0, 1\), got \(1.0, 0.98\)"),
    ("adam_betas", (0.9, -0.1), r"adam_betas must both be in \[0, 1\)"),
    ("adam_betas", (0.9,), r"adam_betas must be a pair"),
])
def test_settings_that_would_give_nan_or_fail_later_in_torch_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig.tiny(**{field: value})


@pytest.mark.parametrize("positional, d_model, h, message", [
    ("sinusoidal", 9, 1, "sinusoidal positions need an even d_model, got d_model=9"),
    ("rope", 9, 1, r"rotary positions need an even per-head width, got d_k=9 \(d_model=9, h=1\)"),
    ("rope", 6, 2, r"rotary positions need an even per-head width, got d_k=3"),
])
def test_odd_widths_are_refused_when_the_config_is_built(positional, d_model, h, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig.tiny(d_model=d_model, h=h, positional=positional)


def test_odd_widths_are_fine_where_positions_do_not_pair_dimensions():
    for positional in ("learned", "alibi", "none"):
        TransformerConfig.tiny(d_model=9, h=1, positional=positional)


def test_lengths_of_an_empty_batch_give_no_mask_length():
    with pytest.raises(ValueError, match="no lengths to take the mask length from; pass max_len"):
        padding_mask_from_lengths(torch.tensor([], dtype=torch.long))
    assert padding_mask_from_lengths(torch.tensor([], dtype=torch.long), max_len=3).shape == (0, 1, 1, 3)


@pytest.mark.parametrize("args, message", [((-1,), "n_queries must be >= 0, got -1"),
                                           ((2, -3), "n_keys must be >= 0, got -3")])
def test_causal_mask_of_negative_size(args, message):
    with pytest.raises(ValueError, match=message):
        causal_mask(*args)


def test_attention_value_of_wrong_width(model):
    attn = model.encoder.layers[0].self_attn
    with pytest.raises(ValueError, match=r"value must have shape \(batch, seq, d_model=8\), got \(1, 3, 6\)"):
        attn(torch.zeros(1, 3, 8), torch.zeros(1, 3, 8), torch.zeros(1, 3, 6))


def test_an_empty_source_sequence_is_refused(model):
    empty = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"source sequence is empty \(shape \(2, 0\)\)"):
        model.encode(empty)
    with pytest.raises(ValueError, match="source sequence is empty"):
        model(empty, torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="source sequence is empty"):
        greedy_decode(model, empty, 3, bos_id=1)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_narrow_integer_token_ids_give_the_same_answer_as_long(model, dtype):
    src, tgt = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([[1, 6], [2, 0]])
    torch.testing.assert_close(model(src.to(dtype), tgt.to(dtype)), model(src, tgt), rtol=0, atol=0)
    torch.testing.assert_close(greedy_decode(model, src.to(dtype), 3, bos_id=1), greedy_decode(model, src, 3, bos_id=1))
