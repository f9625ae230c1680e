"""Tests of the model's own machinery: shapes, decoding paths, training pieces, low-precision masking."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transformer import (
    AdditiveAttention,
    MultiHeadAttention,
    Transformer,
    TransformerConfig,
    greedy_decode,
    make_optimizer,
    noam_scheduler,
    padding_mask_from_ids,
    scaled_dot_product_attention,
    teacher_forcing_loss,
    teacher_forcing_pair,
)
from transformer.embeddings import InputEmbedding
from transformer.masks import combine
from transformer.tokenisers import train_wordpiece
from transformer.training import LabelSmoothingLoss, noam_rate

LOW_PRECISION = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_fully_masked_query_gets_zeros_and_finite_gradients(dtype):
    """A query with every key masked returns a zero vector and finite gradients, in every float dtype."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, generator=g).to(dtype).requires_grad_() for _ in range(3))
    allowed = torch.ones(2, 3, 3, dtype=torch.bool)
    allowed[0, 1, :] = False  # query 1 of example 0 sees nothing
    out, weights = scaled_dot_product_attention(q, k, v, allowed)
    out.float().sum().backward()
    assert torch.all(out[0, 1] == 0) and torch.all(weights[0, 1] == 0)
    for t in (out, q.grad, k.grad, v.grad):
        assert torch.isfinite(t).all(), f"non-finite values in {dtype}"


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_whole_model_with_an_all_padding_source_is_finite(dtype):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(vocab_size=7)).to(dtype)
    src = torch.tensor([[0, 0, 0], [3, 4, 0]])  # example 0 is all padding
    log_probs = model(src, torch.tensor([[1, 2], [2, 3]]))
    log_probs.float().sum().backward()
    assert torch.isfinite(log_probs).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_forward_shapes_and_log_probabilities():
    torch.manual_seed(0)
    config = TransformerConfig.tiny(vocab_size=9)
    out = Transformer(config)(torch.randint(1, 9, (2, 5)), torch.randint(1, 9, (2, 3)))
    assert out.shape == (2, 3, 9)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(2, 3))


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rope", "alibi", "none"])
@pytest.mark.parametrize("norm_placement", ["post", "pre"])
def test_greedy_decoding_with_and_without_cache_agree(positional, norm_placement):
    torch.manual_seed(1)
    config = TransformerConfig.tiny(vocab_size=9, positional=positional, norm_placement=norm_placement)
    model = Transformer(config).double().eval()
    src = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    with_cache = greedy_decode(model, src, 6, bos_id=1, use_cache=True)
    without = greedy_decode(model, src, 6, bos_id=1, use_cache=False)
    assert with_cache.shape == (2, 7) and torch.equal(with_cache, without)


def test_greedy_decoding_rejects_negative_lengths():
    model = Transformer(TransformerConfig.tiny())
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        greedy_decode(model, torch.tensor([[1, 2]]), -1, bos_id=1)


def test_cache_with_target_padding_matches_full_pass():
    torch.manual_seed(2)
    model = Transformer(TransformerConfig.tiny(vocab_size=9)).double().eval()
    src, tgt = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([[1, 2, 3, 0], [1, 4, 0, 0]])
    memory = model.encode(src)
    full = model.decode(tgt, memory, src=src)
    cache = model.new_cache()
    chunks = [model.decode(tgt[:, :3], memory, src=src, cache=cache), model.decode(tgt[:, 3:], memory, src=src, cache=cache)]
    torch.testing.assert_close(torch.cat(chunks, 1), full)


def test_shared_and_absent_query_key_projections():
    shared, none = MultiHeadAttention(8, 2, "shared"), MultiHeadAttention(8, 2, "none")
    assert shared.w_k is shared.w_q
    assert sum(p.numel() for p in shared.parameters()) == 3 * (64 + 8)
    assert sum(p.numel() for p in none.parameters()) == 2 * (64 + 8)
    heads = none.head_projections(1)
    torch.testing.assert_close(heads["w_q"], torch.eye(8)[4:])
    assert heads["w_o"].shape == (8, 4)


def test_additive_attention_weights_are_a_distribution_and_respect_masks():
    torch.manual_seed(0)
    attn = AdditiveAttention(d_k=4, d_a=6)
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    allowed = torch.ones(2, 3, 5, dtype=torch.bool)
    allowed[:, :, 3:] = False
    allowed[1, 2, :] = False
    out, weights = attn(q, k, k, allowed)
    assert out.shape == (2, 3, 4)
    assert torch.all(weights[..., 3:] == 0) and torch.all(weights[1, 2] == 0)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(3))


