"""Architecture: what each part of an encoder-decoder layer does, and what it costs.

An encoder layer is self-attention then a position-wise feed-forward network (the same two-layer
network at every position), each wrapped as x + Sublayer(x) with a LayerNorm after (post-LN) or
before (pre-LN). The residual path keeps the identity in every Jacobian, so gradients and rank survive
deep stacks that collapse without it. LayerNorm normalises each token over its own features; BatchNorm
would mix the batch and the padding in. The decoder adds cross-attention, whose keys and values are the
final encoder output in every layer. Parameter and FLOP counts match the closed forms of
``proofs/closed_forms.py``.

Statistical properties test a floor on the probability of an event over random initialisations ("at
least 90% of them"): an exact binomial floor test (properties/stats.py) fails a correct model with
probability at most its share of the run's false-alarm budget, and fails a model where the event
happens in only half of the initialisations with the power recorded next to it.

"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from proofs.closed_forms import (
    PAPER_TABLE3_PARAMS,
    PAPER_VOCAB,
    attention_flops,
    crossover_length,
    ffn_flops,
    ffn_params,
    layernorm_params,
    mha_params,
    transformer_params_from_config,
)
from properties.stats import binomial_floor, clopper_pearson
from properties.strategies import (
    encoder_decoder_cases,
    gaussian,
    model_configs,
    padded_token_batches,
    seeded_model,
    seeds,
)
from properties.tolerances import (
    ALPHA_RANK_COLLAPSE,
    ALPHA_RESIDUAL_GRADIENT,
    FLOAT64,
    FLOAT64_DEEP,
)
from transformer import (
    EncoderLayer,
    MultiHeadAttention,
    PositionwiseFeedForward,
    Transformer,
    TransformerConfig,
    causal_mask,
    key_padding_mask,
)
from transformer.layers import ResidualSublayer


def _randomise_norms(module: nn.Module, seed: int) -> None:
    """Give every LayerNorm a random gain and bias, so that the affine part is exercised too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g, dtype=torch.float64))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g, dtype=torch.float64))


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """Per-token normalisation over features with biased variance, then the module's own gain and bias."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


# ---------------------------------------------------------------------------------------------------
# Structure and counts
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("arch.encoder-layer-structure", kind="exact")
@given(config=model_configs(positional=("none",)), batch=st.integers(1, 3), length=st.integers(1, 7), seed=seeds,
       data=st.data())
def test_encoder_layer_is_attention_add_norm_ffn_add_norm(config, batch, length, seed, data):
    """EncoderLayer(x) = LN2(h + FFN(h)), h = LN1(x + SelfAttn(x)) (post-LN; pre-LN: x + Sub(LN(x)) twice),
    with LN the per-token formula; the shape is kept."""
    torch.manual_seed(seed)
    layer = EncoderLayer(config).double().eval()
    _randomise_norms(layer, seed)
    x = gaussian((batch, length, config.d_model), seed)
    _, key_allowed = data.draw(padded_token_batches(vocab_size=2, batch=batch, length=length, seed=seed))
    allowed = key_padding_mask(key_allowed)
    attend = lambda z: layer.self_attn(z, z, z, allowed)  # noqa: E731
    n1, n2 = layer.attn_block.norm, layer.ff_block.norm
    if config.norm_placement == "post":
        h = _layer_norm(x + attend(x), n1)
        expected = _layer_norm(h + layer.feed_forward(h), n2)
    else:
        h = x + attend(_layer_norm(x, n1))
        expected = h + layer.feed_forward(_layer_norm(h, n2))
    out = layer(x, allowed)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, **FLOAT64_DEEP)


@pytest.mark.claim("arch.encoder-layer-structure", kind="exact")
@given(config=model_configs(), seed=seeds)
def test_stacked_layers_share_no_parameter_storage(config, seed):
    """The N encoder (and decoder) layers own disjoint parameter storage: no two layers share a tensor."""
    model = seeded_model(config, seed)
    for stack in (model.encoder.layers, model.decoder.layers):
        owners = {}
        for i, layer in enumerate(stack):
            for name, p in layer.named_parameters():
                assert owners.setdefault(p.data_ptr(), (i, name)) == (i, name), (
                    f"layer {i} {name} shares storage with layer {owners[p.data_ptr()]}")


@pytest.mark.claim("arch.param-count", kind="measured")
@given(config=model_configs(), tying=st.sampled_from(["none", "decoder", "three-way"]),
       qk=st.sampled_from(["separate", "shared", "none"]), types=st.integers(0, 2), embedding_norm=st.booleans())
def test_parameter_count_matches_the_closed_form(config, tying, qk, types, embedding_norm):
    """Counted parameters (shared tensors once) = the closed form, for the whole model and per component:
    MHA 4d^2 + 4d, FFN 2 d d_ff + d_ff + d, LayerNorm 2d."""
    config = config.with_(tying=tying, qk_projection=qk, type_vocab_size=types, embedding_norm=embedding_norm)
    model = Transformer(config)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731  (parameters() yields a shared tensor once)
    assert count(model) == transformer_params_from_config(config)
    layer, d = model.encoder.layers[0], config.d_model
    assert count(layer.self_attn) == mha_params(d, qk)
    assert count(layer.feed_forward) == ffn_params(d, config.d_ff)
    assert count(layer.attn_block.norm) == layernorm_params(d)


@pytest.mark.claim("arch.param-count", kind="measured")
@pytest.mark.parametrize("preset", ["base", "big"])
def test_paper_presets_match_table_3(preset, measure):
    """Base and big with a 37000-token shared vocabulary and three-way tying: within 5% of 65M and 213M."""
    with torch.device("meta"):  # counts need shapes, not values
        config = getattr(TransformerConfig, preset)(PAPER_VOCAB)
        model = Transformer(config)
    counted = sum(p.numel() for p in model.parameters())
    paper = PAPER_TABLE3_PARAMS[preset]
    measure("parameters", counted, params={"preset": preset}, closed_form=transformer_params_from_config(config), table_3=paper,
            relative_gap=(counted - paper) / paper, vocab=PAPER_VOCAB, tying=config.tying)
    assert counted == transformer_params_from_config(config)
    assert abs(counted - paper) <= 0.05 * paper, f"{preset}: {counted:,} vs Table 3's {paper:,}"


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.claim("arch.block-cost", kind="measured")
def test_counted_flops_match_8nd2_plus_4n2d_and_16nd2(measure):
    """FlopCounterMode on the model's self-attention and FFN (d_ff = 4d) at n in {d/2, d, 2d, 4d}:
    8nd^2 + 4n^2d and 16nd^2; attention costs more exactly when n > 2d; FFN holds twice the weights."""
    rows = []
    for d, h in ((16, 2), (32, 4), (64, 8)):
        torch.manual_seed(0)
        attention, ffn = MultiHeadAttention(d, h), PositionwiseFeedForward(d, 4 * d)
        for n in (d // 2, d, 2 * d, 4 * d):
            x = torch.randn(1, n, d)
            counted_attention, counted_ffn = _flops(lambda x=x, f=attention: f(x, x, x)), _flops(lambda x=x, f=ffn: f(x))
            rows.append(dict(n=n, d=d, h=h, attention=counted_attention, ffn=counted_ffn))
            assert counted_attention == attention_flops(n, d), rows[-1]
            assert counted_ffn == ffn_flops(n, d, 4 * d) == 16 * n * d * d, rows[-1]
            crossover = crossover_length(d)
            assert (counted_attention > counted_ffn) == (n > crossover), rows[-1]
            assert (counted_attention == counted_ffn) == (n == crossover), rows[-1]
        weights = lambda m: sum(p.numel() for name, p in m.named_parameters() if name.endswith("weight"))  # noqa: E731
        assert weights(ffn) == 2 * weights(attention)
    measure("flops", rows, closed_form="attention 8nd^2 + 4n^2 d, FFN 16nd^2, equal at n = 2d")


# ---------------------------------------------------------------------------------------------------
# Feed-forward and ReLU
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("arch.ffn-position-wise", kind="exact")
@given(d_model=st.integers(1, 16), d_ff=st.integers(1, 32), batch=st.integers(1, 3), length=st.integers(2, 7),
       activation=st.sampled_from(["relu", "gelu"]), j=st.integers(0, 6), seed=seeds)
def test_ffn_output_at_a_position_depends_only_on_that_position(d_model, d_ff, batch, length, activation, j, seed):
    """FFN(x)_i = max(0, x_i W1 + b1) W2 + b2 with the same weights at every i: position by position equals
    the batched call, and changing x_j changes no other position."""
    torch.manual_seed(seed)
    ffn = PositionwiseFeedForward(d_model, d_ff, activation).double()
    x = gaussian((batch, length, d_model), seed)
    out = ffn(x)
    one_by_one = torch.cat([ffn(x[:, i:i + 1]) for i in range(length)], dim=1)
    torch.testing.assert_close(out, one_by_one, **FLOAT64)
    act = torch.relu if activation == "relu" else F.gelu
    torch.testing.assert_close(out, act(x @ ffn.w_1.weight.T + ffn.w_1.bias) @ ffn.w_2.weight.T + ffn.w_2.bias, **FLOAT64)
    j %= length
    y = x.clone()
    y[:, j] += gaussian((batch, d_model), seed + 1)
    others = [i for i in range(length) if i != j]
    torch.testing.assert_close(ffn(y)[:, others], out[:, others], rtol=0, atol=0)


def _relu_through_ffn(d: int) -> PositionwiseFeedForward:
    """The model's FFN with W1 = W2 = I and zero biases: what is left is its activation."""
    ffn = PositionwiseFeedForward(d, d, "relu").double()
    with torch.no_grad():
        for linear in (ffn.w_1, ffn.w_2):
            linear.weight.copy_(torch.eye(d, dtype=torch.float64))
            linear.bias.zero_()
    return ffn


