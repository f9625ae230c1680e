"""The closed forms the whole suite compares against, in one place.

Each quantity appears twice, from one definition:

* an UPPER_CASE sympy expression over the named symbols below, which the derivations in
  ``proofs/test_*.py`` prove from first principles (counting, expectation algebra, calculus);
* a lower_case numeric function that evaluates that same expression (``lambdify`` or exact
  substitution), which the measured and exact properties call to compare with what the model
  does (parameter counts, FlopCounterMode counts, the learning-rate schedule...).

Conventions:

* FLOPs are counted as ``torch.utils.flop_counter.FlopCounterMode`` counts them: a matrix product
  (m, k) @ (k, n) costs 2 m k n (one multiply and one add per term); biases, softmax and
  element-wise work are not counted.
* Parameter counts follow ``nn.Linear(in, out)`` = in * out + out (bias), ``nn.LayerNorm(d)`` = 2 d,
  ``nn.Embedding(V, d)`` = V d. Weight tying shares one tensor, counted once.
* Variances assume LayerNorm-ed inputs without affine (each token has squared norm exactly d_model)
  and independent zero-mean weights.

Nothing here imports the project's model (``transformer/``); ``transformer_params_from_config``
only reads attributes by name.
"""

from __future__ import annotations

import math

import sympy as sp

__all__ = [
    # symbols
    "d_model", "d_ff", "d_k", "n", "n_kv", "h", "vocab", "src_vocab", "tgt_vocab", "n_enc", "n_dec",
    "step", "warmup", "factor", "p", "x", "beta", "gap", "weight_var", "bias_var", "fan_in", "entry_var",
    # parameter counts
    "LINEAR_PARAMS", "MHA_PARAMS", "FFN_PARAMS", "LAYERNORM_PARAMS", "EMBEDDING_PARAMS",
    "ENCODER_LAYER_PARAMS", "DECODER_LAYER_PARAMS", "TIE_SAVING",
    "linear_params", "mha_params_expr", "mha_params", "ffn_params", "layernorm_params",
    "embedding_params", "encoder_layer_params_expr", "encoder_layer_params",
    "decoder_layer_params_expr", "decoder_layer_params", "transformer_params_expr",
    "transformer_params", "transformer_params_from_config", "tie_saving",
    "TYING_MODES", "QK_PROJECTIONS", "PAPER_VOCAB", "PAPER_TABLE3_PARAMS", "PAPER_CONFIGS",
    # FLOPs
    "MATMUL_FLOPS", "ATTENTION_CORE_FLOPS", "PROJECTION_FLOPS", "ATTENTION_FLOPS", "FFN_FLOPS",
    "CROSSOVER_LENGTH", "FFN_TO_ATTENTION_WEIGHT_RATIO",
    "matmul_flops", "attention_core_flops", "projection_flops", "attention_flops", "ffn_flops",
    "crossover_length",
    # variances
    "QK_DOT_MEAN", "QK_DOT_VARIANCE", "SCALED_QK_VARIANCE", "SCALED_SCORE_VARIANCE_INIT",
    "TORCH_LINEAR_WEIGHT_VAR", "XAVIER_LIKE_WEIGHT_VAR",
    "qk_dot_variance", "scaled_qk_variance", "scaled_score_variance", "torch_linear_weight_variance",
    "scaled_score_variance_torch_default",
    # embeddings and positions
    "SCALED_EMBEDDING_VARIANCE", "KERAS_UNIFORM_VARIANCE", "SINUSOID_SQUARED_NORM",
    "scaled_embedding_variance", "sinusoid_squared_norm", "sinusoid_frequencies", "sinusoid_dot",
    # training
    "NOAM_LR", "NOAM_PEAK_STEP", "NOAM_PEAK_LR", "noam_lr", "noam_peak",
    "DROPOUT_SCALE", "DROPOUT_OUTPUT_MEAN", "DROPOUT_OUTPUT_VARIANCE",
    "dropout_scale", "dropout_output_variance",
    # softmax
    "SOFTMAX_OFF_MAX_BOUND", "softmax_off_max_bound",
]

