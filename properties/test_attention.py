"""Attention mechanics: what softmax(Q K^T / sqrt(d_k)) V is, what its scale does, what it costs.

Each output row is a convex combination of the value rows, weighted by a softmax over the keys of
the scaled query-key scores, so without a mask every input reaches every output. For unit-variance
entries q.k has variance d_k, and dividing by sqrt(d_k) brings it back to one (at initialisation it is
one only with variance-1/d_model weights, 1/9 with PyTorch's default); unscaled scores at large d_k
saturate the softmax into one-hot rows whose gradient vanishes. The scale can as well be folded into
W^Q. The core costs 4 n^2 d FLOPs and keeps n x n weights; additive attention builds n x n x d_a.
Tests taking ``attention_impl`` run the packaged properties (``transformer.testing``) against every
implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from proofs.closed_forms import (
    attention_core_flops,
    scaled_score_variance,
    scaled_score_variance_torch_default,
    softmax_off_max_bound,
)
from properties.conformance import (
    PROPERTIES,
    attention_property,
    load_user_implementation,
    reference_attention,
)
from properties.stats import (
    clopper_pearson,
    empirical_bernstein,
    median_interval,
    median_of_means,
    median_of_means_half_width,
    proportion_bound_power,
    separated_power,
)
from properties.strategies import (
    attention_cases,
    attention_layouts,
    gaussian,
    seeds,
)
from properties.tolerances import (
    ALPHA_QK_VARIANCE,
    ALPHA_QK_VARIANCE_INIT,
    ALPHA_UNSCALED_GRADIENT,
    FLOAT64,
)
from transformer import MultiHeadAttention
from transformer.attention import AdditiveAttention, scaled_dot_product_attention
from transformer.testing import UsageError

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# (B, H, S_q, S_k, d) = (3, 2, 2, 4, 2), example 1 made only of padding: its query rows see no key.
PADDED_WITH_EMPTY_EXAMPLE = ((3, 2, 2, 4, 2), torch.tensor([4, 0, 2])[:, None, None, None] > torch.arange(4))


def qkv(layout, seed, dtype=torch.float64, scale=1.0):
    B, H, n_q, n_k, d = layout
    return (gaussian((B, H, n_q, d), seed, dtype, scale), gaussian((B, H, n_k, d), seed + 1, dtype, scale),
            gaussian((B, H, n_k, d), seed + 2, dtype))


def scaled_scores(q, k):
    """Scores q.k / sqrt(d_k) as the project's attention applies them, read back from its weights:
    next to a zero key (score 0) key k gets weight w0 with log(w0 / w1) = score. q (..., 1, d), k (..., 1, d)."""
    keys = torch.cat([k, torch.zeros_like(k)], dim=-2)  # (..., 2, d)
    _, w = scaled_dot_product_attention(q, keys, torch.zeros(*keys.shape[:-1], 1, dtype=k.dtype))
    return (w[..., 0].log() - w[..., 1].log()).squeeze(-1)


# ------------------------------------------------------------------------------------------------
# attn.definition, attn.convex-combination: every implementation
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("attn.definition", kind="exact")
@attention_property("definition")
def test_attention_is_the_softmax_of_scaled_scores_applied_to_values(attention_impl, case):
    """attn.definition: out = softmax(q k^T / sqrt(d) restricted to allowed keys) v, row by row, for
    padding, causal and per-head masks (and none), against a log-sum-exp formula written apart."""
    PROPERTIES["definition"].check(attention_impl, case)


@pytest.mark.claim("attn.convex-combination", kind="exact")
@attention_property("convex-combination")
def test_each_output_row_is_a_convex_combination_of_value_rows(attention_impl, case):
    """attn.convex-combination: weights are >= 0 and sum to 1 over the allowed keys, so every output
    coordinate lies between the smallest and largest value of that coordinate among the allowed keys."""
    PROPERTIES["convex-combination"].check(attention_impl, case)


@pytest.mark.claim("mask.fully-masked-row", "mask.low-precision-fill", kind="exact")
@attention_property("no-nan")
def test_attention_never_returns_nan_even_for_huge_scores_and_empty_rows(attention_impl, case):
    """No NaN or inf, in any dtype, with scores far beyond exp's range (|score| ~ 1e3 in half
    precision, ~1e4 in float32, ~1e6 in float64) and a query row whose keys are all masked."""
    PROPERTIES["no-nan"].check(attention_impl, case)


# ------------------------------------------------------------------------------------------------
# attn.definition: the project against PyTorch
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("attn.definition", kind="exact")
@given(case=attention_cases(), additive=st.booleans(), seed=seeds)
def test_project_attention_equals_torch_sdpa_with_boolean_and_additive_masks(case, additive, seed):
    """The project's attention equals F.scaled_dot_product_attention on the same inputs and masks,
    whether torch gets the boolean mask or its additive form (0 where allowed, -inf where not)."""
    layout, allowed = case
    q, k, v = qkv(layout, seed)
    torch_mask = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, -math.inf) if additive else allowed
    ours, _ = scaled_dot_product_attention(q, k, v, allowed)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=torch_mask), **FLOAT64)


@pytest.mark.claim("attn.definition", kind="exact")
@given(case=attention_cases(), additive=st.booleans(), seed=seeds)
def test_multi_head_attention_equals_torch_multihead_attention_with_copied_weights(case, additive, seed):
    """MultiHeadAttention with random weights equals nn.MultiheadAttention given the same weights
    (W^Q, W^K, W^V packed into in_proj), whose masks say True = blocked (or -inf, additively)."""
    (B, H, n_q, n_k, d_k), allowed = case
    torch.manual_seed(seed)
    ours = MultiHeadAttention(H * d_k, H).double()
    theirs = torch.nn.MultiheadAttention(H * d_k, H, batch_first=True).double()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        theirs.out_proj.load_state_dict(ours.w_o.state_dict())
    query, key = gaussian((B, n_q, H * d_k), seed), gaussian((B, n_k, H * d_k), seed + 1)
    value = gaussian((B, n_k, H * d_k), seed + 2)
    blocked = (~allowed).expand(B, H, n_q, n_k).reshape(B * H, n_q, n_k)
    if additive:
        blocked = torch.zeros(blocked.shape, dtype=torch.float64).masked_fill(blocked, -math.inf)
    expected, expected_weights = theirs(query, key, value, attn_mask=blocked, average_attn_weights=False)
    torch.testing.assert_close(ours(query, key, value, allowed), expected, **FLOAT64)
    torch.testing.assert_close(ours.last_weights, expected_weights, **FLOAT64)


# ------------------------------------------------------------------------------------------------
# attn.context-mixing
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("attn.context-mixing", kind="exact")
@given(layout=attention_layouts(self_attention=True), seed=seeds)
def test_every_output_of_unmasked_self_attention_depends_on_every_input(layout, seed):
    """attn.context-mixing: in unmasked self-attention d out_i / d x_j != 0 for every pair (i, j):
    each weight is positive and the value and query paths are generic. With a causal mask the blocks
    above the diagonal are exactly zero instead (the contrast that shows the test can see a mask)."""
    B, H, n, _, d_k = layout
    torch.manual_seed(seed)
    mha = MultiHeadAttention(H * d_k, H).double()
    x = gaussian((n, H * d_k), seed)
    jac = torch.autograd.functional.jacobian(lambda x: mha(x[None], x[None], x[None])[0], x)  # (S, D, S, D)
    blocks = jac.abs().sum(dim=(1, 3))  # (S_out, S_in)
    assert (blocks > 1e-8).all(), f"output/input pairs with zero influence: {(blocks <= 1e-8).nonzero().tolist()}"
    from transformer.masks import causal_mask
    causal = torch.autograd.functional.jacobian(lambda x: mha(x[None], x[None], x[None], causal_mask(n))[0], x)
    assert (causal.abs().sum(dim=(1, 3)).triu(1) == 0).all()


# ------------------------------------------------------------------------------------------------
# attn.qk-variance, attn.qk-variance-init (statistical)
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("attn.qk-variance", kind="statistical")
def test_dot_products_of_unit_variance_vectors_have_variance_d_k_and_the_scale_makes_it_one(measure):
    """attn.qk-variance: q, k with i.i.d. N(0, 1) entries: E[q.k] = 0 and Var[q.k] = d_k, and the
    project's attention scores (read from its weights) are exactly q.k / sqrt(d_k), of variance 1.

    Test: median-of-means intervals (distribution-free given the null's standard deviations:
    sd(q.k) = sqrt(d_k), sd((q.k)^2) = sqrt(2 d_k^2 + 6 d_k) for Gaussian entries); two sizes x two
    statistics, each at ALPHA_QK_VARIANCE / 4. Seeded.
    """
    n, alpha = 100_000, ALPHA_QK_VARIANCE / 4
    for d_k in (4, 32):
        q, k = gaussian((n, 1, d_k), 2024 + d_k), gaussian((n, 1, d_k), 4048 + d_k)
        dots = (q * k).sum(-1).flatten()  # (N,)
        # the model's scores are these dot products over sqrt(d_k) (checked on the first 2000 pairs)
        torch.testing.assert_close(scaled_scores(q[:2000], k[:2000]), dots[:2000] / math.sqrt(d_k), **FLOAT64)
        mean, mean_hw = median_of_means(dots, sigma=math.sqrt(d_k), alpha=alpha)
        var, var_hw = median_of_means(dots**2, sigma=math.sqrt(2 * d_k**2 + 6 * d_k), alpha=alpha)
        # the wrong alternative for the variance: no growth with d_k (Var = 1, sd of the squares sqrt(8) for these)
        unit_hw = median_of_means_half_width(n, sigma=math.sqrt(8), alpha=alpha)
        measure("dot_variance", var, params={"d_k": d_k}, interval=[var - var_hw, var + var_hw], closed_form=d_k,
                alpha=alpha, power=separated_power(d_k, 1.0, var_hw, unit_hw, alpha),
                alternative="Var[q.k] = 1 whatever d_k (no growth with the width)", n=n)
        measure("scaled_variance", var / d_k, params={"d_k": d_k}, interval=[(var - var_hw) / d_k, (var + var_hw) / d_k],
                closed_form=1, confidence=1 - alpha, n=n)
        shift = 0.2 * math.sqrt(d_k)  # a mean of a fifth of a standard deviation
        measure("dot_mean", mean, params={"d_k": d_k}, interval=[mean - mean_hw, mean + mean_hw], closed_form=0,
                alpha=alpha, power=separated_power(0.0, shift, mean_hw, mean_hw, alpha),
                alternative=f"E[q.k] = 0.2 sqrt(d_k) = {shift:.2f}", n=n)
        assert abs(mean) <= mean_hw, f"d_k={d_k}: mean {mean:.4f} outside 0 +- {mean_hw:.4f}"
        assert abs(var - d_k) <= var_hw, f"d_k={d_k}: variance {var:.3f} outside {d_k} +- {var_hw:.3f}"


def _init_scores(d_model: int, heads: int, models: int, init: str, seed: int) -> torch.Tensor:
    """Scaled scores of one query/key pair of LayerNorm-ed tokens per head, over ``models``
    independent initialisations of MultiHeadAttention(d_model, heads). Scores of different heads
    use disjoint weight rows, so given the tokens they are independent. Shape: (models * heads,)."""
    torch.manual_seed(seed)
    mha = MultiHeadAttention(d_model, heads).double()
    tokens = F.layer_norm(gaussian((models, 2, d_model), seed), (d_model,))  # no affine: |x|^2 = d_model
    queries, keys = [], []
    with torch.no_grad():
        for x, y in tokens[:, :, None, None, :]:  # (1, 1, d_model) each
            for linear in (mha.w_q, mha.w_k):
                if init == "torch-default":
                    linear.reset_parameters()  # nn.Linear's own: U(-1/sqrt(d), 1/sqrt(d)) weights and biases
                else:  # Xavier-like: variance 1 / d_model, no bias
                    torch.nn.init.normal_(linear.weight, std=d_model**-0.5)
                    torch.nn.init.zeros_(linear.bias)
            queries.append(mha.split_heads(mha.w_q(x)))  # (1, H, 1, d_k)
            keys.append(mha.split_heads(mha.w_k(y)))
        return scaled_scores(torch.cat(queries), torch.cat(keys)).flatten()


@pytest.mark.claim("attn.qk-variance-init", kind="statistical")
def test_scaled_scores_at_initialisation_have_variance_one_ninth_by_default_and_one_with_xavier_like_weights(measure):
    """attn.qk-variance-init: LayerNorm-ed tokens (|x|^2 = d_model) through the model's own W_q, W_k:
    with nn.Linear's default init (weights and biases of variance 1/(3 d_model)) the scaled score
    variance is (1 + 1/d_model)^2 / 9 ~ 1/9; with variance-1/d_model weights and no bias it is 1.

    Test: median-of-means interval on s^2 (E s^2 = v^2, Var s^2 <= (2 + 6/d_k) v^4 for independent
    symmetric weights of kurtosis <= 3: uniform and Gaussian both), each at ALPHA_QK_VARIANCE_INIT / 2; the
    wrong alternative of each is the other initialisation's variance.
    """
    d_model, heads, models, alpha = 64, 8, 2000, ALPHA_QK_VARIANCE_INIT / 2
    d_k = d_model // heads
    expected = {"torch-default": scaled_score_variance_torch_default(d_model),
                "xavier-like": scaled_score_variance(d_model, 1 / d_model, 0.0)}
    for seed, (init, closed_form) in enumerate(expected.items()):
        scores = _init_scores(d_model, heads, models, init, seed)
        var, hw = median_of_means(scores**2, sigma=math.sqrt(2 + 6 / d_k) * closed_form, alpha=alpha)
        (other,) = (v for k, v in expected.items() if k != init)
        measure("scaled_score_variance", var, params={"init": init}, interval=[var - hw, var + hw],
                closed_form=closed_form, alpha=alpha,
                power=separated_power(closed_form, other, hw, hw * other / closed_form, alpha),
                alternative=f"the other initialisation's variance {other:.4f}", n=scores.numel(), d_model=d_model, h=heads)
        assert abs(var - closed_form) <= hw, f"{init}: variance {var:.4f} outside {closed_form:.4f} +- {hw:.4f}"


# ------------------------------------------------------------------------------------------------
# attn.softmax-saturation, attn.unscaled-vanishing-gradient, attn.faq-softmax-example
# ------------------------------------------------------------------------------------------------

def _attention_over_logits(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the project's attention for one query whose scaled scores are exactly z (n,):
    keys sqrt(n) e_j make q.k_j / sqrt(n) = z_j. Returns (weights (n,), d weights / d z (n, n))."""
    n = z.numel()
    keys = math.sqrt(n) * torch.eye(n, dtype=z.dtype)[None]  # (1, n, n)
    weights = lambda z: scaled_dot_product_attention(z[None, None], keys, keys)[1][0, 0]  # noqa: E731
    return weights(z), torch.autograd.functional.jacobian(weights, z)


