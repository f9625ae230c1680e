"""Training: the learning-rate schedule, dropout (where, when, how scaled), the paper's presets, BERT masking.

The rate rises linearly for ``warmup`` steps, peaks there, and decays as 1/sqrt(step). Dropout acts in
training mode only; it zeroes each unit with probability p and scales the kept ones by 1/(1 - p), so
the expectation is unchanged and inference needs no rescaling, and it sits on each sub-layer's output
before the residual add and on the embedding sums. The presets carry the paper's sizes and settings,
label smoothing included. Masking a key does not hide a token from its own position, which the
residual carries: hence BERT's [MASK] token. Dropout sites are found by behaviour (a module whose
output changes when it is run again on the same input in training mode), never by reading the
configuration back.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, note
from hypothesis import strategies as st
from torch import nn

from proofs.closed_forms import dropout_scale, noam_lr, noam_peak
from properties.stats import (
    binomial_equal_tails,
    clopper_pearson,
    hoeffding_half_width,
    separated_power,
)
from properties.strategies import model_configs, seeded_model, seeds
from properties.tolerances import ALPHA_DROPOUT, FLOAT64, FLOAT64_DEEP
from transformer import (
    InputEmbedding,
    LabelSmoothingLoss,
    MultiHeadAttention,
    PositionwiseFeedForward,
    Transformer,
    TransformerConfig,
    make_optimizer,
    noam_rate,
    noam_scheduler,
)

# ---------------------------------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("train.noam-schedule", kind="exact")
@given(d_model=st.integers(1, 4096), warmup=st.integers(1, 10_000), step=st.integers(1, 100_000),
       factor=st.floats(0.1, 10.0))
def test_noam_rate_rises_linearly_peaks_at_warmup_and_decays_as_inverse_sqrt(d_model, warmup, step, factor):
    """lr(step) equals the closed form; lr/step is constant up to warmup, lr * sqrt(step) constant after it,
    and the maximum, factor (d warmup)^-0.5, is reached at step = warmup."""
    rate = lambda s: noam_rate(s, d_model, warmup, factor)  # noqa: E731
    assert rate(step) == pytest.approx(noam_lr(step, d_model, warmup, factor), rel=FLOAT64.rtol)
    peak_step, peak = noam_peak(d_model, warmup, factor)
    assert peak_step == warmup and rate(warmup) == pytest.approx(peak, rel=FLOAT64.rtol)
    assert rate(step) <= rate(warmup) * (1 + FLOAT64.rtol)
    if step <= warmup:
        assert rate(step) / step == pytest.approx(rate(warmup) / warmup, rel=FLOAT64.rtol)  # linear rise
    else:
        assert rate(step) * math.sqrt(step) == pytest.approx(rate(warmup) * math.sqrt(warmup), rel=FLOAT64.rtol)


@pytest.mark.claim("train.noam-schedule", kind="exact")
@pytest.mark.parametrize("step", [1, 100, 3999, 4000, 4001, 16000, 100_000])
def test_noam_rate_is_the_papers_equation_3_at_its_own_constants(step):
    """Equation 3 of the paper, lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), at its base
    model's d_model = 512 and warmup_steps = 4000, with noam_rate's own default factor: the shape properties
    above hold for any constant factor, so only the values pin it."""
    published = 512 ** -0.5 * min(step ** -0.5, step * 4000 ** -1.5)
    assert noam_rate(step, 512, 4000) == pytest.approx(published, rel=FLOAT64.rtol, abs=0)


@pytest.mark.claim("train.noam-schedule", kind="exact")
@given(d_model=st.integers(1, 1024), warmup=st.integers(1, 40), steps=st.integers(1, 80))
def test_the_optimiser_follows_the_schedule_step_by_step(d_model, warmup, steps):
    """make_optimizer + noam_scheduler: the rate used by the k-th optimiser step is lr(k), steps from 1."""
    model = nn.Linear(2, 2)
    config = TransformerConfig.tiny(d_model=8, warmup_steps=warmup).with_(d_model=d_model, h=1, positional="none")  # any width
    optimizer = make_optimizer(model, config)
    scheduler = noam_scheduler(optimizer, config)
    for k in range(1, steps + 1):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(noam_lr(k, d_model, warmup), rel=FLOAT64.rtol), k
        optimizer.step()
        scheduler.step()


@pytest.mark.claim("train.noam-schedule", kind="exact")
def test_the_base_schedule_peaks_at_its_warmup_step_with_the_closed_form_rate(measure):
    """The base preset's rate over its first 5 x warmup steps: the largest rate is at step = warmup and equals
    (d_model warmup)^-0.5; the curve is recorded for the page."""
    config = TransformerConfig.base()
    warmup = config.warmup_steps
    steps = sorted({*range(1, 5 * warmup + 1, warmup // 40), warmup})
    rates = [noam_rate(k, config.d_model, warmup) for k in steps]
    peak_step, peak = noam_peak(config.d_model, warmup)
    measure("noam_rate_curve", {"step": steps, "lr": rates}, params={"d_model": config.d_model, "warmup": warmup})
    assert steps[rates.index(max(rates))] == peak_step == warmup
    assert max(rates) == pytest.approx(peak, rel=FLOAT64.rtol)


# ---------------------------------------------------------------------------------------------------
# Dropout
# ---------------------------------------------------------------------------------------------------

@pytest.mark.claim("train.dropout-train-vs-eval", kind="exact")
@given(config=model_configs(), p_drop=st.floats(0.05, 0.9), attn_dropout=st.floats(0.0, 0.9), seed=seeds)
def test_eval_mode_is_deterministic_and_equals_the_p0_model(config, p_drop, attn_dropout, seed):
    """In eval mode two calls agree bit for bit and equal the same weights with p = 0; in training mode the
    output changes from call to call."""
    torch.manual_seed(seed)
    model = Transformer(config.with_(p_drop=p_drop, attn_dropout=attn_dropout)).double()
    still = Transformer(config).double().eval()
    still.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (2, 7), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (2, 7), generator=g)
    model.eval()
    first = model(src, tgt)
    assert torch.equal(first, model(src, tgt)), "eval mode must be deterministic"
    torch.testing.assert_close(first, still(src, tgt), **FLOAT64)
    model.train()
    assert not torch.equal(model(src, tgt), model(src, tgt)), "training mode should drop something"


@pytest.mark.claim("train.dropout-expectation", kind="statistical")
@pytest.mark.parametrize("p", [0.1, 0.3])
def test_inverted_dropout_keeps_the_expectation(p, measure):
    """The model's embedding dropout in training mode: each entry becomes 0 or (eval value) / (1 - p), exactly;
    the share of zeros is p (exact binomial test) and the mean of train/eval ratios is 1 (Hoeffding bound
    for values in [0, 1/(1-p)]). Four decisions over the two rates, ALPHA_DROPOUT / 4 each."""
    alpha = ALPHA_DROPOUT / 4
    config = TransformerConfig.tiny(vocab_size=50, d_model=256, h=1, p_drop=p, pad_id=None)
    torch.manual_seed(0)
    embed = InputEmbedding(config, 50).double()
    ids = torch.randint(0, 50, (16, 256))
    with torch.no_grad():
        kept_value = embed.eval()(ids)  # (B, S, D), no dropout
    with torch.no_grad():
        ratio = (embed.train()(ids) / kept_value).flatten()
    n, scale = ratio.numel(), dropout_scale(p)
    zero = ratio == 0
    torch.testing.assert_close(ratio[~zero], torch.full_like(ratio[~zero], scale), **FLOAT64)
    dropped = int(zero.sum())
    a, b, power = binomial_equal_tails(n, p, alpha, p + 0.01)  # two-sided exact test, power against p + 0.01
    half_width = hoeffding_half_width(n, alpha, value_range=scale)
    mean = float(ratio.detach().mean())
    measure("dropped_fraction", dropped / n, params={"p": p}, interval=list(clopper_pearson(dropped, n, alpha)),
            alpha=alpha, power=power, alternative=f"a drop rate of p + 0.01 = {p + 0.01:.2f}", n=n, accepted=[a, b])
    measure("mean_train_over_eval", mean, params={"p": p}, interval=[mean - half_width, mean + half_width], alpha=alpha,
            power=separated_power(1.0, 1 - p, half_width, half_width * (1 - p), alpha),
            alternative=f"no rescaling of the kept units: mean 1 - p = {1 - p:.1f}", n=n, expected=1.0, kept_scale=scale)
    assert a <= dropped <= b, f"dropped {dropped / n:.4f}, expected {p} (accepted counts [{a}, {b}])"
    assert abs(mean - 1.0) <= half_width, f"mean ratio {mean:.4f} is not 1 within {half_width:.4f}"


def _training_model_and_batch(config, seed: int):
    """A float64 model in training mode and a (2, 6) source / (2, 5) target batch, all from one seed."""
    torch.manual_seed(seed)
    model = Transformer(config).double().train()
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, config.src_vocab_size, (2, 6), generator=g)
    tgt = torch.randint(0, config.tgt_vocab_size, (2, 5), generator=g)
    return model, src, tgt


def _watch_one_pass(model: Transformer, run) -> dict:
    """One training-mode pass, watched by hooks. Returns the stochastic sites (leaf modules whose output changes
    when run again on the same input) with what went in and out, the outputs of every attention and
    feed-forward sub-layer, and, per residual block, its input x, output, norm input and dropout output."""
    seen = dict(sites={}, sublayer_outputs=[], blocks={})
    hooks = []

    def check(module, args, out):
        if not torch.equal(module.forward(*args), out):
            seen["sites"][module] = dict(input=args[0], output=out)

    def keep(name, key, value, **more) -> None:  # a forward hook must return None, or it replaces the output
        seen["blocks"].setdefault(name, {}).update({key: value, **more})

    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(check))
        if isinstance(module, (MultiHeadAttention, PositionwiseFeedForward)):
            hooks.append(module.register_forward_hook(lambda m, a, out: seen["sublayer_outputs"].append(out)))
        if hasattr(module, "pre_norm"):  # a residual block
            hooks.append(module.register_forward_hook(lambda m, a, out, n=name: keep(n, "x", a[0], out=out)))
            hooks.append(module.dropout.register_forward_hook(lambda m, a, out, n=name: keep(n, "drop", out)))
            hooks.append(module.norm.register_forward_hook(lambda m, a, out, n=name: keep(n, "norm_in", a[0])))
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


@pytest.mark.claim("train.dropout-positions", kind="exact")
@given(config=model_configs(positional=("sinusoidal", "learned")), seed=seeds)
def test_dropout_sits_on_sublayer_outputs_before_the_add_and_on_embedding_sums(config, seed):
    """Found by behaviour, the stochastic sites are exactly 2 + 2 N_enc + 3 N_dec: each takes as input the output
    of one attention or feed-forward sub-layer (once each) or an embedding-plus-position sum, and each
    residual block adds its dropped sub-layer output to the untouched identity path."""
    config = config.with_(p_drop=0.5)
    model, src, tgt = _training_model_and_batch(config, seed)
    seen = _watch_one_pass(model, lambda: model(src, tgt))
    site_inputs = [s["input"] for s in seen["sites"].values()]
    assert len(site_inputs) == 2 + 2 * config.n_encoder_layers + 3 * config.n_decoder_layers, len(site_inputs)
    for out in seen["sublayer_outputs"]:
        assert sum(torch.equal(out, x) for x in site_inputs) == 1, "a sub-layer output is not dropped exactly once"
    with torch.no_grad():
        for embed, ids in ((model.src_embed, src), (model.tgt_embed, tgt)):
            summed = embed.token(ids) + embed.position(torch.arange(ids.shape[1])).to(torch.float64)[None]
            assert sum(torch.equal(summed, x) for x in site_inputs) == 1, "the embedding sum is not dropped once"
    assert len(seen["sublayer_outputs"]) + 2 == len(site_inputs)
    assert len(seen["blocks"]) == 2 * config.n_encoder_layers + 3 * config.n_decoder_layers
    for name, block in seen["blocks"].items():
        summed = block["out"] if config.norm_placement == "pre" else block["norm_in"]
        assert torch.equal(summed, block["x"] + block["drop"]), f"{name}: the add does not take the dropped output"


@pytest.mark.claim("train.paper-config", "train.dropout-positions", kind="exact")
@pytest.mark.parametrize("preset,d,d_ff,h,p_drop", [("base", 512, 2048, 8, 0.1), ("big", 1024, 4096, 16, 0.3)])
def test_presets_carry_the_paper_hyper_parameters(preset, d, d_ff, h, p_drop):
    """Read from the built model and its optimiser: 6 + 6 layers, widths, heads, P_drop on every dropout, the
    rate peaking at step 4000, Adam (0.9, 0.98) with eps 1e-9, and label smoothing 0.1 (none of it on padding)."""
    with torch.device("meta"):
        config = getattr(TransformerConfig, preset)()
        model = Transformer(config)
    assert len(model.encoder.layers) == len(model.decoder.layers) == 6
    assert model.tgt_embed.token.weight.shape[1] == d
    layer = model.encoder.layers[0]
    assert layer.feed_forward.w_1.out_features == d_ff and layer.self_attn.h == h
    drops = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 + 2 * 6 + 3 * 6 and set(drops) == {p_drop}
    optimizer = make_optimizer(model, config)
    group = optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-9
    scheduler = noam_scheduler(optimizer, config)
    rates = [scheduler.lr_lambdas[0](k - 1) for k in (3999, 4000, 4001)]
    assert rates[1] > rates[0] and rates[1] > rates[2] and rates[1] == pytest.approx((d * 4000) ** -0.5)
    smoothed = LabelSmoothingLoss.from_config(config).smoothed_targets(torch.tensor([5]))
    assert smoothed[0, 5] == pytest.approx(0.9) and smoothed.sum() == pytest.approx(1.0)
    assert smoothed[0, config.pad_id] == 0, "label smoothing must not put mass on padding"


@pytest.mark.claim("train.paper-config", kind="exact")
@given(vocab=st.integers(3, 9), n=st.integers(1, 6), smoothing=st.sampled_from([0.0, 0.1, 0.3]), seed=seeds)
def test_label_smoothed_loss_is_the_mean_cross_entropy_against_the_smoothed_target(vocab, n, smoothing, seed):
    """Label smoothing (epsilon_ls = 0.1 in the paper): the loss is the mean, over non-padding positions, of
    -sum_v q(v) log p(v), where q gives 1 - eps to the label, 0 to padding and eps / (V - 2) to every other token."""
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(torch.randn(n, vocab, generator=g, dtype=torch.float64), dim=-1)
    target = torch.randint(0, vocab, (n,), generator=g)
    expected, count = 0.0, 0
    for row, label in zip(log_probs.tolist(), target.tolist()):
        if label == 0:  # padding position: not scored
            continue
        q = [0.0 if v == 0 else (1 - smoothing if v == label else smoothing / (vocab - 2)) for v in range(vocab)]
        expected -= sum(qv * lp for qv, lp in zip(q, row))
        count += 1
    loss = LabelSmoothingLoss(vocab, smoothing, pad_id=0)(log_probs, target)
    assert loss >= 0
    assert abs(float(loss) - (expected / count if count else 0.0)) < 1e-12


@given(pad_id=st.integers(1, 9), seed=seeds)
def test_label_smoothing_from_a_config_uses_its_pad_id_not_zero(pad_id, seed):
    """LabelSmoothingLoss.from_config reads the pad id the config names (here 1 to 9, never 0): that id gets
    no smoothing mass and positions whose target is it do not count, while id 0 is an ordinary token."""
    config = TransformerConfig.tiny(vocab_size=10, pad_id=pad_id)
    loss = LabelSmoothingLoss.from_config(config)
    dist = loss.smoothed_targets(torch.tensor([0, (pad_id + 1) % 10]), torch.float64)
    assert (dist[:, pad_id] == 0).all() and (dist[1, 0] > 0 or (pad_id + 1) % 10 == 0)
    assert dist[0, 0] == pytest.approx(1 - config.label_smoothing)
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(torch.randn(4, 10, generator=g, dtype=torch.float64), -1)
    target = torch.tensor([0, pad_id, 3 if pad_id != 3 else 4, pad_id])
    kept = target != pad_id
    torch.testing.assert_close(loss(log_probs, target), loss(log_probs[kept], target[kept]), **FLOAT64)


# ---------------------------------------------------------------------------------------------------
# BERT: [MASK] tokens versus key masking
# ---------------------------------------------------------------------------------------------------

def _encode_without_residuals(model: Transformer, src, key_allowed) -> torch.Tensor:
    """The encoder's own sub-modules and norms (post-LN order) with the residual adds removed."""
    from transformer import key_padding_mask

    allowed = key_padding_mask(key_allowed)
    y = model.src_embed(src)
    for layer in model.encoder.layers:
        y = layer.attn_block.norm(layer.self_attn(y, y, y, allowed))
        y = layer.ff_block.norm(layer.feed_forward(y))
    return y


