"""Derivations: FLOPs and parameter counts of attention, heads, layers, tying, and where attention dominates.

FLOPs follow FlopCounterMode's convention (a multiply and an add per inner-product term, biases and
element-wise work not counted); parameter counts count nn.Linear's bias and LayerNorm's gain and bias.
"""

from __future__ import annotations

import pytest
import sympy as sp
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from proofs import closed_forms as cf
from proofs._algebra import is_zero

d, d_ff, n, h = cf.d_model, cf.d_ff, cf.n, cf.h


def matmul_flops(m: sp.Expr, k: sp.Expr, c: sp.Expr) -> sp.Expr:
    """(m, k) @ (k, c): each of the m c outputs sums k products, one multiply and one add each."""
    i, j, l = sp.symbols("i j l", positive=True, integer=True)
    return sp.Sum(sp.Sum(sp.Sum(2, (l, 1, k)), (j, 1, c)), (i, 1, m)).doit()


def linear_params(fan_in: sp.Expr, fan_out: sp.Expr, bias: bool = True) -> sp.Expr:
    """nn.Linear(fan_in, fan_out): a (fan_out, fan_in) weight and a fan_out bias."""
    return fan_in * fan_out + (fan_out if bias else 0)


def layernorm_params(width: sp.Expr) -> sp.Expr:
    """nn.LayerNorm(width): a gain and a bias per feature."""
    return 2 * width


def derive_attention_complexity(claimed_core: sp.Expr) -> sp.Expr:
    """FLOPs of Q K^T and A V for n tokens of width d; raises AssertionError if claimed_core differs."""
    assert is_zero(matmul_flops(*sp.symbols("m k c", positive=True, integer=True)) - cf.MATMUL_FLOPS)
    scores = matmul_flops(n, d, n)        # Q (n, d) @ K^T (d, n)
    mixing = matmul_flops(n, n, d)        # A (n, n) @ V (n, d)
    core = scores + mixing
    assert is_zero(core - claimed_core), f"derived {core}, claimed {claimed_core}"
    # Quadratic in n, linear in d.
    assert sp.degree(core, n) == 2 and sp.degree(core, d) == 1
    # Softmax: per row n exponentials, n - 1 additions, n divisions: O(n^2), also quadratic, free of d.
    softmax_ops = n * (n + (n - 1) + n)
    assert sp.degree(softmax_ops, n) == 2 and sp.degree(softmax_ops, d) == 0
    assert sp.limit((core + softmax_ops) / n**2, n, sp.oo) == 4 * d + 3
    return core


@pytest.mark.claim("attn.complexity", kind="proof")
def test_attention_core_costs_four_n_squared_d_flops(measure):
    r"""attn.complexity: $\mathrm{FLOPs}(QK^\top) = \mathrm{FLOPs}(AV) = 2n^2d$, so the core costs $4n^2d$,
    quadratic in n and linear in d; softmax adds $3n^2 - n$ element-wise operations (not FLOPs to
    FlopCounterMode), also quadratic in n.
    """
    core = derive_attention_complexity(cf.ATTENTION_CORE_FLOPS)
    measure("statement", r"\mathrm{FLOPs}(QK^\top)+\mathrm{FLOPs}(AV) = " + sp.latex(core)
            + r",\ \mathrm{softmax}: 3n^2-n = O(n^2)")


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
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


