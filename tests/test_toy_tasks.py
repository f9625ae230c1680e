"""The toy-experiment machinery: replicas train independently, the toy attention is the model's
multi-head attention, and the win-rate check has the false-alarm rate and power it reports."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binom, binomtest

from properties.stats import clopper_pearson
from properties.tolerances import BY_DTYPE
from properties.toy_tasks import (
    SequenceTask,
    multi_head_self_attention,
    one_block,
    one_block_params,
    sequence_loss,
    train,
    win_rate_check,
)
from transformer.attention import MultiHeadAttention

TASK = SequenceTask()
F32 = BY_DTYPE[torch.float32]


@pytest.mark.parametrize("h", [1, 2, 4])
def test_toy_attention_equals_the_models_multi_head_attention(h):
    """Replica r's attention is MultiHeadAttention(d_model, h) holding replica r's weights (W stored as x @ W)."""
    p = one_block_params(TASK, 2, 8, 16, seed=0)
    a = torch.randn(2, 3, TASK.n, 8)
    out, weights = multi_head_self_attention(p, a, h)
    for r in range(2):
        mha = MultiHeadAttention(8, h)
        with torch.no_grad():
            for name in ("w_q", "w_k", "w_v", "w_o"):
                getattr(mha, name).weight.copy_(p[f"{name}.w"][r].T)
                getattr(mha, name).bias.copy_(p[f"{name}.b"][r, 0])
            expected = mha(a[r], a[r], a[r])
        torch.testing.assert_close(out[r], expected, rtol=F32.rtol, atol=F32.atol)
        torch.testing.assert_close(weights[r], mha.last_weights, rtol=F32.rtol, atol=F32.atol)


def test_replicas_trained_together_equal_replicas_trained_alone():
    """Summing per-replica losses under an elementwise optimiser trains each replica as if it were alone."""
    stream = torch.Generator().manual_seed(1)
    batches = [TASK.batch(stream, (2, 4)) for _ in range(5)]  # (tokens, labels), each (R = 2, B = 4, S)

    def trained(params, replicas):
        def loss(p, step):
            x, y = batches[step]
            return sequence_loss(one_block(p, x[:replicas], 2)[0], y[:replicas])

        train(params, loss, len(batches), lambda ps: torch.optim.Adam(ps, lr=1e-2))
        return params

    start = one_block_params(TASK, 2, 8, 16, seed=0)
    alone = trained({k: v[:1].clone() for k, v in start.items()}, 1)
    together = trained(start, 2)
    for name, value in alone.items():
        torch.testing.assert_close(together[name][:1], value, rtol=F32.rtol, atol=F32.atol)


@pytest.mark.parametrize("n, budget", [(32, 2e-8), (48, 2e-8), (40, 1e-3)])
def test_win_rate_check_reports_its_false_alarm_rate_and_power(n, budget):
    """The cut is the largest whose false-alarm rate at p = 0.95 stays within the budget; power is the
    binomial probability of failing at p = 1/2; the interval is Clopper-Pearson's."""
    check = win_rate_check(n - 1, n, budget)
    assert check.alpha == pytest.approx(binom.cdf(check.cut - 1, n, 0.95)) and check.alpha <= budget
    assert binom.cdf(check.cut, n, 0.95) > budget  # one more would exceed the budget
    assert check.power == pytest.approx(binom.cdf(check.cut - 1, n, 0.5))
    assert check.passed and not win_rate_check(check.cut - 1, n, budget).passed
    expected = binomtest(n - 1, n).proportion_ci(confidence_level=1 - budget, method="exact")
    assert clopper_pearson(n - 1, n, budget) == pytest.approx((expected.low, expected.high))