@pytest.mark.claim("arch.relu-properties", kind="exact")
@given(d=st.integers(1, 16), n=st.integers(1, 7), scale=st.floats(1.0, 1e6), seed=seeds)
def test_relu_gradient_is_one_or_zero_output_nonnegative_and_unbounded(d, n, scale, seed):
    """Through the model's FFN activation: d out / d in is exactly 1 where the input is positive and exactly 0
    where negative (dead); outputs are >= 0 (so their mean is > 0 unless all are 0); scaling positive
    inputs by c scales outputs by c (no upper bound)."""
    ffn = _relu_through_ffn(d)
    x = gaussian((1, n, d), seed).requires_grad_()
    out = ffn(x)
    out.sum().backward()
    assert torch.equal(x.grad, (x > 0).double()), "ReLU's gradient must be exactly 1 or 0"
    assert (out >= 0).all() and (out.mean() > 0) == (x > 0).any()
    with torch.no_grad():
        torch.testing.assert_close(ffn(scale * x.abs()), scale * x.abs(), **FLOAT64)


# ---------------------------------------------------------------------------------------------------
# Residual connections
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("arch.residual-gradient", kind="exact")
@given(d=st.integers(2, 6), n=st.integers(1, 3), seed=seeds)
def test_pre_ln_block_jacobian_is_identity_plus_the_sublayer_jacobian(d, n, seed):
    """d(x + F(LN x))/dx = I + J_{F o LN}: the residual adds exactly one identity to the Jacobian."""
    torch.manual_seed(seed)
    block = ResidualSublayer(d, 0.0, "pre", 1e-5).double()
    ffn = PositionwiseFeedForward(d, 2 * d).double()
    x = gaussian((1, n, d), seed)
    jacobian = torch.autograd.functional.jacobian
    with_residual = jacobian(lambda z: block(z, ffn), x).reshape(n * d, n * d)
    sublayer_only = jacobian(lambda z: ffn(block.norm(z)), x).reshape(n * d, n * d)
    torch.testing.assert_close(with_residual - sublayer_only, torch.eye(n * d, dtype=torch.float64), **FLOAT64)