# ----------------------------------------------------------------------------------------------
# Symbols. Sizes are positive integers; the schedule's step is a positive real so that calculus
# applies (the schedule is evaluated at integers).
# ----------------------------------------------------------------------------------------------
_size = dict(positive=True, integer=True)
d_model = sp.Symbol("d_model", **_size)     # residual width
d_ff = sp.Symbol("d_ff", **_size)           # feed-forward inner width
d_k = sp.Symbol("d_k", **_size)             # query/key width of one head
n = sp.Symbol("n", **_size)                 # sequence length (queries)
n_kv = sp.Symbol("n_kv", **_size)           # number of keys/values (cross-attention)
h = sp.Symbol("h", **_size)                 # number of heads
vocab = sp.Symbol("V", **_size)             # a vocabulary size
src_vocab = sp.Symbol("V_src", **_size)
tgt_vocab = sp.Symbol("V_tgt", **_size)
n_enc = sp.Symbol("N_enc", nonnegative=True, integer=True)
n_dec = sp.Symbol("N_dec", nonnegative=True, integer=True)
step = sp.Symbol("step", positive=True)
warmup = sp.Symbol("warmup", positive=True)
factor = sp.Symbol("factor", positive=True)
p = sp.Symbol("p", positive=True)           # dropout probability, 0 < p < 1
x = sp.Symbol("x", real=True)               # one activation
weight_var = sp.Symbol("sigma_w^2", positive=True)
bias_var = sp.Symbol("sigma_b^2", nonnegative=True)
fan_in = sp.Symbol("fan_in", **_size)
entry_var = sp.Symbol("sigma_e^2", positive=True)

TYING_MODES = ("none", "decoder", "three-way")
QK_PROJECTIONS = ("separate", "shared", "none")


def _ints(expr: sp.Expr, *symbols: sp.Symbol):
    """A numeric function of ``symbols`` that evaluates ``expr`` with Python ints (exact for polynomials)."""
    return sp.lambdify(symbols, expr, modules="math")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")


# ----------------------------------------------------------------------------------------------
# Parameter counts (claims arch.param-count, heads.same-cost-as-single, tie.copy-is-not-tying)
# ----------------------------------------------------------------------------------------------
LINEAR_PARAMS = fan_in * d_model + d_model          # nn.Linear(fan_in, d_model): weight + bias
MHA_PARAMS = 4 * d_model**2 + 4 * d_model           # W_q, W_k, W_v, W_o, each d x d plus bias
FFN_PARAMS = 2 * d_model * d_ff + d_ff + d_model    # W_1 (d x d_ff) + b_1, W_2 (d_ff x d) + b_2
LAYERNORM_PARAMS = 2 * d_model                      # gain and bias
EMBEDDING_PARAMS = vocab * d_model
TIE_SAVING = vocab * d_model                        # each tie removes one (vocab, d) matrix
ENCODER_LAYER_PARAMS = MHA_PARAMS + FFN_PARAMS + 2 * LAYERNORM_PARAMS
DECODER_LAYER_PARAMS = 2 * MHA_PARAMS + FFN_PARAMS + 3 * LAYERNORM_PARAMS

_ffn_params = _ints(FFN_PARAMS, d_model, d_ff)
_layernorm_params = _ints(LAYERNORM_PARAMS, d_model)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear(in_features, out_features, bias)``: in * out (+ out)."""
    return in_features * out_features + (out_features if bias else 0)


def mha_params_expr(qk_projection: str = "separate") -> sp.Expr:
    """Multi-head attention parameters: one (d x d + d) Linear per distinct projection.

    "separate": W_q, W_k, W_v, W_o (4 d^2 + 4 d); "shared": W_k is W_q (3 d^2 + 3 d);
    "none": queries and keys are the inputs (2 d^2 + 2 d). Independent of the number of heads.
    """
    _check_choice("qk_projection", qk_projection, QK_PROJECTIONS)
    linears = {"separate": 4, "shared": 3, "none": 2}[qk_projection]
    return sp.Rational(linears, 4) * MHA_PARAMS


def mha_params(d: int, qk_projection: str = "separate") -> int:
    """Numeric ``mha_params_expr``: 4 d^2 + 4 d for the paper's separate projections."""
    return int(mha_params_expr(qk_projection).subs(d_model, d))


