"""Multi-head attention: what splitting into heads computes, costs, and can express.

Splitting d_model into h heads of width d_model / h and attending in each at once (one reshape) equals
running each head's slice of W^Q, W^K, W^V alone and concatenating the results before W^O, and it
costs the same FLOPs and parameters as one head of full width. Each head's score matrix has rank at
most d_model / h. Heads are concatenated, not averaged: two heads can return two positions side by
side where one head can only return their average. The test taking ``attention_impl`` runs against
every implementation of ``properties/conformance.py``.
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

import transformer.attention as attention_module
from proofs.closed_forms import attention_core_flops, mha_params, projection_flops
from properties.conformance import PROPERTIES, attention_property, reference_attention
from properties.strategies import attention_cases, gaussian, head_layouts, seeds
from properties.tolerances import FLOAT64
from transformer import MultiHeadAttention


@pytest.mark.claim("heads.reshape-equals-loop", kind="exact")
@attention_property("reshape-equals-loop")
def test_all_heads_at_once_equal_each_head_alone(attention_impl, case):
    """heads.reshape-equals-loop, for any implementation: attending with all H heads in one call
    gives, for each head h, what a one-head call on head h's queries, keys, values and mask gives."""
    PROPERTIES["reshape-equals-loop"].check(attention_impl, case)


@pytest.mark.claim("heads.reshape-equals-loop", kind="exact")
@given(case=attention_cases(), seed=seeds)
def test_multi_head_attention_equals_a_loop_over_per_head_weight_slices(case, seed):
    """heads.reshape-equals-loop: the model's reshape/transpose multi-head attention equals
    sum_i Attention(x W_i^Q + b_i^Q, ...) W_i^O + b^O, each head computed alone from its own slices
    (``head_projections(i)`` and the matching bias rows) with the textbook formula."""
    (B, H, n_q, n_k, d_k), allowed = case
    torch.manual_seed(seed)
    mha = MultiHeadAttention(H * d_k, H).double()
    query, memory = gaussian((B, n_q, H * d_k), seed), gaussian((B, n_k, H * d_k), seed + 1)
    expected = mha.w_o.bias.expand(B, n_q, H * d_k).clone()
    with torch.no_grad():
        for i in range(H):
            w, rows = mha.head_projections(i), slice(i * d_k, (i + 1) * d_k)
            q = query @ w["w_q"].T + mha.w_q.bias[rows]  # (B, S_q, d_k)
            k = memory @ w["w_k"].T + mha.w_k.bias[rows]
            v = memory @ w["w_v"].T + mha.w_v.bias[rows]
            mask = allowed[:, i if allowed.shape[1] == H else 0][:, None]
            head, _ = reference_attention(q[:, None], k[:, None], v[:, None], mask)  # (B, 1, S_q, d_k)
            expected += head[:, 0] @ w["w_o"].T
        torch.testing.assert_close(mha(query, memory, memory, allowed), expected, **FLOAT64)


def _forward_flops(mha, x) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        mha(x, x, x)
    return counter.get_total_flops()


@pytest.mark.claim("heads.same-cost-as-single", kind="measured")
@given(layout=head_layouts(max_heads=8, max_d_head=6), n=st.integers(1, 12))
def test_flops_and_parameters_do_not_depend_on_the_number_of_heads(layout, n):
    """heads.same-cost-as-single: h heads of width d_model / h cost what one head of width d_model
    costs: FlopCounterMode counts 8 n d^2 (projections) + 4 n^2 d (core) for every h, and the
    parameter count is 4 d^2 + 4 d for every h."""
    h, _, d = layout
    x = torch.zeros(1, n, d)
    for heads in (h, 1):
        mha = MultiHeadAttention(d, heads)
        assert _forward_flops(mha, x) == projection_flops(n, d) + attention_core_flops(n, d)
        assert sum(p.numel() for p in mha.parameters()) == mha_params(d)


@pytest.mark.claim("heads.same-cost-as-single", kind="measured")
def test_flops_and_parameters_by_head_count_table(measure):
    """heads.same-cost-as-single: the paper's width d_model = 512 at n = 64, for h = 1 .. 512."""
    d, n = 512, 64
    x = torch.zeros(1, n, d)
    flops, params = {}, {}
    for heads in (1, 2, 8, 64, 512):
        with torch.device("meta"):
            mha = MultiHeadAttention(d, heads)
        params[heads] = sum(p.numel() for p in mha.parameters())
        flops[heads] = _forward_flops(MultiHeadAttention(d, heads), x)
    measure("flops_by_heads", flops, closed_form=projection_flops(n, d) + attention_core_flops(n, d), n=n, d_model=d)
    measure("parameters_by_heads", params, closed_form=mha_params(d), d_model=d)
    assert set(flops.values()) == {projection_flops(n, d) + attention_core_flops(n, d)}
    assert set(params.values()) == {mha_params(d)}