@pytest.mark.claim("bert.mask-token-vs-attention-mask", kind="exact")
@given(config=model_configs(positional=("sinusoidal", "learned"), norm_placement=("post",)), batch=st.integers(1, 3),
       length=st.integers(2, 7), i=st.integers(0, 6), seed=seeds)
def test_key_masking_leaks_a_token_to_its_own_position_through_the_residual(config, batch, length, i, seed):
    """Hide token i only as a key (BERT-style encoder: learned or sinusoidal positions, embedding LayerNorm):
    changing it changes position i's output (a leak) and nothing else. With the queries zeroed the leak
    remains, and removing the residual adds then removes it: the residual carries it. Replacing token i by
    [MASK] instead leaves no trace of it anywhere."""
    config = config.with_(embedding_norm=True, activation="gelu")
    i %= length
    model = seeded_model(config, seed)
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(1, config.src_vocab_size, (batch, length), generator=g)
    other = src.clone()
    other[:, i] = src[:, i] % (config.src_vocab_size - 1) + 1  # a different real token
    other[:, i] = torch.where(other[:, i] == src[:, i], 1 + other[:, i] % (config.src_vocab_size - 1), other[:, i])
    hidden = torch.ones(batch, length, dtype=torch.bool)
    hidden[:, i] = False
    rest = [j for j in range(length) if j != i]

    def leak(encode):
        with torch.no_grad():
            gap = (encode(src, hidden) - encode(other, hidden)).abs()  # (B, S, D)
        return gap[:, i].amax(dim=-1), gap[:, rest].amax() if rest else torch.tensor(0.0)

    at_i, elsewhere = leak(model.encode)
    assert (at_i > 1e-6).all() and elsewhere <= FLOAT64_DEEP.atol, (at_i, elsewhere)
    with torch.no_grad():
        for layer in model.encoder.layers:
            layer.self_attn.w_q.weight.zero_()
            layer.self_attn.w_q.bias.zero_()
    through_residual, _ = leak(model.encode)
    without_residual, _ = leak(lambda s, a: _encode_without_residuals(model, s, a))
    assert (through_residual > 1e-6).all(), f"no leak with the queries zeroed: {through_residual}"
    assert (without_residual <= FLOAT64_DEEP.atol).all(), f"a leak without the residual: {without_residual}"
    masked_token = 0  # [MASK]: a token id of its own
    with torch.no_grad():
        replaced = lambda s: model.encode(torch.where(hidden, s, masked_token))  # noqa: E731
        assert torch.equal(replaced(src), replaced(other)), "[MASK] replacement should leave no trace of the token"


