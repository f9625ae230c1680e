"""Derivations: softmax saturates under large logits; the 1/sqrt(d_k) factor can live in W_q's init."""

from __future__ import annotations

import pytest
import sympy as sp

from proofs import closed_forms as cf
from proofs._algebra import is_zero, numerator_has_nonnegative_coefficients


def softmax(logits: list[sp.Expr]) -> list[sp.Expr]:
    """softmax(z)_i = exp(z_i) / sum_j exp(z_j)."""
    denominator = sp.Add(*(sp.exp(z) for z in logits))
    return [sp.exp(z) / denominator for z in logits]


def softmax_jacobian(probs: list[sp.Expr]) -> sp.Matrix:
    """d softmax_i / d z_j = p_i (delta_ij - p_j)."""
    size = len(probs)
    return sp.Matrix(size, size, lambda i, j: probs[i] * (int(i == j) - probs[j]))


def check_entries_bounded_by_off_max_mass(size: int) -> None:
    """For n = size, every |J_ij| and 1 - p_max are at most S = sum_{i != max} exp(-beta a_i).

    Write u_i = exp(-beta a_i) > 0 for the n - 1 entries behind the arg-max (gaps a_i > 0). Then
    p_max = 1 / (1 + S), p_i = u_i / (1 + S). Each bound S - (quantity) is a rational function of the u's
    whose numerator and denominator have non-negative coefficients, hence >= 0 for positive u's.
    """
    u = list(sp.symbols(f"u_1:{size}", positive=True))
    total = sp.Add(*u)
    probs = [1 / (1 + total)] + [ui / (1 + total) for ui in u]
    assert is_zero(sp.Add(*probs) - 1)
    jac = softmax_jacobian(probs)
    quantities = [1 - probs[0]] + [abs_entry(jac[i, j], i, j) for i in range(size) for j in range(size)]
    for quantity in quantities:
        assert numerator_has_nonnegative_coefficients(total - quantity, u), f"n={size}: {quantity} > S?"


def abs_entry(entry: sp.Expr, i: int, j: int) -> sp.Expr:
    """|J_ij|: diagonal entries p_i (1 - p_i) are >= 0, off-diagonal ones -p_i p_j are <= 0."""
    return entry if i == j else -entry


@pytest.mark.claim("attn.softmax-saturation", kind="proof")
def test_scaled_up_logits_drive_softmax_to_one_hot_and_its_jacobian_to_zero(measure):
    r"""attn.softmax-saturation: for logits z with a unique arg-max (lead g > 0 over the runner-up),

    $\lim_{\beta\to\infty}\operatorname{softmax}(\beta z) = e_{\arg\max z}$ and
    $\lim_{\beta\to\infty}\partial\operatorname{softmax}(\beta z)/\partial z = 0$.

    General n: 1 - p_max and every Jacobian entry are at most S = sum_{i != max} exp(-beta a_i)
    <= (n - 1) exp(-beta g) (checked as a rational-function inequality for n = 2..4; the last step uses
    exp(-beta a_i) <= exp(-beta g) for a_i >= g), and that bound, even times beta (the chain rule for
    the unscaled logits), tends to 0 for symbolic n. Exact limits for concrete logits confirm it; with
    a tied maximum the limit is not one-hot (the condition is needed).
    """
    beta, n, g = cf.beta, cf.n, cf.gap
    # Step 1: softmax is shift-invariant, so take the arg-max logit as 0 and the others as -a_i.
    z = sp.symbols("z_1:4", real=True)
    c = sp.Symbol("c", real=True)
    assert all(is_zero(a - b) for a, b in zip(softmax([zi + c for zi in z]), softmax(list(z))))
    # Step 2: every quantity that must vanish is bounded by the off-max mass S (n = 2..6).
    for size in range(2, 5):
        check_entries_bounded_by_off_max_mass(size)
    # Step 3: S <= (n - 1) exp(-beta g), which tends to 0, also after the factor beta.
    bound = cf.SOFTMAX_OFF_MAX_BOUND
    assert sp.simplify(bound - (n - 1) * sp.exp(-beta * g)) == 0
    assert sp.limit(bound, beta, sp.oo) == 0
    assert sp.limit(beta * bound, beta, sp.oo) == 0
    # Step 4: exact limits for concrete logits. With u = exp(-beta) (beta -> oo is u -> 0+),
    # softmax(beta z)_i = u^(max z - z_i) / sum_j u^(max z - z_j) is a rational function of u.
    u = sp.Symbol("u", positive=True)
    def saturating(logits: list[int]) -> list[sp.Expr]:
        top = max(logits)
        denominator = sp.Add(*(u ** (top - zj) for zj in logits))
        return [u ** (top - zi) / denominator for zi in logits]
    probs = saturating([3, 1, -6])
    assert [sp.limit(pi, u, 0, "+") for pi in probs] == [1, 0, 0]
    assert all(sp.limit(entry, u, 0, "+") == 0 for entry in softmax_jacobian(probs))
    # A tie at the top: the limit splits the mass and the Jacobian does not vanish.
    tied = saturating([1, 1, 0])
    assert [sp.limit(pi, u, 0, "+") for pi in tied] == [sp.S.Half, sp.S.Half, 0]
    assert sp.limit(softmax_jacobian(tied)[0, 0], u, 0, "+") == sp.Rational(1, 4)
    measure("statement", r"\max_{ij}\left|\frac{\partial\,\mathrm{softmax}(\beta z)_i}{\partial z_j}\right|,\ "
            r"1-\max_i \mathrm{softmax}(\beta z)_i \le " + sp.latex(bound)
            + r" \xrightarrow[\beta\to\infty]{} 0 \ (g = z_{(1)} - z_{(2)} > 0)")