def ffn_params(d: int, d_inner: int) -> int:
    """Position-wise feed-forward parameters: 2 d d_ff + d_ff + d."""
    return _ffn_params(d, d_inner)


def layernorm_params(d: int) -> int:
    """LayerNorm parameters: 2 d (gain and bias)."""
    return _layernorm_params(d)


def embedding_params(vocab_size: int, d: int) -> int:
    """``nn.Embedding(vocab_size, d)`` parameters: vocab_size * d."""
    return int(EMBEDDING_PARAMS.subs({vocab: vocab_size, d_model: d})) if vocab_size else 0


def encoder_layer_params_expr(qk_projection: str = "separate") -> sp.Expr:
    """Encoder layer: self-attention + FFN + two LayerNorms."""
    return mha_params_expr(qk_projection) + FFN_PARAMS + 2 * LAYERNORM_PARAMS


def decoder_layer_params_expr(qk_projection: str = "separate") -> sp.Expr:
    """Decoder layer: self-attention + cross-attention + FFN + three LayerNorms."""
    return 2 * mha_params_expr(qk_projection) + FFN_PARAMS + 3 * LAYERNORM_PARAMS


def encoder_layer_params(d: int, d_inner: int, qk_projection: str = "separate") -> int:
    """Numeric ``encoder_layer_params_expr`` (= 4d^2+4d + 2 d d_ff + d_ff + d + 4d when separate)."""
    return int(encoder_layer_params_expr(qk_projection).subs({d_model: d, d_ff: d_inner}))


def decoder_layer_params(d: int, d_inner: int, qk_projection: str = "separate") -> int:
    """Numeric ``decoder_layer_params_expr``."""
    return int(decoder_layer_params_expr(qk_projection).subs({d_model: d, d_ff: d_inner}))


def transformer_params_expr(tying: str = "three-way", *, generator_bias: bool = False,
                            final_norms: bool = False, qk_projection: str = "separate",
                            learned_max_len: int = 0, type_vocab: int = 0,
                            embedding_norm: bool = False) -> sp.Expr:
    """Encoder-decoder parameters over N_enc, N_dec, d_model, d_ff, V_src, V_tgt.

    tying: "none" (three matrices: source embedding, target embedding, generator weight),
    "decoder" (target embedding is the generator weight), "three-way" (source embedding too; needs
    V_src = V_tgt, and the expression then uses V_tgt for the one shared matrix).
    generator_bias: the pre-softmax Linear has a bias (V_tgt more); the paper's tying suggests none.
    final_norms: a LayerNorm after each stack (pre-LN stacks, ``nn.Transformer``): 2 * 2 d more.
    learned_max_len: size of a learned position table on each side (0 for sinusoidal/rotary/none).
    type_vocab, embedding_norm: BERT's token-type table and embedding LayerNorm, on each side.
    """
    _check_choice("tying", tying, TYING_MODES)
    matrices = {"none": src_vocab * d_model + 2 * tgt_vocab * d_model,
                "decoder": src_vocab * d_model + tgt_vocab * d_model,
                "three-way": tgt_vocab * d_model}[tying]
    total = (n_enc * encoder_layer_params_expr(qk_projection)
             + n_dec * decoder_layer_params_expr(qk_projection)
             + matrices)
    total += tgt_vocab if generator_bias else 0
    total += 2 * LAYERNORM_PARAMS if final_norms else 0
    total += 2 * learned_max_len * d_model + 2 * type_vocab * d_model
    total += 2 * LAYERNORM_PARAMS if embedding_norm else 0
    return sp.expand(total)