@pytest.mark.claim("attn.softmax-saturation", kind="exact")
@given(n=st.integers(2, 6), gap=st.floats(0.05, 2.0), seed=seeds)
def test_scaling_logits_up_saturates_attention_to_one_hot_and_flattens_its_jacobian(n, gap, seed):
    """attn.softmax-saturation: with the arg-max ahead of the runner-up by g, softmax(beta z) puts at
    most (n-1) exp(-beta g) off the arg-max and every Jacobian entry is at most that, so as beta grows
    the weights become one-hot and the gradient vanishes (here beta up to 1000, through the model)."""
    z = gaussian((n,), seed)
    top = int(z.argmax())
    z[top] = torch.cat([z[:top], z[top + 1:]]).max() + gap
    previous = math.inf
    for beta in (1.0, 10.0, 100.0, 1000.0):
        weights, jac = _attention_over_logits(beta * z)
        off_max = float(1 - weights[top])
        bound = softmax_off_max_bound(n, beta, gap)
        assert off_max <= bound * (1 + 1e-9) + 1e-15, f"beta={beta}: off-max mass {off_max} > bound {bound}"
        assert float(jac.abs().max()) <= bound * (1 + 1e-9) + 1e-15, f"beta={beta}: Jacobian above {bound}"
        assert off_max <= previous + 1e-15
        previous = off_max
    assert previous < 1e-15 and float(jac.abs().max()) < 1e-15  # one-hot, flat at beta = 1000


