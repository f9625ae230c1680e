"""Derivations: the variance of dot-product scores, and why the 1/sqrt(d_k) factor gives unit variance."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from sympy import stats

from proofs import closed_forms as cf
from proofs._algebra import centred, expect, is_zero, unknown_moment_symbols, variance

CONCRETE_SIZES = range(1, 9)  # d_k = 1..8: the sums checked term by term, symbolically


def derive_qk_variance(claimed_mean: sp.Expr, claimed_variance: sp.Expr,
                       claimed_scaled_variance: sp.Expr) -> sp.Eq:
    """E[q.k], Var[q.k] and Var[q.k / sqrt(d_k)] for i.i.d. zero-mean unit-variance entries.

    Raises AssertionError when a claimed right-hand side (a function of ``cf.d_k``) is wrong.
    """
    d_k, i = cf.d_k, sp.Symbol("i", positive=True, integer=True)
    # Assumption: q_i, k_i independent, mean 0, variance 1, any higher moments (unknown symbols).
    q1, k1, q2, k2 = sp.symbols("q_1 k_1 q_2 k_2", real=True)
    moments = {v: centred(sp.Integer(1), v.name) for v in (q1, k1, q2, k2)}
    # One term: independence factorises E[q k] = E[q] E[k] = 0 and E[q^2 k^2] = E[q^2] E[k^2] = 1.
    term_mean = expect(q1 * k1, moments)
    term_var = variance(q1 * k1, moments)
    # Two different terms are uncorrelated: E[q_1 k_1 q_2 k_2] = 0 = E[q_1 k_1] E[q_2 k_2].
    term_cov = sp.expand(expect(q1 * k1 * q2 * k2, moments) - term_mean**2)
    assert unknown_moment_symbols(term_var) == set(), "the variance must not depend on higher moments"
    # The sum over d_k terms: the mean adds up; the variance is d_k variances plus d_k(d_k - 1) covariances.
    mean = sp.Sum(term_mean, (i, 1, d_k)).doit()
    ordered_pairs = sp.Sum(sp.Sum(1, (sp.Symbol("j"), 1, d_k)), (i, 1, d_k)).doit() - d_k
    total_var = sp.Sum(term_var, (i, 1, d_k)).doit() + ordered_pairs * term_cov
    # Scaling by c = 1/sqrt(d_k) multiplies the variance by c^2.
    scaled_var = sp.simplify(total_var * (1 / sp.sqrt(d_k)) ** 2)
    assert is_zero(mean - claimed_mean), f"E[q.k]: derived {mean}, claimed {claimed_mean}"
    assert is_zero(total_var - claimed_variance), f"Var[q.k]: derived {total_var}, claimed {claimed_variance}"
    assert is_zero(scaled_var - claimed_scaled_variance), \
        f"Var[q.k/sqrt(d_k)]: derived {scaled_var}, claimed {claimed_scaled_variance}"
    # Concrete sizes: expand the whole sum with 2 d_k variables and take moments, no shortcut.
    for size in CONCRETE_SIZES:
        qs, ks = sp.symbols(f"q_1:{size + 1}", real=True), sp.symbols(f"k_1:{size + 1}", real=True)
        dot = sum(a * b for a, b in zip(qs, ks))
        m = {v: centred(sp.Integer(1), v.name) for v in (*qs, *ks)}
        assert is_zero(expect(dot, m) - claimed_mean.subs(d_k, size)), f"mean at d_k={size}"
        assert is_zero(variance(dot, m) - claimed_variance.subs(d_k, size)), f"variance at d_k={size}"
        # Var[c X] = c^2 Var[X] (c = 1/sqrt(d_k)), as in the general step; the ring works over the rationals.
        assert is_zero(variance(dot, m) / size - claimed_scaled_variance.subs(d_k, size)), \
            f"scaled variance at d_k={size}"
    return sp.Eq(sp.Symbol(r"\operatorname{Var}[q\cdot k / \sqrt{d_k}]"), scaled_var)


def stats_term_moments(q: sp.Expr, k: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Mean and variance of one product q k by sympy.stats (exact integration or summation)."""
    return sp.simplify(stats.E(q * k)), sp.simplify(stats.variance(q * k))


