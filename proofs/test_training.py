"""Derivations: the shape of the warm-up schedule (equation 3) and inverted dropout's expectation."""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from sympy import stats

from proofs import closed_forms as cf
from proofs._algebra import expect, is_zero

s, w, d = cf.step, cf.warmup, cf.d_model
HALF = sp.Rational(1, 2)


def derive_noam_schedule(claimed_peak_step: sp.Expr, claimed_peak_value: sp.Expr,
                         claimed_decay_exponent: sp.Expr) -> dict[str, sp.Expr]:
    """lr = d^-1/2 min(s^-1/2, s w^-3/2): linear rise, peak, then s^-1/2 decay.

    Raises AssertionError if the claimed peak step, peak value (factor 1) or decay exponent is wrong.
    """
    lr = cf.NOAM_LR.subs(cf.factor, 1)
    warm, decay = s * w ** (-3 * HALF), s ** (-HALF)                   # the two branches of the min
    # Where the branches meet: one positive solution.
    crossings = sp.solve(sp.Eq(warm, decay), s)
    assert crossings == [claimed_peak_step], f"branches meet at {crossings}, claimed {claimed_peak_step}"
    # Which branch is the minimum: with t = s / w > 0, warm / decay = t^(3/2) <= 1 exactly when t <= 1.
    t = sp.Symbol("t", positive=True)
    ratio = sp.powsimp(sp.simplify((warm / decay).subs(s, t * w)), force=True)
    assert is_zero(ratio - t ** (3 * HALF)), ratio
    region = sp.solve_univariate_inequality(ratio <= 1, t, relational=False) & sp.Interval.open(0, sp.oo)
    assert region == sp.Interval.Lopen(0, 1), region
    piecewise = sp.Piecewise((d ** (-HALF) * warm, s <= w), (d ** (-HALF) * decay, True))
    # The Min form agrees with the piecewise form, exactly, at rational points on both sides of w.
    for t_value in (sp.Rational(1, 7), HALF, 1, sp.Rational(3, 2), 40):
        point = {s: t_value * 4000, w: 4000, d: 512}
        assert is_zero(lr.subs(point) - piecewise.subs(point)), t_value
    # Before warm-up: linear in s (zero second derivative) with positive slope d^-1/2 w^-3/2.
    assert sp.diff(warm, s, 2) == 0 and sp.diff(d ** (-HALF) * warm, s).is_positive
    # After: a power law s^a with a = d log(lr) / d log(s), decreasing.
    exponent = sp.simplify(sp.diff(sp.log(decay), s) * s)
    assert exponent == claimed_decay_exponent, f"decay exponent {exponent}, claimed {claimed_decay_exponent}"
    assert sp.diff(d ** (-HALF) * decay, s).is_negative
    # Rising then falling: the maximum is where the branches meet, and its value is d^-1/2 w^-1/2.
    peak_value = sp.simplify((d ** (-HALF) * warm).subs(s, crossings[0]))
    assert is_zero(peak_value - (d ** (-HALF) * decay).subs(s, crossings[0])), "continuous at the peak"
    assert is_zero(sp.powsimp(peak_value - claimed_peak_value, force=True)), \
        f"peak value {peak_value}, claimed {claimed_peak_value}"
    return {"peak_step": crossings[0], "peak_value": peak_value, "decay_exponent": exponent}