@pytest.mark.claim("attn.softmax-saturation", kind="exact")
def test_the_largest_weight_grows_to_one_and_the_jacobian_vanishes_along_a_logit_scale_sweep(measure):
    """attn.softmax-saturation on one seeded logit vector (8 keys), beta from 0.1 to 1000: the largest
    weight never falls as beta grows and ends within 1e-12 of 1; the Jacobian's Frobenius norm ends
    below 1e-9 of its value at beta = 1. The sweep is recorded for the page."""
    z = gaussian((8,), 7)
    sweep = []
    for beta in torch.logspace(-1, 3, 25, dtype=torch.float64).tolist():
        weights, jac = _attention_over_logits(beta * z)
        sweep.append((beta, float(weights.max()), float(jac.norm())))
        measure("softmax_saturation", {"max_weight": sweep[-1][1], "jacobian_norm": sweep[-1][2]},
                params={"beta": round(beta, 6)}, unit="unitless")
    largest = [w for _, w, _ in sweep]
    assert all(b >= a - 1e-15 for a, b in zip(largest, largest[1:])), f"largest weight fell: {largest}"
    at_one = next(j for beta, _, j in sweep if abs(beta - 1.0) < 1e-9)
    assert largest[-1] > 1 - 1e-12 and sweep[-1][2] < 1e-9 * at_one, sweep[-1]