class _WithoutResidual(nn.Module):
    """An encoder layer's own sub-modules and norms in the same order, without the two "x +" adds."""

    def __init__(self, layer: EncoderLayer):
        super().__init__()
        self.layer = layer

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        # y: (B, S, d_model)
        layer = self.layer
        if layer.attn_block.pre_norm:
            z = layer.attn_block.norm(y)
            return layer.feed_forward(layer.ff_block.norm(layer.self_attn(z, z, z)))
        y = layer.attn_block.norm(layer.self_attn(y, y, y))
        return layer.ff_block.norm(layer.feed_forward(y))


def _encoder_stacks(depth: int, seeds_: range, placement: str) -> list[list[EncoderLayer]]:
    """Seed s initialises its own stack of `depth` encoder layers (float64, eval mode)."""
    config = TransformerConfig.tiny(d_model=16, h=2, d_ff=64, norm_placement=placement)
    stacks = []
    for seed in seeds_:
        torch.manual_seed(seed)
        stacks.append([EncoderLayer(config).double().eval() for _ in range(depth)])
    return stacks


def _input_gradient_scales(stacks: list[list[EncoderLayer]], residual: bool) -> torch.Tensor:
    """||d<y, r>/dx|| / ||r|| per stack, stack s with its own input x and direction r drawn from seed s. The
    independent stacks run side by side (vmap over stacked parameters)."""
    x = torch.stack([gaussian((1, 8, 16), seed) for seed in range(len(stacks))]).requires_grad_()  # (seeds, 1, S, D)
    y = x
    for i in range(len(stacks[0])):
        layers = [stack[i] if residual else _WithoutResidual(stack[i]) for stack in stacks]
        params, buffers = stack_module_state(layers)
        y = vmap(lambda p, b, z, module=layers[0]: functional_call(module, (p, b), (z,)))(params, buffers, y)
    r = torch.stack([gaussian(tuple(y.shape[1:]), seed) for seed in range(len(stacks))])
    (y * r).sum().backward()  # stacks share nothing, so each slice of x.grad is its own stack's gradient
    return x.grad.flatten(1).norm(dim=1) / r.flatten(1).norm(dim=1)