@pytest.mark.claim("attn.qk-variance", kind="proof")
def test_qk_dot_product_has_variance_d_k_and_unit_variance_after_scaling(measure):
    r"""attn.qk-variance: for q, k with i.i.d. entries of mean 0 and variance 1,

    $E[q\cdot k] = 0$, $\operatorname{Var}[q\cdot k] = d_k$, $\operatorname{Var}[q\cdot k/\sqrt{d_k}] = 1$.

    The per-term identities (E[q_i k_i] = 0, Var = 1, distinct terms uncorrelated) are proved for any
    distribution with those two moments (higher moments are free symbols that drop out); the sum over
    a symbolic d_k then follows from linearity; the full sum is also expanded for d_k = 1..8.
    sympy.stats confirms the per-term moments for Gaussian and Rademacher entries.
    """
    statement = derive_qk_variance(cf.QK_DOT_MEAN, cf.QK_DOT_VARIANCE, cf.SCALED_QK_VARIANCE)
    families = {
        "normal": (stats.Normal("q", 0, 1), stats.Normal("k", 0, 1)),
        "rademacher": (stats.FiniteRV("q", {-1: sp.S.Half, 1: sp.S.Half}),
                       stats.FiniteRV("k", {-1: sp.S.Half, 1: sp.S.Half})),
    }
    for name, (q, k) in families.items():
        assert stats_term_moments(q, k) == (0, 1), f"{name}: E[qk], Var[qk] should be 0, 1"
    measure("statement", r"E[q\cdot k]=0,\ \operatorname{Var}[q\cdot k]=d_k,\ " + sp.latex(statement))


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
WRONG_QK_VARIANCE = {
    "variance d_k^2": ((0, cf.d_k**2, 1), r"Var\[q\.k\]: derived"),
    "variance sqrt(d_k)": ((0, sp.sqrt(cf.d_k), 1), r"Var\[q\.k\]: derived"),
    "scaled variance 1/d_k": ((0, cf.d_k, 1 / cf.d_k), r"Var\[q\.k/sqrt\(d_k\)\]"),
    "scaled variance sqrt(d_k)": ((0, cf.d_k, sp.sqrt(cf.d_k)), r"Var\[q\.k/sqrt\(d_k\)\]"),
    "mean 1": ((1, cf.d_k, 1), r"E\[q\.k\]"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_QK_VARIANCE.values(), ids=WRONG_QK_VARIANCE.keys())
def test_qk_variance_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_qk_variance(*map(sp.sympify, wrong))


def derive_qk_variance_init(claimed_general: sp.Expr, claimed_torch_no_bias: sp.Expr,
                            claimed_xavier: sp.Expr) -> sp.Expr:
    """Var of the scaled score q.k/sqrt(d_k) at init, q = W_q x + b_q, k = W_k y + b_k, LayerNorm-ed x, y.

    claimed_general is a function of d_model, sigma_w^2 (cf.weight_var), sigma_b^2 (cf.bias_var);
    the other two are numbers: PyTorch's default nn.Linear init without bias, and variance 1/d_model.
    """
    d, sw, sb = cf.d_model, cf.weight_var, cf.bias_var
    i, l = sp.symbols("i l", positive=True, integer=True)
    xi, xl, w_i, w_l, b = sp.symbols("x_i x_l W_i W_l b", real=True)
    one_row = {w_i: centred(sw, "W_i"), w_l: centred(sw, "W_l"), b: centred(sb, "b")}
    # One coordinate q_j = sum_i W_ji x_i + b_j, x fixed. Diagonal terms: E[(W_ji x_i)^2] = sigma_w^2 x_i^2;
    assert is_zero(expect((w_i * xi) ** 2, one_row) - sw * xi**2)
    # off-diagonal terms vanish (independent zero-mean weights), and so do weight-bias cross terms:
    assert expect(w_i * xi * w_l * xl, one_row) == 0 and expect(w_i * xi * b, one_row) == 0
    # so E[q_j^2 | x] = sigma_w^2 sum_i x_i^2 + sigma_b^2, and LayerNorm (no affine) makes sum_i x_i^2 = d.
    x = sp.IndexedBase("x")
    q_second_moment = sw * sp.Sum(x[i] ** 2, (i, 1, d)) + sb
    layer_norm = {sp.Sum(x[i] ** 2, (i, 1, d)): d}
    q_second_moment = q_second_moment.subs(layer_norm)
    # Different coordinates j != l of q use different rows: E[q_j q_l | x] = 0. The same holds for k,
    # and W_q, W_k are independent, so E[s^2] = (1/d_k) sum_j E[q_j^2] E[k_j^2] and E[s] = 0:
    scaled_var = sp.Sum(q_second_moment * q_second_moment, (sp.Symbol("j"), 1, cf.d_k)).doit() / cf.d_k
    scaled_var = sp.factor(scaled_var)
    assert is_zero(scaled_var - claimed_general), f"derived {scaled_var}, claimed {claimed_general}"
    # PyTorch's nn.Linear: kaiming_uniform_(a = sqrt(5)): gain^2 = 2 / (1 + a^2), bound = sqrt(3) gain / sqrt(fan_in).
    a, fan_in = sp.sqrt(5), cf.fan_in
    bound = sp.sqrt(3) * sp.sqrt(2 / (1 + a**2)) / sp.sqrt(fan_in)
    assert is_zero(bound - 1 / sp.sqrt(fan_in)), "the default bound is 1/sqrt(fan_in)"
    torch_var = sp.simplify(stats.variance(stats.Uniform("w", -bound, bound)))
    assert is_zero(torch_var - cf.TORCH_LINEAR_WEIGHT_VAR), f"U(-b, b) variance {torch_var}"
    torch_no_bias = sp.simplify(claimed_general.subs({sw: torch_var.subs(fan_in, d), sb: 0}))
    torch_with_bias = sp.factor(claimed_general.subs({sw: torch_var.subs(fan_in, d), sb: torch_var.subs(fan_in, d)}))
    xavier = sp.simplify(claimed_general.subs({sw: cf.XAVIER_LIKE_WEIGHT_VAR.subs(fan_in, d), sb: 0}))
    assert is_zero(torch_no_bias - claimed_torch_no_bias), f"PyTorch default, no bias: {torch_no_bias}"
    assert is_zero(xavier - claimed_xavier), f"variance 1/d_model: {xavier}"
    # With the default bias the excess is (1 + 1/d)^2, which tends to 1: "about 1/9" at any realistic width.
    assert is_zero(torch_with_bias - (d + 1) ** 2 / (9 * d**2))
    assert sp.limit(torch_with_bias, d, sp.oo) == claimed_torch_no_bias
    check_qk_variance_init_concretely(claimed_general)
    return torch_with_bias


def check_qk_variance_init_concretely(claimed_general: sp.Expr) -> None:
    """Expand s = sum_j q_j k_j / sqrt(d_k) in full for d_model = 1..4, d_k = 1..3 and take moments.

    Holds for any fixed x, y (also y = x, a token's score with itself): E[s^2] =
    (sigma_w^2 |x|^2 + sigma_b^2)(sigma_w^2 |y|^2 + sigma_b^2); LayerNorm sets |x|^2 = |y|^2 = d_model.
    """
    sw, sb = cf.weight_var, cf.bias_var
    for dm in range(1, 5):
        xs, ys = sp.symbols(f"x_1:{dm + 1}", real=True), sp.symbols(f"y_1:{dm + 1}", real=True)
        for dk in range(1, 4):
            wq = sp.Matrix(dk, dm, lambda r, c: sp.Symbol(f"Wq_{r}{c}", real=True))
            wk = sp.Matrix(dk, dm, lambda r, c: sp.Symbol(f"Wk_{r}{c}", real=True))
            bq = sp.Matrix(dk, 1, lambda r, _: sp.Symbol(f"bq_{r}", real=True))
            bk = sp.Matrix(dk, 1, lambda r, _: sp.Symbol(f"bk_{r}", real=True))
            moments = {v: centred(sw, v.name) for v in (*wq, *wk)} | {v: centred(sb, v.name) for v in (*bq, *bk)}
            for other in (ys, xs):  # a different token, then the same token
                q, k = wq * sp.Matrix(xs) + bq, wk * sp.Matrix(other) + bk
                s = (q.T * k)[0, 0]  # the score times sqrt(d_k): Var[s / sqrt(d_k)] = Var[s] / d_k
                norm_x, norm_y = sum(v**2 for v in xs), sum(v**2 for v in other)
                expected = (sw * norm_x + sb) * (sw * norm_y + sb)
                assert expect(s, moments) == 0
                assert is_zero(variance(s, moments) / dk - expected), f"d_model={dm}, d_k={dk}"
                on_layer_norm_sphere = expected.subs({norm_x: dm, norm_y: dm})
                assert is_zero(on_layer_norm_sphere - claimed_general.subs(cf.d_model, dm)), \
                    f"d_model={dm}, d_k={dk}"


@pytest.mark.claim("attn.qk-variance-init", kind="proof")
def test_scaled_scores_have_unit_variance_only_under_variance_one_over_d_model_weights(measure):
    r"""attn.qk-variance-init: with LayerNorm-ed inputs ($|x|^2 = d_\text{model}$, no affine) and weights of
    variance $\sigma_w^2$ (biases $\sigma_b^2$), $\operatorname{Var}[q\cdot k/\sqrt{d_k}] =
    (d_\text{model}\sigma_w^2 + \sigma_b^2)^2$.

    Unit variance therefore needs $\sigma_w^2 = 1/d_\text{model}$ (Xavier for a square matrix) and no bias;
    PyTorch's default nn.Linear (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance 1/(3 fan_in)) gives 1/9
    without bias and $(1+1/d_\text{model})^2/9$ with its default bias. The per-coordinate identity is
    proved for a symbolic d_model with a symbolic LayerNorm constraint; the whole score is also expanded
    for d_model = 1..4 and d_k = 1..3.
    """
    torch_with_bias = derive_qk_variance_init(cf.SCALED_SCORE_VARIANCE_INIT, sp.Rational(1, 9), sp.Integer(1))
    measure("statement", r"\operatorname{Var}[q\cdot k/\sqrt{d_k}] = " + sp.latex(cf.SCALED_SCORE_VARIANCE_INIT)
            + r";\ \text{PyTorch default: } \tfrac19 \text{ (no bias)}, "
            + sp.latex(torch_with_bias) + r" \text{ (bias)};\ \sigma_w^2 = 1/d_\text{model}: 1")
    measure("torch_default_scaled_variance", cf.scaled_score_variance_torch_default(512), params={"d_model": 512},
            no_bias=cf.scaled_score_variance_torch_default(512, bias=False))


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
WRONG_INIT_VARIANCE = {
    "no square": ((cf.d_model * cf.weight_var + cf.bias_var, sp.Rational(1, 9), 1), r"derived .*, claimed"),
    "torch default 1/3": ((cf.SCALED_SCORE_VARIANCE_INIT, sp.Rational(1, 3), 1), r"PyTorch default, no bias"),
    "xavier 1/2": ((cf.SCALED_SCORE_VARIANCE_INIT, sp.Rational(1, 9), sp.Rational(1, 2)), r"variance 1/d_model"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_INIT_VARIANCE.values(), ids=WRONG_INIT_VARIANCE.keys())
def test_qk_variance_init_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_qk_variance_init(*map(sp.sympify, wrong))


def test_torch_linear_default_init_has_the_derived_bound_and_variance():
    """Numeric tie to torch: nn.Linear's weights fill U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (attn.qk-variance-init)."""
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    assert math.isclose(gain**2, 1 / 3, rel_tol=1e-12), f"gain^2 = {gain**2}, derivation used 1/3"
    torch.manual_seed(0)
    fan_in = 256
    layer = torch.nn.Linear(fan_in, 256, dtype=torch.float64)
    bound = fan_in**-0.5
    for tensor in (layer.weight, layer.bias):
        assert tensor.abs().max() <= bound
    # 65536 uniform draws reach within 1% of the bound except with probability 0.99^65536 ~ e^-658.
    assert layer.weight.abs().max() > 0.99 * bound
    assert math.isclose(cf.torch_linear_weight_variance(fan_in), bound**2 / 3, rel_tol=1e-12)