@pytest.mark.claim("bert.mask-token-vs-attention-mask", kind="counterexample")
def test_key_masking_leak_concrete_case(measure):
    """Tiny BERT-style encoder, seed 0: the size of the leak at the hidden position, through each path."""
    config = TransformerConfig.tiny(vocab_size=11, positional="learned", embedding_norm=True, activation="gelu",
                                    pad_id=None)
    torch.manual_seed(0)
    model = Transformer(config).double().eval()
    src, other = torch.tensor([[3, 5, 7, 2]]), torch.tensor([[3, 9, 7, 2]])
    hidden = torch.tensor([[True, False, True, True]])
    with torch.no_grad():
        gap = (model.encode(src, hidden) - model.encode(other, hidden)).abs().amax(dim=-1)[0]
        no_res = (_encode_without_residuals(model, src, hidden) - _encode_without_residuals(model, other, hidden))
    measure("counterexample", {"src": src.tolist(), "changed_to": other.tolist(), "key_allowed": hidden.tolist(),
                               "max_abs_change_per_position": gap.tolist(),
                               "max_abs_change_at_1_without_residual_queries_kept": float(no_res.abs()[0, 1].max())})
    assert gap[1] > 1e-3 and float(gap[[0, 2, 3]].max()) <= FLOAT64_DEEP.atol


@pytest.mark.claim("train.dropout-expectation", kind="exact")
@given(config=model_configs(), p=st.sampled_from([0.1, 0.3, 0.5]), seed=seeds)
def test_every_dropout_site_scales_the_units_it_keeps_by_one_over_one_minus_p(config, p, seed):
    """Inverted dropout at EVERY stochastic site of the model (found by hooks, not by name): each output entry
    is either 0 or its input times 1/(1 - p), exactly, so E[output] = input and eval needs no rescaling."""
    config = config.with_(p_drop=p)
    model, src, tgt = _training_model_and_batch(config, seed)
    seen = _watch_one_pass(model, lambda: model(src, tgt))
    assert seen["sites"], "training mode with p_drop > 0 must have stochastic sites"
    for module, site in seen["sites"].items():
        x, out = site["input"], site["output"]
        kept = out != 0
        note(f"site {type(module).__name__}")
        torch.testing.assert_close(out[kept], x[kept] * dropout_scale(config.p_drop), **FLOAT64)