RESIDUAL_SEEDS = 64  # initialisations per norm placement (see the power recorded with each decision)
RESIDUAL_ALTERNATIVE = 0.5  # the wrong alternative: the effect shows up in only half of the initialisations


def _check_residual_gradient(depth: int, n_seeds: int, alpha: float, measure) -> None:
    """Per norm placement, a floor test of P(kept with residuals, collapsed without) >= 0.9 against 0.5."""
    plan = binomial_floor(n_seeds, 0.9, RESIDUAL_ALTERNATIVE, alpha / 2)
    for placement in ("post", "pre"):
        stacks = _encoder_stacks(depth, range(n_seeds), placement)
        with_, without = (_input_gradient_scales(stacks, r) for r in (True, False))
        kept = int(((with_ >= 0.1) & (with_ <= 10) & (without < with_ / 10)).sum())
        params = {"placement": placement, "depth": depth}
        measure("fraction_kept_with_residual_collapsed_without", kept / n_seeds, params=params,
                interval=list(clopper_pearson(kept, n_seeds, plan.alpha)), alpha=plan.alpha, power=plan.power,
                alternative=f"the gradient is kept with and collapses without residuals in only "
                            f"{RESIDUAL_ALTERNATIVE:.0%} of initialisations",
                n=n_seeds, kept=kept, fails_below=plan.threshold, p_claim=0.9)
        measure("gradient_scale_with_residual", float(with_.median()), params=params,
                interval=[float(with_.min()), float(with_.max())], statistic="median over seeds; interval: min, max")
        measure("gradient_scale_without_residual", float(without.median()), params=params,
                interval=[float(without.min()), float(without.max())], statistic="median over seeds; interval: min, max")
        assert plan.passes(kept), (f"{placement}-LN at depth {depth}: {kept}/{n_seeds} kept the gradient, fewer than "
                                   f"{plan.threshold}: with {with_.tolist()}, without {without.tolist()}")


@pytest.mark.claim("arch.residual-gradient", kind="statistical")
def test_residuals_keep_input_gradients_that_collapse_without(measure):
    """24 encoder layers at init (post-LN and pre-LN, 64 seeds each): with residuals ||dL/dx|| / ||dL/dy|| stays
    in [0.1, 10]; without them (same sub-modules and norms) it falls below a tenth of that. Claim: this happens in
    at least 90% of initialisations for each placement; an exact binomial floor test per placement, each at half
    of ALPHA_RESIDUAL_GRADIENT, with its power against a rate of 50% recorded."""
    _check_residual_gradient(24, RESIDUAL_SEEDS, ALPHA_RESIDUAL_GRADIENT, measure)


@pytest.mark.slow
@pytest.mark.claim("arch.residual-gradient", kind="statistical")
def test_residuals_keep_input_gradients_that_collapse_without_at_48_layers(measure):
    """The same at 48 layers (post-LN drifts down with depth; outside the default run)."""
    _check_residual_gradient(48, RESIDUAL_SEEDS, ALPHA_RESIDUAL_GRADIENT, measure)


def _token_spread(y: torch.Tensor) -> float:
    """||Y - 1 mean(Y)|| / ||Y||: 0 when every token is the same vector (rank one, all information lost)."""
    return float((y - y.mean(dim=1, keepdim=True)).norm() / y.norm())