def transformer_params(n_encoder: int, n_decoder: int, d: int, d_inner: int, src_vocab_size: int,
                       tgt_vocab_size: int, tying: str = "three-way", *, generator_bias: bool = False,
                       final_norms: bool = False, qk_projection: str = "separate",
                       learned_max_len: int = 0, type_vocab: int = 0, embedding_norm: bool = False) -> int:
    """Numeric ``transformer_params_expr``: the model's parameter count (tied tensors counted once).

    Vocabulary sizes may be 0 to count the stacks alone (e.g. ``nn.Transformer``, which has no
    embeddings: pass tying="none", final_norms=True).
    """
    if tying == "three-way" and src_vocab_size != tgt_vocab_size:
        raise ValueError(f"three-way tying needs one vocabulary, got {src_vocab_size} and {tgt_vocab_size}")
    expr = transformer_params_expr(tying, generator_bias=generator_bias, final_norms=final_norms,
                                   qk_projection=qk_projection, learned_max_len=learned_max_len,
                                   type_vocab=type_vocab, embedding_norm=embedding_norm)
    values = {n_enc: n_encoder, n_dec: n_decoder, d_model: d, d_ff: d_inner,
              src_vocab: src_vocab_size, tgt_vocab: tgt_vocab_size}
    return int(expr.xreplace({s: sp.Integer(v) for s, v in values.items()}))


def transformer_params_from_config(config, *, generator_bias: bool = False) -> int:
    """``transformer_params`` for any object with the attributes of ``transformer.config.TransformerConfig``.

    Reads n_encoder_layers, n_decoder_layers, d_model, d_ff, src_vocab_size, tgt_vocab_size, tying,
    norm_placement ("pre" adds the two final LayerNorms), qk_projection, positional ("learned" adds
    a max_len table per side), type_vocab_size and embedding_norm (missing ones take the paper's value).
    """
    get = lambda name, default: getattr(config, name, default)  # noqa: E731
    return transformer_params(
        config.n_encoder_layers, config.n_decoder_layers, config.d_model, config.d_ff,
        config.src_vocab_size, config.tgt_vocab_size, get("tying", "three-way"),
        generator_bias=generator_bias,
        final_norms=get("norm_placement", "post") == "pre",
        qk_projection=get("qk_projection", "separate"),
        learned_max_len=get("max_len", 0) if get("positional", "sinusoidal") == "learned" else 0,
        type_vocab=get("type_vocab_size", 0),
        embedding_norm=get("embedding_norm", False))


def tie_saving(vocab_size: int, d: int) -> int:
    """Parameters saved by each tie (sharing one (vocab, d) tensor instead of keeping two): vocab * d."""
    return int(TIE_SAVING.subs({vocab: vocab_size, d_model: d}))


PAPER_VOCAB = 37000                                       # shared BPE vocabulary, EN-DE (section 5.1)
PAPER_TABLE3_PARAMS = {"base": 65 * 10**6, "big": 213 * 10**6}
PAPER_CONFIGS = {                                          # Table 3: N, d_model, d_ff (h does not change counts)
    "base": dict(n_encoder=6, n_decoder=6, d=512, d_inner=2048),
    "big": dict(n_encoder=6, n_decoder=6, d=1024, d_inner=4096),
}

# ----------------------------------------------------------------------------------------------
# FLOPs (claims attn.complexity, arch.block-cost, heads.same-cost-as-single)
# ----------------------------------------------------------------------------------------------
_m, _k, _c = sp.symbols("m k c", positive=True, integer=True)
MATMUL_FLOPS = 2 * _m * _k * _c                          # (m, k) @ (k, c)
ATTENTION_CORE_FLOPS = 4 * n**2 * d_model               # Q K^T and A V, 2 n^2 d each
PROJECTION_FLOPS = 8 * n * d_model**2                   # four d x d projections of n tokens
ATTENTION_FLOPS = PROJECTION_FLOPS + ATTENTION_CORE_FLOPS
FFN_FLOPS = 4 * n * d_model * d_ff                      # = 16 n d^2 at d_ff = 4 d
CROSSOVER_LENGTH = 2 * d_model                          # attention > FFN exactly when n > 2 d (d_ff = 4 d)
FFN_TO_ATTENTION_WEIGHT_RATIO = sp.Integer(2)           # 8 d^2 / 4 d^2 weights at d_ff = 4 d

_matmul_flops = _ints(MATMUL_FLOPS, _m, _k, _c)
_attention_core_flops = _ints(ATTENTION_CORE_FLOPS, n, d_model)
_projection_flops = _ints(PROJECTION_FLOPS, n, d_model)
_ffn_flops = _ints(FFN_FLOPS, n, d_model, d_ff)