@pytest.mark.claim("train.noam-schedule", kind="proof")
def test_noam_rate_rises_linearly_peaks_at_warmup_then_decays_as_inverse_sqrt(measure):
    r"""train.noam-schedule: $\eta(s) = d^{-1/2}\min(s^{-1/2}, s\,w^{-3/2})$ equals $d^{-1/2}w^{-3/2}s$ for
    $s \le w$ and $d^{-1/2}s^{-1/2}$ after; the branches meet only at $s = w$, where the rate peaks at
    $(d\,w)^{-1/2}$ (solve and an inequality in t = s/w; the Min and piecewise forms agree exactly at
    rational points on both sides).
    """
    result = derive_noam_schedule(cf.NOAM_PEAK_STEP, cf.NOAM_PEAK_LR, -HALF)
    measure("statement", r"\arg\max_s \eta = " + sp.latex(result["peak_step"]) + r",\ \max_s\eta = "
            + sp.latex(cf.NOAM_PEAK_LR) + r",\ \eta \propto s \ (s\le w),\ \eta\propto s^{"
            + sp.latex(result["decay_exponent"]) + r"}\ (s \ge w)")


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
WRONG_SCHEDULE = {
    "peak at 2 warmup": ((2 * cf.warmup, cf.NOAM_PEAK_LR, -HALF), r"branches meet"),
    "peak value 1/(d warmup)": ((cf.warmup, 1 / (cf.d_model * cf.warmup), -HALF), r"peak value"),
    "peak value d^-1/2 only": ((cf.warmup, cf.d_model ** (-HALF), -HALF), r"peak value"),
    "decay 1/step": ((cf.warmup, cf.NOAM_PEAK_LR, -1), r"decay exponent"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_SCHEDULE.values(), ids=WRONG_SCHEDULE.keys())
def test_schedule_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_noam_schedule(*map(sp.sympify, wrong))


def test_noam_lr_callable_matches_the_derived_branches():
    """Numeric tie: cf.noam_lr (lambdified Min) equals the derived piecewise form at every step."""
    for d_model, warmup in ((512, 4000), (1024, 4000), (8, 10)):
        for step_ in range(1, 3 * warmup, max(1, warmup // 97)):
            branch = step_ * warmup**-1.5 if step_ <= warmup else step_**-0.5
            assert math.isclose(cf.noam_lr(step_, d_model, warmup), d_model**-0.5 * branch, rel_tol=1e-14)
        assert cf.noam_peak(d_model, warmup) == (warmup, pytest.approx(cf.noam_lr(warmup, d_model, warmup), rel=1e-14))


def derive_dropout_expectation(claimed_scale: sp.Expr, claimed_mean: sp.Expr,
                               claimed_variance: sp.Expr) -> sp.Expr:
    """Inverted dropout y = m x c with m ~ Bernoulli(1 - p): the c that keeps E[y] = x, and Var[y]."""
    p, x = cf.p, cf.x
    keep = stats.Bernoulli("m", 1 - p)
    # Plain dropout shrinks the mean to (1 - p) x, which test time would have to undo...
    assert sp.simplify(stats.E(keep * x) - (1 - p) * x) == 0
    # ...so scale kept units by c, chosen so that E[m x c] = x.
    c = sp.Symbol("c", positive=True)
    scales = sp.solve(sp.Eq(stats.E(keep * x * c), x), c)
    assert len(scales) == 1 and is_zero(scales[0] - claimed_scale), f"scale {scales}, claimed {claimed_scale}"
    y = keep * x * scales[0]
    mean, var = sp.simplify(stats.E(y)), sp.factor(stats.variance(y))
    assert is_zero(mean - claimed_mean), f"E[y] = {mean}, claimed {claimed_mean}"
    assert is_zero(var - claimed_variance), f"Var[y] = {var}, claimed {claimed_variance}"
    # Through a linear map the expectation survives: E[sum_i w_i m_i x_i c] = sum_i w_i x_i, sizes 1..8
    # (independent masks; E[m^k] = 1 - p for k >= 1), and with sympy.stats for sizes 1..2.
    for size in range(1, 9):
        ms, xs, ws = (sp.symbols(f"{name}_1:{size + 1}", real=True) for name in ("m", "x", "w"))
        bernoulli = {mi: (lambda k: sp.Integer(1) if k == 0 else 1 - p) for mi in ms}
        layer = sp.Add(*(wi * mi * xi * c for wi, mi, xi in zip(ws, ms, xs)))
        expected = expect(layer, bernoulli).subs(c, scales[0])
        assert is_zero(expected - sp.Add(*(wi * xi for wi, xi in zip(ws, xs)))), size
        if size <= 2:
            masks = [stats.Bernoulli(f"M{i}", 1 - p) for i in range(size)]
            layer_rv = sp.Add(*(wi * mi * xi * scales[0] for wi, mi, xi in zip(ws, masks, xs)))
            assert is_zero(sp.simplify(stats.E(layer_rv)) - sp.Add(*(wi * xi for wi, xi in zip(ws, xs))))
    # Not every statistic survives: the second moment grows to x^2 / (1 - p), so a non-linearity after
    # dropout sees different inputs in training and at test time (only the mean is matched).
    assert is_zero(sp.simplify(stats.E(y**2)) - x**2 / (1 - p))
    return var


@pytest.mark.claim("train.dropout-expectation", kind="proof")
def test_inverted_dropout_keeps_the_expectation_so_test_time_needs_no_rescaling(measure):
    r"""train.dropout-expectation: with keep mask $m \sim \mathrm{Bernoulli}(1-p)$ and $y = m x/(1-p)$,
    $E[y] = x$ and $\operatorname{Var}[y] = x^2 p/(1-p)$; $1/(1-p)$ is the only scale that keeps the mean,
    and the mean also survives any linear layer. sympy.stats computes the moments; the linear layer is
    checked for widths 1..8 by expectation algebra (1..2 also with sympy.stats). Only the mean is
    matched: $E[y^2] = x^2/(1-p)$.
    """
    derive_dropout_expectation(cf.DROPOUT_SCALE, cf.DROPOUT_OUTPUT_MEAN, cf.DROPOUT_OUTPUT_VARIANCE)
    measure("statement", r"E\Big[\frac{m x}{1-p}\Big] = x,\ \operatorname{Var}\Big[\frac{m x}{1-p}\Big] = "
            + sp.latex(cf.DROPOUT_OUTPUT_VARIANCE))


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
WRONG_DROPOUT = {
    "scale 1 - p": ((1 - cf.p, cf.x, cf.DROPOUT_OUTPUT_VARIANCE), r"scale"),
    "mean (1 - p) x": ((cf.DROPOUT_SCALE, (1 - cf.p) * cf.x, cf.DROPOUT_OUTPUT_VARIANCE), r"E\[y\]"),
    "variance x^2 p (1 - p)": ((cf.DROPOUT_SCALE, cf.x, cf.x**2 * cf.p * (1 - cf.p)), r"Var\[y\]"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_DROPOUT.values(), ids=WRONG_DROPOUT.keys())
def test_dropout_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_dropout_expectation(*wrong)


def test_torch_dropout_output_values_are_zero_or_the_derived_scale():
    """Numeric tie: F.dropout in training keeps units multiplied by exactly 1 / (1 - p); eval is identity."""
    torch.manual_seed(0)
    x = torch.rand(4096, dtype=torch.float64) + 0.5
    for p_drop in (0.1, 0.3, 0.5):
        y = torch.nn.functional.dropout(x, p_drop, training=True)
        kept = y != 0
        assert 0 < int(kept.sum()) < x.numel()
        assert torch.allclose(y[kept], x[kept] * cf.dropout_scale(p_drop), rtol=1e-15, atol=0)
        assert torch.equal(torch.nn.functional.dropout(x, p_drop, training=False), x)