def _softmax_jacobian_norm(p: torch.Tensor) -> torch.Tensor:
    """||diag(p) - p p^T||_F per row; at most 1 (it is <= sqrt(sum p_i^2) <= 1). p (N, n) -> (N,)."""
    return (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]).flatten(1).norm(dim=1)


@pytest.mark.claim("attn.unscaled-vanishing-gradient", kind="statistical")
def test_unscaled_scores_at_d_k_512_give_near_one_hot_rows_and_much_smaller_softmax_gradients(measure):
    """attn.unscaled-vanishing-gradient, at d_k = 512 with 8 keys and N(0, 1) entries, through the
    project's attention (unscaled = queries multiplied by sqrt(d_k)), paired rows:

    * most unscaled rows are near one-hot (max weight > 0.99), almost no scaled row is;
    * for most rows the softmax Jacobian (the factor every gradient through attention carries) is
      over 100 times smaller unscaled: the median ratio is < 1/100;
    * on average over rows the gap is much smaller (the unsaturated rows keep large gradients): the
      mean Jacobian norm is smaller unscaled, but by less than a factor 100; the gradient w.r.t. the
      queries (where unscaling also multiplies by sqrt(d_k)) has its median ratio recorded.

    Tests: Clopper-Pearson intervals for the proportions, empirical Bernstein for the means (norms in
    [0, 1]), sign-test intervals for the medians. Four decisions spend ALPHA_UNSCALED_GRADIENT: the two one-hot
    fractions and the 100x fraction at a sixth each, the mean ratio (two intervals) at two sixths; the medians
    are descriptive at the same level. Seeded.
    """
    N, n_keys, d_k, alpha = 2000, 8, 512, ALPHA_UNSCALED_GRADIENT / 6
    q = gaussian((N, 1, 1, d_k), 7).requires_grad_()
    k, v = gaussian((N, 1, n_keys, d_k), 8), gaussian((N, 1, n_keys, 1), 9)
    rows, norms, q_grads = {}, {}, {}
    for name, factor in (("scaled", 1.0), ("unscaled", math.sqrt(d_k))):
        _, w = scaled_dot_product_attention(q * factor, k, v)
        p = w[:, 0, 0]  # (N, n_keys)
        rows[name], norms[name] = p.detach(), _softmax_jacobian_norm(p.detach())
        # ||d p / d q||_F per row: rows are independent, so one backward pass per key gives all N rows
        grads = [torch.autograd.grad(p[:, j].sum(), q, retain_graph=True)[0].flatten(1) for j in range(n_keys)]
        q_grads[name] = torch.stack(grads, 1).flatten(1).norm(dim=1)
    one_hot = {name: int((p.max(-1).values > 0.99).sum()) for name, p in rows.items()}
    one_hot_ci = {name: clopper_pearson(count, N, alpha) for name, count in one_hot.items()}
    ratio = norms["unscaled"] / norms["scaled"]
    small = int((ratio < 1e-2).sum())
    small_ci = clopper_pearson(small, N, alpha)
    means = {name: empirical_bernstein(x, alpha) for name, x in norms.items()}
    mean_ratio_ci = [(means["unscaled"][0] - means["unscaled"][1]) / (means["scaled"][0] + means["scaled"][1]),
                     (means["unscaled"][0] + means["unscaled"][1]) / (means["scaled"][0] - means["scaled"][1])]
    powers = {"unscaled": proportion_bound_power(N, alpha, 0.5, 0.6),
              "scaled": proportion_bound_power(N, alpha, 0.01, 0.0002, above=False)}
    wrong = {"unscaled": "at most half of the unscaled rows near one-hot; power: if 60% are",
             "scaled": "at least 1% of the scaled rows near one-hot; power: if 0.02% are"}
    for name in rows:
        measure("near_one_hot_fraction", one_hot[name] / N, params={"scores": name}, interval=list(one_hot_ci[name]),
                alpha=alpha, power=powers[name], alternative=wrong[name], threshold=0.99, n=N, d_k=d_k, keys=n_keys)
    measure("fraction_softmax_gradient_100x_smaller", small / N, interval=list(small_ci), alpha=alpha,
            power=proportion_bound_power(N, alpha, 0.5, 0.6),
            alternative="at most half of the rows lose a factor 100 of softmax gradient; power: if 60% do", n=N)
    med, low, high = median_interval(ratio, alpha)
    measure("median_softmax_gradient_ratio", med, interval=[low, high], confidence=1 - alpha, n=N)
    measure("mean_softmax_jacobian_norm", {n: m for n, (m, _) in means.items()},
            half_width={n: hw for n, (_, hw) in means.items()}, confidence=1 - alpha, n=N)
    observed = means["unscaled"][0] / means["scaled"][0]
    ratio_hw = max(observed - mean_ratio_ci[0], mean_ratio_ci[1] - observed)
    measure("mean_softmax_jacobian_ratio", observed, interval=mean_ratio_ci, alpha=2 * alpha,
            power=separated_power(observed, 1.0, ratio_hw, ratio_hw, 2 * alpha),
            alternative="a mean ratio of 1: no loss of softmax gradient on average")
    med, low, high = median_interval(q_grads["unscaled"] / q_grads["scaled"], alpha)
    measure("median_query_gradient_ratio", med, interval=[low, high], confidence=1 - alpha,
            mean_ratio_point_estimate=float((q_grads["unscaled"] / q_grads["scaled"]).mean()))
    assert one_hot_ci["unscaled"][0] > 0.5, f"near one-hot unscaled rows: {one_hot_ci['unscaled']}"
    assert one_hot_ci["scaled"][1] < 0.01, f"near one-hot scaled rows: {one_hot_ci['scaled']}"
    assert small_ci[0] > 0.5, f"rows whose softmax gradient shrinks 100x: {small_ci}"
    # smaller on average too, but by less than two orders of magnitude: the condition on the verdict
    assert 1e-2 < mean_ratio_ci[0] and mean_ratio_ci[1] < 1, f"mean gradient ratio interval {mean_ratio_ci}"