def test_flop_counter_counts_attention_core_as_derived():
    """Numeric tie: FlopCounterMode on Q K^T and A V (one and several heads) matches attention_core_flops."""
    torch.manual_seed(0)
    for n_tokens, width, heads in ((7, 12, 1), (5, 16, 4), (9, 8, 2)):
        q, k, v = (torch.randn(1, heads, n_tokens, width // heads, dtype=torch.float64) for _ in range(3))
        with FlopCounterMode(display=False) as counter:
            weights = torch.softmax(q @ k.transpose(-2, -1) / (width // heads) ** 0.5, dim=-1)
            weights @ v
        assert counter.get_total_flops() == cf.attention_core_flops(n_tokens, width), (n_tokens, width, heads)


def derive_heads_cost(claimed_params: sp.Expr, claimed_flops: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """Parameters and FLOPs of h heads of width d / h; raises AssertionError if they depend on h or differ."""
    d_head = d / h
    # Each head has its own W_q^i, W_k^i, W_v^i (d -> d/h, with their slice of the bias); W_o is shared.
    params = h * 3 * linear_params(d, d_head) + linear_params(d, d)
    # Projections of n tokens per head, then the output projection; the core per head at width d/h.
    projection = h * 3 * matmul_flops(n, d, d_head) + matmul_flops(n, d, d)
    core = h * (matmul_flops(n, d_head, n) + matmul_flops(n, n, d_head))
    flops = sp.simplify(projection + core)
    params = sp.simplify(params)
    assert sp.diff(params, h) == 0 and sp.diff(flops, h) == 0, "the cost must not depend on h"
    assert is_zero(params - claimed_params), f"derived params {params}, claimed {claimed_params}"
    assert is_zero(flops - claimed_flops), f"derived FLOPs {flops}, claimed {claimed_flops}"
    return params, flops


@pytest.mark.claim("heads.same-cost-as-single", kind="proof")
def test_heads_of_width_d_over_h_cost_the_same_as_one_head(measure):
    r"""heads.same-cost-as-single: with $d_\text{head} = d/h$, parameters $= 4d^2+4d$ and matmul FLOPs
    $= 8nd^2 + 4n^2d$ for every h ($\partial/\partial h = 0$).

    Not free of h: the softmax work and the attention-weight memory, h n^2 entries, grow linearly
    with h (element-wise work that FlopCounterMode does not count).
    """
    params, flops = derive_heads_cost(cf.MHA_PARAMS, cf.ATTENTION_FLOPS)
    softmax_entries = h * n**2
    assert sp.diff(softmax_entries, h) != 0
    measure("statement", r"\text{params} = " + sp.latex(params) + r",\ \text{FLOPs} = " + sp.latex(flops)
            + r"\ \forall h \mid d;\ \text{attention weights: } h n^2")


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
WRONG_HEADS_COST = {
    "params grow with h": ((4 * cf.d_model**2 + 4 * cf.d_model * cf.h, cf.ATTENTION_FLOPS), r"derived params"),
    "params without biases": ((4 * cf.d_model**2, cf.ATTENTION_FLOPS), r"derived params"),
    "core shrinks with h": ((cf.MHA_PARAMS, cf.PROJECTION_FLOPS + cf.ATTENTION_CORE_FLOPS / cf.h), r"derived FLOPs"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_HEADS_COST.values(), ids=WRONG_HEADS_COST.keys())
def test_heads_cost_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_heads_cost(*wrong)


def test_looped_heads_built_from_linears_have_the_derived_cost():
    """Numeric tie: h heads as separate nn.Linear(d, d/h) plus W_o: parameters and FlopCounterMode FLOPs."""
    torch.manual_seed(0)
    width, n_tokens = 16, 6
    for heads in (1, 2, 4, 8):
        projections = nn.ModuleList(nn.Linear(width, width // heads, dtype=torch.float64) for _ in range(3 * heads))
        w_o = nn.Linear(width, width, dtype=torch.float64)
        assert sum(p.numel() for p in [*projections.parameters(), *w_o.parameters()]) == cf.mha_params(width)
        x = torch.randn(n_tokens, width, dtype=torch.float64)
        with FlopCounterMode(display=False) as counter:
            outputs = []
            for i in range(heads):
                q, k, v = (projections[3 * i + j](x) for j in range(3))
                outputs.append(torch.softmax(q @ k.T, dim=-1) @ v)
            w_o(torch.cat(outputs, dim=-1))
        assert counter.get_total_flops() == cf.attention_flops(n_tokens, width), heads


def derive_param_counts() -> dict[str, sp.Expr]:
    """Count parameters module by module and compare with the closed forms."""
    mha = 4 * linear_params(d, d)                                  # W_q, W_k, W_v, W_o
    ffn = linear_params(d, d_ff) + linear_params(d_ff, d)          # W_1, W_2
    norm = layernorm_params(d)
    encoder_layer = mha + ffn + 2 * norm                           # self-attention, FFN, two add & norm
    decoder_layer = 2 * mha + ffn + 3 * norm                       # + cross-attention and its add & norm
    shared_embedding = cf.tgt_vocab * d                            # source, target, generator: one matrix
    total = cf.n_enc * encoder_layer + cf.n_dec * decoder_layer + shared_embedding
    derived = {"mha": mha, "ffn": ffn, "layernorm": norm, "encoder_layer": encoder_layer,
               "decoder_layer": decoder_layer, "transformer_three_way": total}
    closed = {"mha": cf.MHA_PARAMS, "ffn": cf.FFN_PARAMS, "layernorm": cf.LAYERNORM_PARAMS,
              "encoder_layer": cf.ENCODER_LAYER_PARAMS, "decoder_layer": cf.DECODER_LAYER_PARAMS,
              "transformer_three_way": cf.transformer_params_expr("three-way")}
    for name, expr in derived.items():
        assert is_zero(expr - closed[name]), f"{name}: derived {sp.expand(expr)}, closed form {closed[name]}"
    return derived


@pytest.mark.claim("arch.param-count", kind="proof")
def test_parameter_counts_match_closed_forms_and_table_3(measure):
    r"""arch.param-count: MHA $4d^2+4d$, FFN $2dd_\text{ff}+d_\text{ff}+d$, LayerNorm $2d$; encoder layer
    MHA + FFN + 2 LN, decoder layer 2 MHA + FFN + 3 LN.

    With the three-way shared 37000-token embedding (no generator bias) the base and big models have
    63,082,496 and 214,245,376 parameters, within 5% of Table 3's 65M and 213M (exact rational test);
    without sharing they would have about 101M and 290M, far outside, so Table 3 counts shared embeddings.
    """
    derived = derive_param_counts()
    counts = {}
    for name, config in cf.PAPER_CONFIGS.items():
        shared = cf.transformer_params(**config, src_vocab_size=cf.PAPER_VOCAB, tgt_vocab_size=cf.PAPER_VOCAB)
        untied = cf.transformer_params(**config, src_vocab_size=cf.PAPER_VOCAB, tgt_vocab_size=cf.PAPER_VOCAB,
                                       tying="none")
        paper = cf.PAPER_TABLE3_PARAMS[name]
        assert abs(sp.Rational(shared, paper) - 1) <= sp.Rational(5, 100), f"{name}: {shared} vs {paper}"
        assert abs(sp.Rational(untied, paper) - 1) > sp.Rational(5, 100), f"{name} untied: {untied} vs {paper}"
        counts[name] = {"three_way": shared, "untied": untied, "table3": paper}
    measure("statement", r"\text{MHA} = " + sp.latex(derived["mha"].expand()) + r",\ \text{FFN} = "
            + sp.latex(derived["ffn"].expand()) + r",\ \text{LN} = 2d_{model}")
    measure("paper_counts", counts)


def test_torch_modules_have_the_closed_form_parameter_counts():
    """Numeric tie: torch's own attention, layers and nn.Transformer count as the closed forms say."""
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    for width, heads, inner in ((8, 2, 16), (12, 6, 20), (16, 4, 64)):
        assert count(nn.MultiheadAttention(width, heads)) == cf.mha_params(width)
        assert count(nn.Sequential(nn.Linear(width, inner), nn.ReLU(), nn.Linear(inner, width))) \
            == cf.ffn_params(width, inner)
        assert count(nn.LayerNorm(width)) == cf.layernorm_params(width)
        assert count(nn.TransformerEncoderLayer(width, heads, inner)) == cf.encoder_layer_params(width, inner)
        assert count(nn.TransformerDecoderLayer(width, heads, inner)) == cf.decoder_layer_params(width, inner)
        stacks = nn.Transformer(width, heads, num_encoder_layers=2, num_decoder_layers=3, dim_feedforward=inner,
                                batch_first=True)
        assert count(stacks) == cf.transformer_params(2, 3, width, inner, 0, 0, "none", final_norms=True)


def derive_block_cost(claimed_crossover: sp.Expr, claimed_weight_ratio: sp.Expr) -> sp.Expr:
    """Per-layer costs at d_ff = 4 d and the sequence length where attention overtakes the FFN."""
    at_paper_width = {d_ff: 4 * d}
    # Weights: the FFN has 2 d d_ff = 8 d^2, the four attention projections 4 d^2.
    ratio = sp.simplify((2 * d * d_ff).subs(at_paper_width) / (4 * d**2))
    assert is_zero(ratio - claimed_weight_ratio), f"weight ratio {ratio}, claimed {claimed_weight_ratio}"
    # With biases the ratio is (8d^2 + 5d) / (4d^2 + 4d): just under 2, tending to 2.
    with_bias = (cf.FFN_PARAMS / cf.MHA_PARAMS).subs(at_paper_width)
    assert sp.limit(with_bias, d, sp.oo) == 2 and sp.simplify(2 - with_bias).is_positive
    # FLOPs per layer: four projections plus the core, against the FFN's two matmuls.
    attention = 4 * matmul_flops(n, d, d) + matmul_flops(n, d, n) + matmul_flops(n, n, d)
    ffn = (matmul_flops(n, d, d_ff) + matmul_flops(n, d_ff, d))
    assert is_zero(attention - cf.ATTENTION_FLOPS) and is_zero(ffn - cf.FFN_FLOPS)
    ffn = ffn.subs(at_paper_width)
    # Where they are equal: the positive root of attention - ffn in n.
    roots = [r for r in sp.solve(sp.Eq(attention, ffn), n) if r.is_positive]
    assert roots == [claimed_crossover], f"crossover {roots}, claimed {claimed_crossover}"
    # Which side dominates: with t = n / d, attention - ffn = 4 d^3 t (t - 2) > 0 exactly when t > 2.
    t = sp.Symbol("t", positive=True)
    scaled_gap = sp.factor((attention - ffn).subs(n, t * d) / d**3)
    region = sp.solve_univariate_inequality(scaled_gap > 0, t, relational=False) & sp.Interval.open(0, sp.oo)
    assert region == sp.Interval.open(claimed_crossover / d, sp.oo), f"attention > FFN for t in {region}"
    # The quadratic core alone overtakes the projections at the same length.
    assert [r for r in sp.solve(sp.Eq(cf.ATTENTION_CORE_FLOPS, cf.PROJECTION_FLOPS), n) if r.is_positive] == roots
    return roots[0]


@pytest.mark.claim("arch.block-cost", kind="proof")
def test_attention_dominates_the_ffn_only_beyond_n_equals_2d(measure):
    r"""arch.block-cost: at $d_\text{ff} = 4d$ the FFN has twice the attention projections' weights
    ($8d^2$ vs $4d^2$; with biases slightly under twice); per layer attention costs $8nd^2 + 4n^2d$ FLOPs
    and the FFN $16nd^2$, so attention costs more exactly when $n > 2d$.
    """
    crossover = derive_block_cost(cf.CROSSOVER_LENGTH, cf.FFN_TO_ATTENTION_WEIGHT_RATIO)
    measure("statement", sp.latex(cf.ATTENTION_FLOPS) + r" > " + sp.latex(cf.FFN_FLOPS.subs(d_ff, 4 * d))
            + r" \iff n > " + sp.latex(crossover))


# The derivation can fail: it rejects plausible wrong right-hand sides (off by a power, a factor, a branch).
WRONG_BLOCK_COST = {
    "crossover at d": ((cf.d_model, 2), r"crossover"),
    "crossover at 4d": ((4 * cf.d_model, 2), r"crossover"),
    "weight ratio 4": ((2 * cf.d_model, 4), r"weight ratio"),
}


@pytest.mark.parametrize(("wrong", "reason"), WRONG_BLOCK_COST.values(), ids=WRONG_BLOCK_COST.keys())
def test_block_cost_derivation_rejects_wrong_forms(wrong, reason):
    with pytest.raises(AssertionError, match=reason):
        derive_block_cost(*map(sp.sympify, wrong))


def test_flop_counter_counts_a_layer_as_derived():
    """Numeric tie: FlopCounterMode on plain Linear projections, core and FFN matches the closed forms."""
    torch.manual_seed(0)
    width, n_tokens = 8, 5
    proj = nn.ModuleList(nn.Linear(width, width, dtype=torch.float64) for _ in range(4))
    ffn = nn.Sequential(nn.Linear(width, 4 * width, dtype=torch.float64), nn.ReLU(),
                        nn.Linear(4 * width, width, dtype=torch.float64))
    x = torch.randn(n_tokens, width, dtype=torch.float64)
    with FlopCounterMode(display=False) as attention_counter:
        q, k, v = proj[0](x), proj[1](x), proj[2](x)
        proj[3](torch.softmax(q @ k.T, dim=-1) @ v)
    with FlopCounterMode(display=False) as ffn_counter:
        ffn(x)
    assert attention_counter.get_total_flops() == cf.attention_flops(n_tokens, width)
    assert ffn_counter.get_total_flops() == cf.ffn_flops(n_tokens, width, 4 * width)


@pytest.mark.claim("tie.copy-is-not-tying", kind="proof")
def test_each_tie_saves_vocab_times_d_and_a_copy_diverges_after_one_step(measure):
    r"""tie.copy-is-not-tying: each tie removes one $(V, d)$ matrix: $V d$ parameters; a copy keeps two tensors
    that one SGD step moves apart by $\eta(g_\text{gen} - g_\text{emb})$, while a shared tensor moves by
    $-\eta(g_\text{emb} + g_\text{gen})$ once, so its two uses can never differ.
    """
    none, dec, three = (cf.transformer_params_expr(mode) for mode in cf.TYING_MODES)
    same_vocab = {cf.src_vocab: cf.vocab, cf.tgt_vocab: cf.vocab}
    assert is_zero(none - dec - cf.TIE_SAVING.subs(cf.vocab, cf.tgt_vocab))    # target embedding = generator
    assert is_zero((dec - three).subs(same_vocab) - cf.TIE_SAVING)              # + source embedding
    # One SGD step from equal starting values W, gradients g_emb (rows of tokens seen) and g_gen (all rows).
    eta = sp.Symbol("eta", positive=True)
    W, g_emb, g_gen = (sp.Matrix(2, 2, lambda i, j, s=s: sp.Symbol(f"{s}_{i}{j}", real=True))
                       for s in ("W", "gemb", "ggen"))
    copy_emb, copy_gen = W - eta * g_emb, W - eta * g_gen
    assert (copy_gen - copy_emb - eta * (g_emb - g_gen)).applyfunc(sp.expand) == sp.zeros(2, 2)
    assert (copy_gen - copy_emb).applyfunc(sp.expand) != sp.zeros(2, 2)   # not identically equal
    # The copies agree after the step only where the gradients agree.
    assert sp.solve(list(copy_gen - copy_emb), list(g_gen), dict=True) == [
        {g_gen[i, j]: g_emb[i, j] for i in range(2) for j in range(2)}]
    # Shared: the loss reads one tensor twice, L(w) = L_emb(w) + L_gen(w); its gradient sums both uses
    # and a single update moves the one tensor that both uses read.
    w = sp.Symbol("w", real=True)
    L_emb, L_gen = sp.Function("L_emb"), sp.Function("L_gen")
    assert sp.diff(L_emb(w) + L_gen(w), w) == sp.diff(L_emb(w), w) + sp.diff(L_gen(w), w)
    measure("statement", r"P_\text{none} - P_\text{decoder} = V_{tgt} d,\ P_\text{decoder} - P_\text{three-way}"
            r" = V d;\ W_\text{gen}' - W_\text{emb}' = \eta(g_\text{emb} - g_\text{gen}) \text{ for a copy}")


def test_tied_and_copied_torch_weights_count_as_derived():
    """Numeric tie: nn.Embedding + nn.Linear sharing one Parameter count V d less than a copy."""
    vocab_size, width = 13, 6
    def unique(*modules: nn.Module) -> int:  # each tensor once, however many modules hold it
        return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())
    emb, gen = nn.Embedding(vocab_size, width), nn.Linear(width, vocab_size, bias=False)
    gen.weight = emb.weight
    tied = unique(emb, gen)
    copy_emb, copy_gen = nn.Embedding(vocab_size, width), nn.Linear(width, vocab_size, bias=False)
    copy_gen.weight = nn.Parameter(copy_emb.weight.detach().clone())
    copied = unique(copy_emb, copy_gen)
    assert copied - tied == cf.tie_saving(vocab_size, width)
