"""The derivations can fail: each rejects plausible wrong right-hand sides (off by a power, a factor, a branch).

Each case passes a wrong claimed form to the same derive_* function the proof tests call with the
closed forms of ``proofs/closed_forms.py``, and expects its exact assertion to fail.
"""

from __future__ import annotations

import pytest
import sympy as sp

from proofs import closed_forms as cf
from proofs.test_attention_variance import derive_qk_variance, derive_qk_variance_init
from proofs.test_costs import derive_attention_complexity, derive_block_cost, derive_heads_cost
from proofs.test_training import derive_dropout_expectation, derive_noam_schedule

HALF = sp.Rational(1, 2)

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


WRONG_INIT_VARIANCE = {
    "no square": ((cf.d_model * cf.weight_var + cf.bias_var, sp.Rational(1, 9), 1), r"derived .*, claimed"),
    "torch default 1/3": ((cf.SCALED_SCORE_VARIANCE_INIT, sp.Rational(1, 3), 1), r"PyTorch default, no bias"),
    "xavier 1/2": ((cf.SCALED_SCORE_VARIANCE_INIT, sp.Rational(1, 9), sp.Rational(1, 2)), r"variance 1/d_model"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_INIT_VARIANCE.values(), ids=WRONG_INIT_VARIANCE.keys())
def test_qk_variance_init_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_qk_variance_init(*map(sp.sympify, wrong))


WRONG_COMPLEXITY = {
    "one matmul only": (2 * cf.n**2 * cf.d_model, r"derived .*, claimed"),
    "quadratic in d": (4 * cf.n * cf.d_model**2, r"derived .*, claimed"),
    "both quadratic": (4 * cf.n**2 * cf.d_model**2, r"derived .*, claimed"),
    "2 n^2 d - n": (cf.n**2 * cf.d_model * 2 - cf.n, r"derived .*, claimed"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_COMPLEXITY.values(), ids=WRONG_COMPLEXITY.keys())
def test_complexity_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_attention_complexity(wrong)


WRONG_HEADS_COST = {
    "params grow with h": ((4 * cf.d_model**2 + 4 * cf.d_model * cf.h, cf.ATTENTION_FLOPS), r"derived params"),
    "params without biases": ((4 * cf.d_model**2, cf.ATTENTION_FLOPS), r"derived params"),
    "core shrinks with h": ((cf.MHA_PARAMS, cf.PROJECTION_FLOPS + cf.ATTENTION_CORE_FLOPS / cf.h), r"derived FLOPs"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_HEADS_COST.values(), ids=WRONG_HEADS_COST.keys())
def test_heads_cost_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_heads_cost(*wrong)


WRONG_BLOCK_COST = {
    "crossover at d": ((cf.d_model, 2), r"crossover"),
    "crossover at 4d": ((4 * cf.d_model, 2), r"crossover"),
    "weight ratio 4": ((2 * cf.d_model, 4), r"weight ratio"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_BLOCK_COST.values(), ids=WRONG_BLOCK_COST.keys())
def test_block_cost_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_block_cost(*map(sp.sympify, wrong))


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


WRONG_DROPOUT = {
    "scale 1 - p": ((1 - cf.p, cf.x, cf.DROPOUT_OUTPUT_VARIANCE), r"scale"),
    "mean (1 - p) x": ((cf.DROPOUT_SCALE, (1 - cf.p) * cf.x, cf.DROPOUT_OUTPUT_VARIANCE), r"E\[y\]"),
    "variance x^2 p (1 - p)": ((cf.DROPOUT_SCALE, cf.x, cf.x**2 * cf.p * (1 - cf.p)), r"Var\[y\]"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_DROPOUT.values(), ids=WRONG_DROPOUT.keys())
def test_dropout_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_dropout_expectation(*wrong)