def _rank_collapse_trial(depth: int, seeds_: range):
    """Attention-only stacks at init: the model's pre-LN residual block around multi-head attention, and the
    same norm and attention without the residual add. Returns (spread with, spread without) per seed."""
    results = []
    for seed in seeds_:
        torch.manual_seed(seed)
        stack = [(ResidualSublayer(16, 0.0, "pre", 1e-5).double(), MultiHeadAttention(16, 2).double())
                 for _ in range(depth)]
        x = gaussian((1, 8, 16), seed)
        plain, residual = x, x
        with torch.no_grad():
            for block, attention in stack:
                z = block.norm(plain)
                plain = attention(z, z, z)
                residual = block(residual, lambda z, a=attention: a(z, z, z))
        results.append((_token_spread(residual), _token_spread(plain)))
    return results


@pytest.mark.claim("arch.residual-rank-collapse", kind="statistical")
@pytest.mark.parametrize("depth", [pytest.param(24), pytest.param(48, marks=pytest.mark.slow)])
def test_attention_stacks_collapse_to_rank_one_without_residuals(depth, measure):
    """Attention-only stacks at init (no FFN), 64 seeds: without residuals the tokens' spread around their mean
    falls below 1e-6 of their norm (rank one); with the model's residual block it stays above 0.05. Claim: this
    happens in at least 90% of initialisations; exact binomial floor test at ALPHA_RANK_COLLAPSE, its power
    against a rate of 50% recorded."""
    results = _rank_collapse_trial(depth, range(RESIDUAL_SEEDS))
    kept = sum(plain < 1e-6 and residual > 0.05 for residual, plain in results)
    plan = binomial_floor(len(results), 0.9, RESIDUAL_ALTERNATIVE, ALPHA_RANK_COLLAPSE)
    with_, without = (torch.tensor(x) for x in zip(*results))
    measure("fraction_collapsed_without_not_with", kept / len(results), params={"depth": depth},
            interval=list(clopper_pearson(kept, len(results), plan.alpha)), alpha=plan.alpha, power=plan.power,
            alternative=f"the stack collapses without and keeps its spread with residuals in only "
                        f"{RESIDUAL_ALTERNATIVE:.0%} of initialisations",
            n=len(results), kept=kept, fails_below=plan.threshold, p_claim=0.9)
    measure("spread_with_residual", float(with_.min()), params={"depth": depth}, statistic="smallest over seeds")
    measure("spread_without_residual", float(without.max()), params={"depth": depth}, statistic="largest over seeds")
    assert plan.passes(kept), f"{kept}/{len(results)} < {plan.threshold}: {results}"


# ---------------------------------------------------------------------------------------------------
# LayerNorm and BatchNorm
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("arch.layernorm-per-token", kind="exact")
@given(config=model_configs(), batch=st.integers(1, 3), length=st.integers(1, 7), seed=seeds)
def test_layernorm_normalises_each_token_over_its_features(config, batch, length, seed):
    """The model's norm (through a post-LN block with a zero sub-layer): before its affine part each token has
    mean 0 and biased variance v / (v + eps); a token's output ignores every other token and sample."""
    torch.manual_seed(seed)
    block = ResidualSublayer(config.d_model, 0.0, "post", config.layer_norm_eps).double()
    _randomise_norms(block, seed)
    norm = lambda z: block(z, torch.zeros_like)  # noqa: E731
    x = gaussian((batch, length, config.d_model), seed, scale=3.0) + 2.0
    standardised = (norm(x) - block.norm.bias) / block.norm.weight
    v = x.var(dim=-1, unbiased=False)
    torch.testing.assert_close(standardised.mean(dim=-1), torch.zeros_like(v), **FLOAT64)
    torch.testing.assert_close(standardised.var(dim=-1, unbiased=False), v / (v + config.layer_norm_eps), **FLOAT64)
    others = gaussian((batch, length, config.d_model), seed + 1, scale=10.0)
    others[0, 0] = x[0, 0]  # everything changes but token 0 of sample 0
    torch.testing.assert_close(norm(others)[0, 0], norm(x)[0, 0], **FLOAT64)
    torch.testing.assert_close(norm(x[:1, :1]), norm(x)[:1, :1], **FLOAT64)  # a batch of one token is fine