@pytest.mark.claim("attn.faq-softmax-example", kind="exact")
def test_faq_softmax_example_to_two_decimals(measure):
    """attn.faq-softmax-example: scores [0.8, 0.1, 0.1] give [0.50, 0.25, 0.25] unscaled and, through
    the model's own 1/sqrt(d_k) with d_k = 3, [0.43, 0.29, 0.29] (rounded to two decimals)."""
    q = torch.tensor([[[0.8, 0.1, 0.1]]], dtype=torch.float64)  # (1, 1, d_k=3)
    eye = torch.eye(3, dtype=torch.float64)[None]
    _, unscaled = scaled_dot_product_attention(q, math.sqrt(3) * eye, eye)  # keys sqrt(3) e_j cancel the scale
    _, scaled = scaled_dot_product_attention(q, eye, eye)
    unscaled, scaled = unscaled.flatten().tolist(), scaled.flatten().tolist()
    measure("softmax", unscaled, faq=[0.50, 0.25, 0.25])
    measure("softmax_scaled_by_sqrt3", scaled, faq=[0.43, 0.29, 0.29])
    assert [round(w, 2) for w in unscaled] == [0.50, 0.25, 0.25]
    assert [round(w, 2) for w in scaled] == [0.43, 0.29, 0.29]


# ------------------------------------------------------------------------------------------------
# attn.scale-folded-into-init
# ------------------------------------------------------------------------------------------------