def test_bert_style_embedding_options():
    config = TransformerConfig.tiny(vocab_size=9, positional="learned", type_vocab_size=2, embedding_norm=True,
                                    scale_embedding=False, activation="gelu", layer_norm_eps=1e-12)
    embed = InputEmbedding(config, 9)
    ids = torch.tensor([[1, 2, 3]])
    x = embed(ids, token_type_ids=torch.tensor([[0, 1, 1]]))
    torch.testing.assert_close(x.mean(-1), torch.zeros(1, 3), atol=1e-6, rtol=0)
    assert not torch.allclose(x, embed(ids))  # token types change the input
    Transformer(config)(ids, ids)


def test_training_step_with_schedule_and_label_smoothing_reduces_loss():
    torch.manual_seed(0)
    config = TransformerConfig.tiny(vocab_size=7, warmup_steps=10)
    model = Transformer(config)
    optimizer = make_optimizer(model, config)
    scheduler = noam_scheduler(optimizer, config, factor=2.0)
    loss_fn = LabelSmoothingLoss(7, config.label_smoothing, pad_id=0)
    src, tgt = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6, 1, 2, 0]])
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = teacher_forcing_loss(model, src, tgt, loss_fn)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_label_smoothing_without_pad_id_spreads_over_all_others():
    dist = LabelSmoothingLoss(5, 0.2, pad_id=None).smoothed_targets(torch.tensor([2]))
    torch.testing.assert_close(dist, torch.tensor([[0.05, 0.05, 0.8, 0.05, 0.05]]))


def test_mask_helpers():
    assert combine(None, None) is None
    ids = torch.tensor([[4, 0]])
    assert padding_mask_from_ids(ids, 0).tolist() == [[[[True, False]]]]


def test_teacher_forcing_pair_needs_bos_and_a_token():
    with pytest.raises(ValueError, match="seq >= 2"):
        teacher_forcing_pair(torch.tensor([[1]]))


def test_presets_share_one_vocabulary_between_source_and_target_and_keep_overrides():
    for preset in (TransformerConfig.base, TransformerConfig.big, TransformerConfig.tiny):
        config = preset(123, n_encoder_layers=3)
        assert (config.src_vocab_size, config.tgt_vocab_size, config.n_encoder_layers) == (123, 123, 3), preset


def test_noam_scheduler_passes_its_factor_to_the_rate():
    config = TransformerConfig.tiny(warmup_steps=10)
    for factor in (0.5, 3.0):
        optimizer = make_optimizer(nn.Linear(2, 2), config)
        scheduler = noam_scheduler(optimizer, config, factor=factor)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(factor * noam_rate(1, config.d_model, 10))
        del scheduler


def test_teacher_forcing_loss_honours_an_explicit_source_mask():
    """The source mask given to teacher_forcing_loss reaches the model: hiding source tokens changes the loss."""
    torch.manual_seed(0)
    config = TransformerConfig.tiny(vocab_size=7, pad_id=None)
    model = Transformer(config).double().eval()
    loss_fn = LabelSmoothingLoss.from_config(config)
    src, tgt = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6, 1, 2, 3]])
    hidden = torch.tensor([[True, True, False, False]])
    with torch.no_grad():
        assert teacher_forcing_loss(model, src, tgt, loss_fn, hidden) != teacher_forcing_loss(model, src, tgt, loss_fn)


def test_label_smoothing_without_pad_id_counts_every_position():
    """pad_id=None: the loss is the mean over all positions of the cross-entropy with the smoothed targets."""
    loss_fn = LabelSmoothingLoss(5, 0.2, pad_id=None)
    g = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(2, 3, 5, generator=g, dtype=torch.float64), -1)
    target = torch.tensor([[0, 1, 4], [2, 0, 3]])
    expected = -(loss_fn.smoothed_targets(target.flatten(), torch.float64) * log_probs.reshape(6, 5)).sum(-1).mean()
    torch.testing.assert_close(loss_fn(log_probs, target), expected)


def test_label_smoothing_refuses_epsilon_one():
    with pytest.raises(ValueError, match="smoothing"):
        LabelSmoothingLoss(5, 1.0, pad_id=None)


def test_head_projections_of_a_float64_model_are_float64():
    for qk in ("separate", "none"):
        mha = MultiHeadAttention(8, 2, qk_projection=qk).double()
        assert {w.dtype for w in mha.head_projections(1).values()} == {torch.float64}, qk