def matmul_flops(m: int, k: int, c: int) -> int:
    """FLOPs of an (m, k) @ (k, c) product as FlopCounterMode counts them: 2 m k c."""
    return _matmul_flops(m, k, c)


def attention_core_flops(n_q: int, d: int, n_keys: int | None = None) -> int:
    """Q K^T plus A V for n_q queries over n_keys keys (default n_q) at total width d: 4 n_q n_keys d.

    Per batch element; summed over heads (h heads of width d / h cost the same as one of width d).
    """
    return _attention_core_flops(n_q, d) if n_keys is None else 2 * _matmul_flops(n_q, d, n_keys)


def projection_flops(n_tokens: int, d: int) -> int:
    """The four d x d projections (Q, K, V, output) of n tokens: 8 n d^2 (biases not counted)."""
    return _projection_flops(n_tokens, d)


def attention_flops(n_tokens: int, d: int) -> int:
    """Self-attention sub-layer: 8 n d^2 + 4 n^2 d."""
    return _projection_flops(n_tokens, d) + _attention_core_flops(n_tokens, d)


def ffn_flops(n_tokens: int, d: int, d_inner: int) -> int:
    """Position-wise FFN: 4 n d d_ff (16 n d^2 when d_ff = 4 d)."""
    return _ffn_flops(n_tokens, d, d_inner)


def crossover_length(d: int) -> int:
    """Sequence length at which self-attention and the FFN (d_ff = 4 d) cost the same: 2 d."""
    return int(CROSSOVER_LENGTH.subs(d_model, d))


# ----------------------------------------------------------------------------------------------
# Score variances (claims attn.qk-variance, attn.qk-variance-init)
# ----------------------------------------------------------------------------------------------
QK_DOT_MEAN = sp.Integer(0)
QK_DOT_VARIANCE = d_k                                    # i.i.d. zero-mean, unit-variance entries
SCALED_QK_VARIANCE = sp.Integer(1)                       # after dividing by sqrt(d_k)
# q = W_q x + b_q with LayerNorm-ed x (|x|^2 = d_model), entries of W of variance sigma_w^2, of b sigma_b^2:
SCALED_SCORE_VARIANCE_INIT = (d_model * weight_var + bias_var) ** 2
TORCH_LINEAR_WEIGHT_VAR = 1 / (3 * fan_in)               # nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
XAVIER_LIKE_WEIGHT_VAR = 1 / fan_in

_scaled_score_variance = sp.lambdify((d_model, weight_var, bias_var), SCALED_SCORE_VARIANCE_INIT, modules="math")


def qk_dot_variance(dk: int) -> int:
    """Var[q . k] for i.i.d. zero-mean unit-variance entries: d_k."""
    return int(QK_DOT_VARIANCE.subs(d_k, dk))


def scaled_qk_variance(dk: int) -> int:
    """Var[q . k / sqrt(d_k)] for i.i.d. zero-mean unit-variance entries: 1, whatever d_k."""
    del dk
    return int(SCALED_QK_VARIANCE)


def scaled_score_variance(d: int, w_var: float, b_var: float = 0.0) -> float:
    """Var[q . k / sqrt(d_k)] at initialisation, LayerNorm-ed inputs: (d sigma_w^2 + sigma_b^2)^2."""
    return _scaled_score_variance(d, w_var, b_var)


def torch_linear_weight_variance(n_in: int) -> float:
    """Variance of ``nn.Linear``'s default weights and biases (kaiming_uniform_ with a = sqrt(5)): 1 / (3 fan_in)."""
    return float(TORCH_LINEAR_WEIGHT_VAR.subs(fan_in, n_in))


def scaled_score_variance_torch_default(d: int, bias: bool = True) -> float:
    """Scaled score variance with PyTorch's default Linear init: 1/9 without bias, (1 + 1/d)^2 / 9 with."""
    var = torch_linear_weight_variance(d)
    return scaled_score_variance(d, var, var if bias else 0.0)