@pytest.mark.claim("attn.scale-folded-into-init", kind="exact")
@given(case=attention_cases(), seed=seeds)
def test_folding_the_scale_into_w_q_gives_identical_scores_and_outputs(case, seed):
    """attn.scale-folded-into-init: dividing W_q (and its bias) by sqrt(d_k) and dropping the
    1/sqrt(d_k) (torch's kernel with scale=1) gives the model's weights and outputs exactly."""
    (B, H, n_q, n_k, d_k), allowed = case
    torch.manual_seed(seed)
    mha = MultiHeadAttention(H * d_k, H).double()
    query, memory = gaussian((B, n_q, H * d_k), seed), gaussian((B, n_k, H * d_k), seed + 1)
    out = mha(query, memory, memory, allowed)
    with torch.no_grad():
        q = mha.split_heads(F.linear(query, mha.w_q.weight / math.sqrt(d_k), mha.w_q.bias / math.sqrt(d_k)))
        k, v = mha.split_heads(mha.w_k(memory)), mha.split_heads(mha.w_v(memory))
        folded = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0)
        scores = (q @ k.transpose(-2, -1)).masked_fill(~allowed, -math.inf)  # no scale
    torch.testing.assert_close(mha.last_weights, torch.softmax(scores, -1), **FLOAT64)
    torch.testing.assert_close(out, mha.w_o(mha.merge_heads(folded)), **FLOAT64)