@pytest.mark.claim("arch.batchnorm-batch-dependence", kind="exact")
@given(d=st.integers(1, 16), batch=st.integers(3, 6), seed=seeds)
def test_batchnorm_depends_on_the_batch_and_degenerates_for_one_sample(d, batch, seed):
    """torch's BatchNorm1d in training mode: changing sample 1 changes sample 0's output (batches of 3 or more;
    with two samples each output is about +-1 whatever the values); a batch of one sample is refused, and a
    batch of identical samples is mapped to the bias alone; in eval mode it uses running statistics and is
    per-sample. The model's norm, in training mode, is per-sample throughout."""
    bn, ln = nn.BatchNorm1d(d).double().train(), ResidualSublayer(d, 0.0, "post", 1e-5).double().train()
    x = gaussian((batch, d), seed)
    y = x.clone()
    y[1] += 1 + gaussian((d,), seed + 1).abs()
    assert not torch.allclose(bn(x)[0], bn(y)[0]), "BatchNorm in training mode should see the other samples"
    same = lambda z: ln(z[:, None], torch.zeros_like)[:, 0]  # noqa: E731
    torch.testing.assert_close(same(x)[0], same(y)[0], **FLOAT64)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(x[:1])
    torch.testing.assert_close(bn(x[:1].repeat(batch, 1)), bn.bias.expand(batch, d).detach(), **FLOAT64)
    bn.eval()
    expected = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(bn(x), expected, **FLOAT64)
    torch.testing.assert_close(bn(x[:1]), bn(x)[:1], **FLOAT64)


@pytest.mark.claim("arch.batchnorm-variable-length", kind="exact")
@given(d=st.integers(2, 16), batch=st.integers(1, 3), length=st.integers(2, 7), extra=st.integers(1, 4),
       seed=seeds, data=st.data())
def test_batchnorm_statistics_depend_on_padding_layernorm_does_not(d, batch, length, extra, seed, data):
    """Normalising a padded batch of token states: BatchNorm's output at real tokens changes with how much
    padding there is and what it holds; the model's LayerNorm output at real tokens does not."""
    _, real = data.draw(padded_token_batches(vocab_size=2, batch=batch, length=length, seed=seed, allow_empty=False))
    x = gaussian((batch, length, d), seed)
    padded_more = torch.cat([x, gaussian((batch, extra, d), seed + 1, scale=5.0)], dim=1)  # (B, S + extra, D)
    padded_more[:, :length][~real] = gaussian((batch, length, d), seed + 2, scale=5.0)[~real]
    bn = nn.BatchNorm1d(d).double().train()
    by_bn = lambda z: bn(z.reshape(-1, d)).reshape(z.shape)  # noqa: E731  statistics over every (b, s) state
    ln = ResidualSublayer(d, 0.0, "post", 1e-5).double()
    by_ln = lambda z: ln(z, torch.zeros_like)  # noqa: E731
    torch.testing.assert_close(by_ln(padded_more)[:, :length][real], by_ln(x)[real], **FLOAT64)
    gap = (by_bn(padded_more)[:, :length][real] - by_bn(x)[real]).abs().max()
    assert gap > 1e-6, f"BatchNorm ignored the padding (gap {float(gap):.2e})"


@pytest.mark.claim("arch.norm-placement", kind="exact")
@given(config=model_configs(positional=("none",)), batch=st.integers(1, 3), length=st.integers(1, 7),
       scale=st.floats(0.01, 100.0), seed=seeds)
def test_pre_ln_keeps_an_unnormalised_identity_path_post_ln_does_not(config, batch, length, scale, seed):
    """With every sub-layer's output projection zeroed, a pre-LN layer returns its input unchanged (any scale),
    a post-LN layer returns it normalised; pre-LN stacks end in a final LayerNorm, post-LN stacks do not."""
    model = seeded_model(config, seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (MultiHeadAttention, PositionwiseFeedForward)):
                last = module.w_o if isinstance(module, MultiHeadAttention) else module.w_2
                last.weight.zero_()
                last.bias.zero_()
    x = scale * gaussian((batch, length, config.d_model), seed)
    memory = gaussian((batch, 3, config.d_model), seed + 1)
    enc_layer, dec_layer = model.encoder.layers[0], model.decoder.layers[0]
    enc_out, dec_out = enc_layer(x), dec_layer(x, memory, None, None)
    if config.norm_placement == "pre":
        assert torch.equal(enc_out, x) and torch.equal(dec_out, x), "pre-LN lost its identity path"
        assert model.encoder.final_norm is not None and model.decoder.final_norm is not None
    else:
        normalised = _layer_norm(_layer_norm(x, enc_layer.attn_block.norm), enc_layer.ff_block.norm)
        torch.testing.assert_close(enc_out, normalised, **FLOAT64)
        assert model.encoder.final_norm is None and model.decoder.final_norm is None


