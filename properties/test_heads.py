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
from torch.utils._python_dispatch import TorchDispatchMode
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


class _ScoreMapWork(TorchDispatchMode):
    """Counts, over one forward pass, the elements written by operations whose output has the shape of the
    attention maps (B, H, S_q, S_k): the scaling, masking and softmax work that FlopCounterMode (matrix
    products only) leaves out. ``largest`` is the largest such tensor alive at once, in elements."""

    def __init__(self, map_shape: tuple[int, ...]):
        super().__init__()
        self.map_shape, self.elements, self.ops, self.largest = tuple(map_shape), 0, [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        is_view = any(r.alias_info is not None for r in func._schema.returns)  # views write nothing
        if isinstance(out, torch.Tensor) and tuple(out.shape) == self.map_shape and not is_view:
            self.elements += out.numel()
            self.ops.append(str(func.overloadpacket.__name__))
            self.largest = max(self.largest, out.numel())
        return out


@pytest.mark.claim("heads.same-cost-as-single", kind="measured")
def test_attention_map_memory_and_softmax_work_grow_with_the_number_of_heads(measure):
    """heads.same-cost-as-single, the part that does depend on h: at d_model = 512 and n = 96, every head keeps
    its own n x n attention map, so the maps hold h n^2 numbers (h n^2 * 8 bytes in float64), and the scaling and
    softmax write h n^2 elements per operation: both are measured on the model's forward pass and are exactly
    proportional to h, while its matrix-product FLOPs are not (the test above). n = 96 differs from every d_head
    here, so no query or key tensor has the maps' shape."""
    d, n = 512, 96
    x = torch.zeros(1, n, d, dtype=torch.float64)
    for heads in (1, 2, 8, 64):
        mha = MultiHeadAttention(d, heads).double()
        work = _ScoreMapWork((1, heads, n, n))
        with work, torch.no_grad():
            mha(x, x, x)
        per_map = work.elements / (heads * n * n)
        measure("attention_map_bytes", work.largest * x.element_size(), params={"h": heads}, unit="bytes", n=n, d_model=d,
                closed_form=heads * n * n * x.element_size())
        measure("score_map_elementwise_work", work.elements, params={"h": heads}, unit="elements", n=n, d_model=d,
                operations=work.ops, passes_per_element=per_map)
        assert work.largest == heads * n * n, f"h={heads}: largest score-map tensor {work.largest}, expected h n^2"
        assert per_map == int(per_map) and per_map >= 2, f"h={heads}: {work.ops}"  # at least scaling and softmax
        if heads == 1:
            passes = per_map
        assert per_map == passes, "the element-wise passes per score must not depend on h"


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


def _pair_task(n: int):
    """Tokens x_j = (e_j, e_j) in R^(2n) (affinely independent) and, for every ordered pair A != B, a query
    (e_A, e_B) whose target output is (e_A, e_B): position A's first half beside position B's second half.
    Shapes: tokens (1, n, 2n), queries and targets (1, n (n - 1), 2n)."""
    eye = torch.eye(n, dtype=torch.float64)
    tokens = torch.cat([eye, eye], 1)[None]
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    queries = torch.stack([torch.cat([eye[a], eye[b]]) for a, b in pairs])[None]
    return tokens, queries, queries.clone()


def _affine_rank(points: torch.Tensor, rtol: float = 1e-9) -> int:
    """Dimension of the affine hull of the rows of points (m, D): the rank of their differences to the first."""
    diffs = points - points[:1]
    sv = torch.linalg.svdvals(diffs)
    return int((sv > rtol * max(1.0, float(sv.max()))).sum())


@pytest.mark.claim("heads.no-averaging", kind="exact")
@given(n=st.integers(2, 5), seed=seeds)
def test_two_heads_return_two_positions_side_by_side(n, seed):
    """heads.no-averaging: two heads of width n (W_q = 1000 I, W_k = W_v = W_o = I) return (e_A, e_B) for every
    ordered pair: each head reads one position. A random bias on W_o shifts the output and nothing else."""
    tokens, queries, targets = _pair_task(n)
    two = MultiHeadAttention(2 * n, 2).double()
    for linear, scale in ((two.w_q, 1000.0), (two.w_k, 1.0), (two.w_v, 1.0), (two.w_o, 1.0)):
        _set(linear, scale * torch.eye(2 * n, dtype=torch.float64))
    with torch.no_grad():
        torch.testing.assert_close(two(queries, tokens, tokens), targets, **FLOAT64)
        two.w_o.bias.copy_(gaussian((2 * n,), seed))
        torch.testing.assert_close(two(queries, tokens, tokens), targets + two.w_o.bias, **FLOAT64)


@pytest.mark.claim("heads.no-averaging", kind="exact")
@given(n=st.integers(3, 5), scale=st.floats(0.1, 100.0), seed=seeds)
def test_one_head_with_any_maps_cannot_return_two_positions_when_there_are_three_or_more(n, scale, seed):
    """heads.no-averaging, with free maps: one head of the same total width 2n and arbitrary W_q, W_k, W_v, W_o and
    biases outputs W_o (W_v sum_j w_j x_j + b_v) + b_o with sum_j w_j = 1, an affine image of a point of the
    tokens' (n - 1)-dimensional hull, so its outputs over all queries span an affine space of dimension at most
    n - 1. The targets (e_A, e_B) over all ordered pairs span 2n - 2 > n - 1 once n >= 3: no choice of maps
    produces them all."""
    tokens, queries, targets = _pair_task(n)
    one = MultiHeadAttention(2 * n, 1).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for linear in (one.w_q, one.w_k, one.w_v, one.w_o):
            linear.weight.copy_(scale * torch.randn(2 * n, 2 * n, generator=g, dtype=torch.float64))
            linear.bias.copy_(torch.randn(2 * n, generator=g, dtype=torch.float64))
        outputs = one(queries, tokens, tokens)[0]  # (n (n - 1), 2n)
    assert _affine_rank(targets[0]) == 2 * n - 2
    assert _affine_rank(outputs) <= n - 1 < 2 * n - 2, f"one head's outputs span {_affine_rank(outputs)} dimensions"


@pytest.mark.claim("heads.no-averaging", kind="exact")
def test_with_two_positions_one_head_with_free_maps_does_return_both(measure):
    """heads.no-averaging needs n >= 3: with n = 2 the two targets (e_1, e_2) and (e_2, e_1) span one dimension,
    and one head of width 4 returns both exactly: W_k keeps the first half (the query picks position A), W_v = I,
    and W_o maps token (e_1, e_1) to (e_1, e_2) and token (e_2, e_2) to (e_2, e_1)."""
    tokens, queries, targets = _pair_task(2)
    one = MultiHeadAttention(4, 1).double()
    w_k = torch.zeros(4, 4, dtype=torch.float64)
    w_k[0, 0] = w_k[1, 1] = 1.0
    w_o = torch.zeros(4, 4, dtype=torch.float64)
    w_o[:, 0] = torch.tensor([1.0, 0.0, 0.0, 1.0])  # column of token (e_1, e_1)'s first coordinate
    w_o[:, 1] = torch.tensor([0.0, 1.0, 1.0, 0.0])
    for linear, weight in ((one.w_q, 1000.0 * torch.eye(4, dtype=torch.float64)), (one.w_k, w_k),
                           (one.w_v, torch.eye(4, dtype=torch.float64)), (one.w_o, w_o)):
        _set(linear, weight)
    with torch.no_grad():
        out = one(queries, tokens, tokens)
    torch.testing.assert_close(out, targets, **FLOAT64)
    measure("one_head_two_positions", out[0].tolist(), targets=targets[0].tolist(), n=2)