# ------------------------------------------------------------------------------------------------
# attn.dot-vs-additive-cost, attn.complexity (measured)
# ------------------------------------------------------------------------------------------------

def _largest_allocation(fn) -> int:
    """Bytes of the largest single allocation made while ``fn`` runs (torch.profiler, CPU)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(event.cpu_memory_usage for event in prof.events())


def _flops(fn) -> tuple[int, dict[str, int]]:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops(), {str(op): c for op, c in counter.get_flop_counts()["Global"].items()}


def additive_attention_flops(n: int, d: int, d_a: int, d_v: int) -> int:
    """Matmul FLOPs of additive attention (FlopCounterMode's convention: 2 m k c per product, tanh and
    adds not counted): W_q q and W_k k (2 n d d_a each), v^T tanh(.) on n^2 vectors (2 n^2 d_a), A V
    (2 n^2 d_v). proofs/closed_forms.py has no additive entry; this one is derived the same way."""
    return 4 * n * d * d_a + 2 * n * n * d_a + 2 * n * n * d_v


@pytest.mark.claim("attn.dot-vs-additive-cost", kind="measured")
def test_additive_attention_materialises_n_by_n_by_d_a_dot_product_only_n_by_n(measure):
    """attn.dot-vs-additive-cost: dot-product attention is two batched matmuls whose largest
    intermediate is the (n, n) score matrix; additive attention allocates an (n, n, d_a) tensor
    (d_a times more memory) and costs 4 n d d_a more matmul FLOPs, plus n^2 d_a tanh evaluations."""
    n, d, d_a = 128, 32, 32
    q, k, v = (gaussian((1, n, d), s) for s in range(3))
    torch.manual_seed(0)
    additive = AdditiveAttention(d, d_a).double()
    dot_flops, dot_ops = _flops(lambda: scaled_dot_product_attention(q, k, v))
    add_flops, add_ops = _flops(lambda: additive(q, k, v))
    dot_bytes = _largest_allocation(lambda: scaled_dot_product_attention(q, k, v))
    add_bytes = _largest_allocation(lambda: additive(q, k, v))
    measure("dot_product_flops", dot_flops, closed_form=attention_core_flops(n, d), by_op=dot_ops, n=n, d=d)
    measure("additive_flops", add_flops, closed_form=additive_attention_flops(n, d, d_a, d), by_op=add_ops, d_a=d_a)
    measure("largest_allocation_bytes", {"dot": dot_bytes, "additive": add_bytes},
            closed_form={"dot": n * n * 8, "additive": n * n * d_a * 8}, dtype="float64")
    assert dot_ops == {"aten.bmm": attention_core_flops(n, d)}, dot_ops  # Q K^T and A V, nothing else
    assert add_flops == additive_attention_flops(n, d, d_a, d)
    assert dot_bytes == n * n * 8, f"dot product: largest allocation {dot_bytes} bytes"
    assert add_bytes == n * n * d_a * 8, f"additive: largest allocation {add_bytes} bytes"


@pytest.mark.claim("attn.complexity", kind="measured")
@given(heads=st.integers(1, 4), d_head=st.integers(1, 8), n=st.integers(1, 48), n_kv=st.integers(1, 48))
def test_attention_core_costs_4_n_squared_d_flops(heads, d_head, n, n_kv):
    """attn.complexity: Q K^T and A V cost 2 n n_kv d FLOPs each (FlopCounterMode), whatever the
    split into heads: quadratic in the length (4 n^2 d for self-attention), linear in the width."""
    q = torch.zeros(1, heads, n, d_head, dtype=torch.float64)
    kv = torch.zeros(1, heads, n_kv, d_head, dtype=torch.float64)
    flops, _ = _flops(lambda: scaled_dot_product_attention(q, kv, kv))
    assert flops == attention_core_flops(n, heads * d_head, n_kv)
    self_flops, _ = _flops(lambda: scaled_dot_product_attention(q, q, q))
    double, _ = _flops(lambda: scaled_dot_product_attention(*(torch.cat([q, q], 2),) * 3))
    assert self_flops == attention_core_flops(n, heads * d_head) and double == 4 * self_flops


@pytest.mark.claim("attn.complexity", kind="measured")
def test_attention_core_flops_table(measure):
    """attn.complexity: the counted FLOPs over lengths 64..512 at d = 512 (8 heads): each doubling
    of n multiplies them by 4, doubling d by 2; recorded next to 4 n^2 d."""
    table = {}
    for n in (64, 128, 256, 512):
        for d in (256, 512):
            q = torch.zeros(1, 8, n, d // 8)
            table[f"n={n},d={d}"], _ = _flops(lambda q=q: scaled_dot_product_attention(q, q, q))
            assert table[f"n={n},d={d}"] == attention_core_flops(n, d)
    measure("core_flops", table, closed_form="4 n^2 d")
    assert table["n=512,d=512"] == 4 * table["n=256,d=512"] == 8 * table["n=256,d=256"]


def test_attention_impl_option_loads_a_factory_and_refuses_a_malformed_spec():
    """--attention-impl MODULE:FACTORY: the worked example loads, answers in the documented shape and
    agrees with the textbook formula; a spec without a colon is a usage error."""
    impl = load_user_implementation("properties.examples.naive_attention:make_attention")
    (B, H, n_q, n_k, d), allowed = PADDED_WITH_EMPTY_EXAMPLE
    q, k, v = qkv((B, H, n_q, n_k, d), 0)
    out, weights = impl(q, k, v, allowed)
    expected, expected_weights = reference_attention(q, k, v, allowed)
    torch.testing.assert_close(out, expected, **FLOAT64)
    torch.testing.assert_close(weights, expected_weights, **FLOAT64)
    with pytest.raises(UsageError, match="MODULE:FACTORY"):
        load_user_implementation("properties.examples.naive_attention")