# ---------------------------------------------------------------------------------------------------
# Encoder-decoder wiring
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("arch.cross-attention", kind="exact")
@given(case=encoder_decoder_cases())
def test_cross_attention_reads_the_final_memory_in_every_layer_and_only_it_carries_the_source(case):
    """Every decoder layer's cross-attention gets queries from the decoder stream and keys = values = the final
    encoder output with the source padding mask; zeroing the cross-attention value projections makes the
    decoder's output independent of the source."""
    config, seed, src, src_allowed, tgt = case.config, case.seed, case.src, case.src_allowed, case.tgt
    model = seeded_model(config, seed)
    calls = []
    hooks = [layer.cross_attn.register_forward_pre_hook(lambda m, args: calls.append(args))
             for layer in model.decoder.layers]
    with torch.no_grad():
        memory = model.encode(src, src_allowed)
        out = model.decode(tgt, memory, src_allowed)
    for hook in hooks:
        hook.remove()
    assert len(calls) == config.n_decoder_layers
    for query, key, value, allowed, *_ in calls:
        assert query.shape[1] == tgt.shape[1] and torch.equal(key, memory) and torch.equal(value, memory)
        assert torch.equal(allowed, key_padding_mask(src_allowed))
    other_src = (src + 1) % config.src_vocab_size
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.cross_attn.w_v.weight.zero_()
            layer.cross_attn.w_v.bias.zero_()
        blind = lambda s: model.decode(tgt, model.encode(s, src_allowed), src_allowed)  # noqa: E731
        torch.testing.assert_close(blind(other_src), blind(src), rtol=0, atol=0)
    assert out.shape == (*tgt.shape, config.d_model)


@pytest.mark.claim("arch.cross-attention", kind="exact")
@given(case=encoder_decoder_cases())
def test_masked_memory_positions_have_no_effect_on_the_decoder(case):
    """Changing the encoder output at masked source positions, or the padded source tokens, changes nothing."""
    config, seed, src, src_allowed, tgt = case.config, case.seed, case.src, case.src_allowed, case.tgt
    model = seeded_model(config, seed)
    with torch.no_grad():
        memory = model.encode(src, src_allowed)
        out = model.decode(tgt, memory, src_allowed)
        noisy = memory.clone()
        noisy[~src_allowed] = gaussian(tuple(memory.shape), seed + 2, scale=10.0)[~src_allowed]
        torch.testing.assert_close(model.decode(tgt, noisy, src_allowed), out, **FLOAT64_DEEP)
        other_src = torch.where(src_allowed, src, (src + 1) % config.src_vocab_size)
        torch.testing.assert_close(model.decode(tgt, model.encode(other_src, src_allowed), src_allowed), out, **FLOAT64_DEEP)


@pytest.mark.claim("arch.decoder-vs-encoder-attention", kind="exact")
@given(config=model_configs(), batch=st.integers(1, 3), src_len=st.integers(1, 7), tgt_len=st.integers(1, 7),
       seed=seeds)
def test_decoder_self_attention_is_encoder_attention_plus_the_causal_mask(config, batch, src_len, tgt_len, seed):
    """An encoder layer's self-attention carrying the decoder's self-attention weights, called with the causal
    mask, reproduces the decoder's self-attention exactly; without the mask it agrees only at the last position."""
    model = seeded_model(config, seed)
    seen = {}
    layer = model.decoder.layers[0]
    hook = layer.self_attn.register_forward_hook(lambda m, args, out: seen.update(z=args[0], out=out))
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (batch, src_len), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (batch, tgt_len), generator=g)
    with torch.no_grad():
        model.decode(tgt, model.encode(src))
    hook.remove()
    encoder_style = EncoderLayer(config).double().eval().self_attn
    encoder_style.load_state_dict(layer.self_attn.state_dict())
    z = seen["z"]
    with torch.no_grad():
        torch.testing.assert_close(encoder_style(z, z, z, causal_mask(tgt_len)), seen["out"], **FLOAT64)
        torch.testing.assert_close(encoder_style(z, z, z)[:, -1], seen["out"][:, -1], **FLOAT64)