def fold_scale_into_query_weights(n_tokens: int, width: int, head_width: int, with_bias: bool) -> sp.Matrix:
    """Scores with 1/sqrt(d_k) applied to Q K^T minus scores with W_q (and b_q) divided by sqrt(d_k) instead."""
    X = sp.Matrix(n_tokens, width, lambda i, j: sp.Symbol(f"x_{i}{j}", real=True))
    Wq = sp.Matrix(width, head_width, lambda i, j: sp.Symbol(f"Wq_{i}{j}", real=True))
    Wk = sp.Matrix(width, head_width, lambda i, j: sp.Symbol(f"Wk_{i}{j}", real=True))
    ones = sp.ones(n_tokens, 1)
    def bias(name: str) -> sp.Matrix:
        if not with_bias:
            return sp.zeros(1, head_width)
        return sp.Matrix(1, head_width, lambda _, j: sp.Symbol(f"{name}_{j}", real=True))
    bq, bk = bias("bq"), bias("bk")
    root = sp.sqrt(cf.d_k)  # a symbol: the identity does not depend on the value of d_k
    K = X * Wk + ones * bk
    scaled_scores = (X * Wq + ones * bq) * K.T / root
    folded_scores = (X * (Wq / root) + ones * (bq / root)) * K.T
    return (scaled_scores - folded_scores).applyfunc(sp.expand)


@pytest.mark.claim("attn.scale-folded-into-init", kind="proof")
def test_dividing_query_weights_by_sqrt_d_k_gives_the_same_scores_as_scaling(measure):
    r"""attn.scale-folded-into-init:
    $\frac{(XW_q)(XW_k)^\top}{\sqrt{d_k}} = \big(X\tfrac{W_q}{\sqrt{d_k}}\big)(XW_k)^\top$.

    Matrix products are linear in each factor. Proved with matrix symbols in general and with explicit
    symbolic entries for several shapes, including a query bias, which must be divided too (T5 has
    no biases; with one, dividing only the weight leaves a residual, shown here). The identity is about
    scores: training dynamics of the two parametrisations differ (gradients scale differently).
    """
    X = sp.MatrixSymbol("X", cf.n, cf.d_model)
    Wq, Wk = sp.MatrixSymbol("W_q", cf.d_model, cf.d_k), sp.MatrixSymbol("W_k", cf.d_model, cf.d_k)
    root = sp.sqrt(cf.d_k)
    general = (X * Wq) * (X * Wk).T / root - (X * (Wq / root)) * (X * Wk).T
    assert general == sp.ZeroMatrix(cf.n, cf.n), f"matrix-symbol residual {general}"  # scalars commute out
    for shape in ((1, 1, 1), (2, 3, 2), (3, 4, 2), (3, 2, 4)):
        assert fold_scale_into_query_weights(*shape, with_bias=True) == sp.zeros(shape[0], shape[0]), shape
    # Dividing W_q alone but keeping b_q is not the same model: a residual b_q (1 - 1/sqrt(d_k)) K^T remains.
    X2 = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"x_{i}{j}", real=True))
    W = sp.Matrix(2, 2, lambda i, j: sp.Symbol(f"w_{i}{j}", real=True))
    b = sp.Matrix([[sp.Symbol("b_0", real=True), sp.Symbol("b_1", real=True)]])
    weight_only = ((X2 * W + sp.ones(2, 1) * b) * (X2 * W).T / root
                   - (X2 * (W / root) + sp.ones(2, 1) * b) * (X2 * W).T).applyfunc(sp.expand)
    assert weight_only != sp.zeros(2, 2)
    measure("statement", r"\frac{(XW_q+b_q)(XW_k+b_k)^\top}{\sqrt{d_k}} = "
            r"\Big(X\frac{W_q}{\sqrt{d_k}}+\frac{b_q}{\sqrt{d_k}}\Big)(XW_k+b_k)^\top")