def test_trained_wordpiece_keeps_berts_word_limit_and_its_prefix():
    """BERT's WordPiece default max_input_chars_per_word is 100; a chosen continuation prefix is used throughout."""
    assert train_wordpiece(["hug hugs pug"], 30).max_input_chars_per_word == 100
    model = train_wordpiece(["hug hugs pug"], 30, prefix="@@")
    assert any(t.startswith("@@") for t in model.vocab) and not any(t.startswith("##") for t in model.vocab)


def test_bert_names_with_the_task_model_prefix_map_like_bare_ones():
    """A checkpoint saved from a BERT task model prefixes every name with "bert."; the loader strips it."""
    from transformer.pretrained import bert_state_dict_to_ours

    t = torch.zeros(1)
    names = {"embeddings.word_embeddings.weight": t, "encoder.layer.3.output.dense.bias": t}
    assert bert_state_dict_to_ours({"bert." + k: v for k, v in names.items()}) == bert_state_dict_to_ours(names)


def test_additive_attention_scores_are_bahdanaus_without_biases():
    """Bahdanau et al. 2015, appendix A.1.2: e_ij = v^T tanh(W q_i + U k_j), three weight matrices and no bias."""
    torch.manual_seed(0)
    attn = AdditiveAttention(4, 6).double()
    assert {n for n, _ in attn.named_parameters()} == {"w_q.weight", "w_k.weight", "v.weight"}
    q, k = torch.randn(1, 2, 4, dtype=torch.float64), torch.randn(1, 3, 4, dtype=torch.float64)
    _, weights = attn(q, k, k)
    e = torch.tanh((q @ attn.w_q.weight.T)[:, :, None] + (k @ attn.w_k.weight.T)[:, None]) @ attn.v.weight[0]
    torch.testing.assert_close(weights, torch.softmax(e, -1))


def test_mean_pool_averages_the_real_tokens_then_normalises():
    from transformer.pretrained import mean_pool

    hidden = torch.tensor([[[3.0, 0.0], [1.0, 4.0], [100.0, 100.0]]], dtype=torch.float64)  # (1, 3, 2)
    pooled = mean_pool(hidden, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 2.0]], dtype=torch.float64) / math.sqrt(8))
    assert mean_pool(hidden, torch.zeros(1, 3, dtype=torch.bool)).abs().max() == 0  # nothing real: zeros


def test_out_of_range_target_ids_are_named_as_targets():
    model = Transformer(TransformerConfig.tiny(vocab_size=7))
    with pytest.raises(ValueError, match="target token ids out of range"):
        model.decode(torch.tensor([[9]]), model.encode(torch.tensor([[1, 2]])))


def test_bert_config_maps_every_field_of_a_bert_checkpoint_config():
    """A BERT config unlike MiniLM's (3 layers, 77 positions, no position_embedding_type: absolute by default)
    becomes an encoder-only, post-LN, unscaled, untied configuration of exactly that shape, without dropout and
    without a pad id (BERT's padding comes as an explicit mask)."""
    from transformer.pretrained import bert_config

    config = bert_config({"hidden_act": "gelu", "vocab_size": 50, "hidden_size": 12, "num_attention_heads": 3,
                          "intermediate_size": 20, "num_hidden_layers": 3, "layer_norm_eps": 1e-7,
                          "max_position_embeddings": 77, "type_vocab_size": 2})
    assert (config.src_vocab_size, config.tgt_vocab_size, config.d_model, config.h, config.d_ff) == (50, 50, 12, 3, 20)
    assert (config.n_encoder_layers, config.n_decoder_layers, config.max_len, config.layer_norm_eps) == (3, 0, 77, 1e-7)
    assert (config.norm_placement, config.positional, config.tying, config.activation) == ("post", "learned", "none", "gelu")
    assert config.scale_embedding is False and config.embedding_norm is True and config.pad_id is None
    assert config.p_drop == 0.0 and config.type_vocab_size == 2


def test_every_sub_module_takes_its_setting_from_the_config():
    """Attention dropout, activation, rotary base, norm eps and the embedding scale reach every module built
    from the config (decoder self- and cross-attention and the final norms included), not a default of theirs."""
    from transformer.embeddings import RotaryEmbedding
    from transformer.layers import PositionwiseFeedForward

    config = TransformerConfig.tiny(attn_dropout=0.25, activation="gelu", positional="rope", pe_base=100.0,
                                    layer_norm_eps=1e-3, norm_placement="pre", scale_embedding=False)
    model = Transformer(config)
    mha = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    assert len(mha) == 2 + 2 * 2 and {m.attn_dropout for m in mha} == {0.25}
    assert {m.activation for m in model.modules() if isinstance(m, PositionwiseFeedForward)} == {nn.functional.gelu}
    rotary = [m for m in model.modules() if isinstance(m, RotaryEmbedding)]
    assert rotary and {m.base for m in rotary} == {100.0}
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert model.encoder.final_norm is not None and model.decoder.final_norm is not None
    assert {m.eps for m in norms} == {1e-3}
    assert model.src_embed.token.scale is False and model.tgt_embed.token.scale is False