def _captured_qk(mha, x, allowed=None):
    """The per-head queries and keys the model hands to its attention function, (B, H, S, d_k) each."""
    seen = []

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.detach(), k.detach()))
        return real(q, k, v, *args, **kwargs)

    real = attention_module.scaled_dot_product_attention
    with mock.patch.object(attention_module, "scaled_dot_product_attention", spy), torch.no_grad():
        mha(x, x, x, allowed)
    return seen[0]


@pytest.mark.claim("heads.low-rank-per-head", kind="exact")
@given(layout=head_layouts(min_heads=2, max_heads=4, max_d_head=3), extra=st.integers(1, 4), seed=seeds)
def test_each_head_scores_have_rank_at_most_d_head(layout, extra, seed):
    """heads.low-rank-per-head: with n > d_head tokens, each head's n x n score matrix Q_i K_i^T has
    rank exactly d_head (at most d_head; generic inputs reach it), while one head of width d_model
    reaches rank min(n, d_model) on the same tokens."""
    h, d_head, d = layout
    n = d_head + extra
    x = gaussian((1, n, d), seed)
    torch.manual_seed(seed)
    q, k = _captured_qk(MultiHeadAttention(d, h).double(), x)
    ranks = torch.linalg.matrix_rank(q @ k.transpose(-2, -1))[0]  # (H,)
    assert (ranks == min(n, d_head)).all(), f"per-head ranks {ranks.tolist()}, d_head {d_head}, n {n}"
    torch.manual_seed(seed)
    q1, k1 = _captured_qk(MultiHeadAttention(d, 1).double(), x)
    assert int(torch.linalg.matrix_rank(q1 @ k1.transpose(-2, -1))[0, 0]) == min(n, d)


def _set(linear, weight):
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.zero_()


@pytest.mark.claim("heads.no-averaging", kind="exact")
@given(n=st.integers(2, 5), seed=seeds, data=st.data())
def test_two_heads_return_two_positions_side_by_side_one_head_only_their_average(n, seed, data):
    """heads.no-averaging: tokens x_j = (e_j, e_j) in R^(2n), values = tokens. Queries asking for
    (A, B) with A != B: two heads of width n (W_q = 1000 I, W_k = W_v = W_o = I) return (e_A, e_B) exactly,
    one head from each position. One head of width 2n with the same value and output maps returns
    sum_j w_j (e_j, e_j), whose two halves are always equal, whatever its W_q and W_k: at best the
    average of A's and B's values, never (e_A, e_B)."""
    pairs = data.draw(st.lists(st.permutations(range(n)).map(lambda p: p[:2]), min_size=2, max_size=4), label="pairs")
    eye = torch.eye(n, dtype=torch.float64)
    tokens = torch.cat([eye, eye], 1)[None]  # (1, n, 2n)
    query = torch.stack([torch.cat([eye[a], eye[b]]) for a, b in pairs])[None]  # (1, S_q, 2n)
    target = query.clone()  # (e_A, e_B) per query
    two = MultiHeadAttention(2 * n, 2).double()
    one = MultiHeadAttention(2 * n, 1).double()
    for mha in (two, one):
        for linear, scale in ((mha.w_q, 1000.0), (mha.w_k, 1.0), (mha.w_v, 1.0), (mha.w_o, 1.0)):
            _set(linear, scale * torch.eye(2 * n, dtype=torch.float64))
    with torch.no_grad():
        torch.testing.assert_close(two(query, tokens, tokens), target, **FLOAT64)
        averaged = one(query, tokens, tokens)
        torch.testing.assert_close(averaged, (target + target.roll(n, -1)) / 2, **FLOAT64)  # (e_A + e_B)/2 twice
        torch.manual_seed(seed)
        for linear in (one.w_q, one.w_k):
            _set(linear, torch.randn(2 * n, 2 * n, dtype=torch.float64) * 10)
        anything = one(query, tokens, tokens)
    torch.testing.assert_close(anything[..., :n], anything[..., n:], **FLOAT64)
    assert ((anything - target).abs().amax(-1) >= 0.5 - 1e-9).all(), "one head reached (e_A, e_B)"