# ----------------------------------------------------------------------------------------------
# Embeddings and positions (claims embed.sqrt-d-scaling, pe.*)
# ----------------------------------------------------------------------------------------------
SCALED_EMBEDDING_VARIANCE = d_model * entry_var          # Var[sqrt(d) e] = d Var[e]; 1 when Var[e] = 1/d
KERAS_UNIFORM_VARIANCE = sp.Rational(1, 20) ** 2 / 3     # U(-0.05, 0.05): 1/1200
SINUSOID_SQUARED_NORM = d_model / 2                      # |PE(pos)|^2 = d/2 (one sin^2 + cos^2 per pair)


def scaled_embedding_variance(d: int, e_var: float) -> float:
    """Variance of an embedding entry of variance e_var after multiplying by sqrt(d): d * e_var."""
    return d * e_var


def sinusoid_squared_norm(d: int) -> float:
    """Squared norm of any position's sinusoidal code of even width d: d / 2."""
    return d / 2


def sinusoid_frequencies(d: int, base: float = 10000.0) -> list[float]:
    """omega_i = base^(-2i/d), i = 0 .. d/2 - 1: PE(pos, 2i) = sin(pos omega_i), PE(pos, 2i+1) = cos(pos omega_i)."""
    return [base ** (-2 * i / d) for i in range(d // 2)]


def sinusoid_dot(offset: float, d: int, base: float = 10000.0) -> float:
    """<PE(m), PE(m + offset)> = sum_i cos(offset omega_i): a function of the offset alone, even in it."""
    return math.fsum(math.cos(offset * w) for w in sinusoid_frequencies(d, base))


# ----------------------------------------------------------------------------------------------
# Training (claims train.noam-schedule, train.dropout-expectation)
# ----------------------------------------------------------------------------------------------
NOAM_LR = factor * d_model ** sp.Rational(-1, 2) * sp.Min(step ** sp.Rational(-1, 2),
                                                        step * warmup ** sp.Rational(-3, 2))
NOAM_PEAK_STEP = warmup
NOAM_PEAK_LR = (d_model * warmup) ** sp.Rational(-1, 2)  # times factor
DROPOUT_SCALE = 1 / (1 - p)                              # inverted dropout: kept units are divided by 1 - p
DROPOUT_OUTPUT_MEAN = x
DROPOUT_OUTPUT_VARIANCE = x**2 * p / (1 - p)

_noam_lr = sp.lambdify((step, d_model, warmup, factor), NOAM_LR, modules="math")


def noam_lr(step_: int, d: int, warmup_steps: int, scale: float = 1.0) -> float:
    """factor * d^-0.5 * min(step^-0.5, step * warmup^-1.5), steps counted from 1 (equation 3)."""
    if step_ < 1:
        raise ValueError(f"steps count from 1, got {step_}")
    return float(_noam_lr(step_, d, warmup_steps, scale))


def noam_peak(d: int, warmup_steps: int, scale: float = 1.0) -> tuple[int, float]:
    """(step, rate) of the schedule's maximum: (warmup, factor * (d * warmup)^-0.5)."""
    return warmup_steps, scale * float(NOAM_PEAK_LR.subs({d_model: d, warmup: warmup_steps}))


def dropout_scale(p_drop: float) -> float:
    """Inverted dropout's factor on kept units: 1 / (1 - p)."""
    return 1.0 / (1.0 - p_drop)


def dropout_output_variance(value: float, p_drop: float) -> float:
    """Var[m x / (1 - p)], m ~ Bernoulli(1 - p): x^2 p / (1 - p) (the mean is x)."""
    return value**2 * p_drop / (1.0 - p_drop)


# ----------------------------------------------------------------------------------------------
# Softmax saturation (claim attn.softmax-saturation)
# ----------------------------------------------------------------------------------------------
beta = sp.Symbol("beta", positive=True)    # inverse temperature: softmax(beta z)
gap = sp.Symbol("g", positive=True)        # arg-max logit minus the runner-up
# Mass off the arg-max of softmax(beta z), n entries, arg-max ahead of the runner-up by g > 0:
SOFTMAX_OFF_MAX_BOUND = (n - 1) * sp.exp(-beta * gap)


def softmax_off_max_bound(n_entries: int, beta: float, gap: float) -> float:
    """Upper bound on 1 - max softmax(beta z) and on every Jacobian entry: (n - 1) exp(-beta gap)."""
    return (n_entries - 1) * math.exp(-beta * gap)