def test_attention_dropout_drops_in_training_mode_only():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(attn_dropout=0.5, p_drop=0.0)).double()
    src, tgt = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6, 7]])
    model.train()
    assert not torch.equal(model(src, tgt), model(src, tgt)), "attention dropout must drop weights in training"
    model.eval()
    assert torch.equal(model(src, tgt), model(src, tgt))


def test_alibi_decoder_without_a_cache_equals_one_chunk_through_a_fresh_cache():
    """Without a cache the decoder's positions start at 0, as they do for the first chunk of a new cache."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(positional="alibi", pad_id=None)).double().eval()
    src, tgt = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6, 7]])
    with torch.no_grad():
        memory = model.encode(src)
        torch.testing.assert_close(model.decode(tgt, memory), model.decode(tgt, memory, cache=model.new_cache()))


def test_padding_mask_from_lengths_defaults_to_the_longest_length():
    from transformer.masks import padding_mask_from_lengths

    allowed = padding_mask_from_lengths(torch.tensor([2, 3]))
    assert allowed.shape == (2, 1, 1, 3) and allowed[0, 0, 0].tolist() == [True, True, False]


@pytest.mark.parametrize("change", [{"d_model": 8.0}, {"d_ff": True}, {"pad_id": 11}])
def test_config_refuses_non_integer_sizes_and_a_pad_id_equal_to_the_vocabulary_size(change):
    with pytest.raises((ValueError, TypeError)):
        TransformerConfig.tiny(vocab_size=11).with_(**change)


def test_token_and_learned_position_tables_start_at_variance_one_over_d():
    """Both tables are drawn N(0, 1/d_model) after nn.Embedding's own N(0, 1) draw (replayed from the seed)."""
    from transformer.embeddings import LearnedPositionalEmbedding, TokenEmbedding

    for build in (lambda: TokenEmbedding(7, 16), lambda: LearnedPositionalEmbedding(7, 16)):
        torch.manual_seed(3)
        table = next(build().parameters()).detach()
        torch.manual_seed(3)
        torch.empty(7, 16).normal_()  # nn.Embedding.reset_parameters
        torch.testing.assert_close(table, torch.empty(7, 16).normal_(0.0, 16 ** -0.5), rtol=0, atol=0)


def test_bert_encoder_without_a_mask_attends_to_every_token():
    from transformer.pretrained import BertEncoder, bert_config

    config = bert_config({"hidden_act": "gelu", "vocab_size": 20, "hidden_size": 8, "num_attention_heads": 2,
                          "intermediate_size": 16, "num_hidden_layers": 2, "layer_norm_eps": 1e-12,
                          "max_position_embeddings": 16, "type_vocab_size": 2})
    torch.manual_seed(0)
    model = BertEncoder(config).double().eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids, torch.ones(1, 4, dtype=torch.bool)))


def test_decode_derives_the_source_padding_from_src_like_an_explicit_mask():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig.tiny(vocab_size=9, pad_id=0)).double().eval()
    src, tgt = torch.tensor([[3, 4, 0, 0]]), torch.tensor([[5, 6]])
    with torch.no_grad():
        memory = model.encode(src)
        explicit = model.decode(tgt, memory, src_key_allowed=src != 0)
        torch.testing.assert_close(model.decode(tgt, memory, src=src), explicit)
        assert not torch.allclose(model.decode(tgt, memory), explicit), "without a mask every memory position is read"


def test_paper_presets_default_to_the_shared_37000_token_vocabulary():
    """Section 5.1: a shared source-target vocabulary of about 37000 byte-pair tokens (English-German)."""
    for preset in (TransformerConfig.base, TransformerConfig.big):
        config = preset()
        assert config.src_vocab_size == config.tgt_vocab_size == 37000, preset


def test_attention_dropout_keeps_weights_scaled_by_one_over_one_minus_its_own_rate():
    """In training, every attention weight that survives is the eval weight divided by 1 - attn_dropout."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, attn_dropout=0.25).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        mha.eval()(x, x, x)
        kept = mha.last_weights
        mha.train()(x, x, x)
        dropped = mha.last_weights
    alive = dropped != 0
    assert alive.any() and not alive.all()
    torch.testing.assert_close(dropped[alive], kept[alive] / 0.75)
