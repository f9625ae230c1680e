"""Token embeddings: the sqrt(d_model) factor, and whether the token survives the added position code.

Multiplying an embedding by sqrt(d) multiplies its entry variance by d, so the product has unit
variance exactly when the table starts at variance 1/d (this model's init, as in fairseq and
tensor2tensor). Which initialiser a framework uses by default therefore decides the outcome: Keras
draws U(-0.05, 0.05) (variance 1/1200), PyTorch's nn.Embedding N(0, 1). The variances below are
measured through the model's own TokenEmbedding with each table; position codes are added by its
InputEmbedding, and a token is "recovered" when its row is the nearest one to embedding + code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from proofs.closed_forms import KERAS_UNIFORM_VARIANCE, sinusoid_squared_norm
from properties.stats import (
    binomial_floor,
    chi2_variance_bounds,
    chi2_variance_power,
    clopper_pearson,
    hoeffding_half_width,
    separated_power,
)
from properties.tolerances import ALPHA_SQRT_D_SCALING, ALPHA_TOKEN_IDENTITY
from transformer import (
    InputEmbedding,
    TokenEmbedding,
    TransformerConfig,
    sinusoidal_encoding,
)

ENTRIES = 2**19  # entries measured per table
KERAS_LIMIT = 0.05  # keras.initializers.RandomUniform(minval=-0.05, maxval=0.05), the "uniform" default


def _scaled_entries(d: int, init: str, seed: int) -> torch.Tensor:
    """Every row of a vocabulary of 2^19 / d tokens through the model's TokenEmbedding (times sqrt(d)), its
    table drawn by the named initialiser. Shape: (V * d,)."""
    vocab = ENTRIES // d
    torch.manual_seed(seed)
    embedding = TokenEmbedding(vocab, d).double()  # the project's N(0, 1/d)
    with torch.no_grad():
        if init == "pytorch-default":
            embedding.lut.weight.copy_(nn.Embedding(vocab, d).weight)  # nn.Embedding.reset_parameters: N(0, 1)
        elif init == "keras-default":
            nn.init.uniform_(embedding.lut.weight, -KERAS_LIMIT, KERAS_LIMIT)
        return embedding(torch.arange(vocab)[None]).flatten()


@pytest.mark.claim("embed.sqrt-d-scaling", kind="statistical")
def test_sqrt_d_gives_unit_variance_only_from_a_table_of_variance_one_over_d(measure):
    """After the sqrt(d) factor: the project's N(0, 1/d) table has unit entry variance at d = 8, 64, 512
    (two-sided chi-square tests); PyTorch's default N(0, 1) table has variance d (chi-square); Keras's default
    U(-0.05, 0.05) table has variance d/1200, 0.43 at d = 512, not 1 (Hoeffding interval on the squares, which lie
    in [0, 0.0025 d]). The sinusoidal code's mean square per entry is 1/2 at every width. Five decisions, each at
    ALPHA_SQRT_D_SCALING / 5."""
    alpha = ALPHA_SQRT_D_SCALING / 5
    low, high = chi2_variance_bounds(ENTRIES, alpha)
    for d in (8, 64, 512):
        x = _scaled_entries(d, "project", seed=d)
        variance = float((x**2).mean())
        measure("scaled_entry_variance", variance, params={"init": "project", "d": d},
                interval=[variance / high, variance / low], alpha=alpha, power=chi2_variance_power(ENTRIES, alpha, 1 / d),
                alternative=f"the factor missing: variance 1/d = {1 / d:.3g}", n=ENTRIES, expected=1.0)
        assert low <= variance <= high, f"d={d}: variance {variance:.5f} outside [{low:.5f}, {high:.5f}]"
        code_mean_square = float((sinusoidal_encoding(torch.arange(512), d) ** 2).mean())
        assert code_mean_square == pytest.approx(sinusoid_squared_norm(d) / d)
    measure("code_mean_square", code_mean_square, params={"d": 512}, expected=0.5)

    d = 512
    x = _scaled_entries(d, "pytorch-default", seed=1)
    variance = float((x**2).mean())
    measure("scaled_entry_variance", variance, params={"init": "pytorch-default", "d": d},
            interval=[variance / high, variance / low], alpha=alpha, power=chi2_variance_power(ENTRIES, alpha, 1 / d),
            alternative="unit variance, as the FAQ's premise would give", n=ENTRIES, expected=float(d))
    assert low * d <= variance <= high * d, f"PyTorch default: scaled variance {variance:.2f}, expected {d}"

    keras = float(KERAS_UNIFORM_VARIANCE) * d
    x = _scaled_entries(d, "keras-default", seed=2)
    variance = float((x**2).mean())
    half_width = hoeffding_half_width(ENTRIES, alpha, value_range=KERAS_LIMIT**2 * d)
    measure("scaled_entry_variance", variance, params={"init": "keras-default", "d": d},
            interval=[variance - half_width, variance + half_width], alpha=alpha,
            power=separated_power(keras, 1.0, half_width, hoeffding_half_width(ENTRIES, alpha, value_range=3.0), alpha),
            alternative="unit variance, as the FAQ's premise would give (a Glorot-uniform-like table of variance 1/d, "
                        "whose scaled squares lie in [0, 3])", n=ENTRIES,
            expected=keras)
    assert abs(variance - keras) <= half_width, f"Keras default: scaled variance {variance:.4f}, expected {keras:.4f}"


def _recovered(d_model: int, vocab: int, length: int, seed: int) -> tuple[int, int]:
    """Embed `length` random tokens at positions 0..length-1 with the model's InputEmbedding (sinusoidal, no
    dropout) and count how many are recovered as the nearest scaled embedding row."""
    config = TransformerConfig.base(vocab).with_(d_model=d_model, h=1, p_drop=0.0)
    torch.manual_seed(seed)
    embed = InputEmbedding(config, vocab).eval()
    ids = torch.randint(0, vocab, (1, length))
    with torch.no_grad():
        x = embed(ids)[0]  # (S, d) = sqrt(d) E[t] + PE(pos)
        rows = embed.token(torch.arange(vocab)[None])[0]  # (V, d) = sqrt(d) E
        nearest = (2 * x @ rows.T - (rows ** 2).sum(dim=1)).argmax(dim=1)  # argmin of |x - row|^2
    return int((nearest == ids[0]).sum()), length


def _record_recovery(measure, k: int, n: int, table: str, alpha: float, **details) -> bool:
    """Floor test of P(recovered) >= 0.99 against a rate of 0.9; returns whether it passes."""
    plan = binomial_floor(n, 0.99, 0.9, alpha)
    measure("recovered_fraction", k / n, params={"table": table}, interval=list(clopper_pearson(k, n, plan.alpha)),
            alpha=plan.alpha, power=plan.power, alternative="only 90% of tokens recovered", n=n, recovered=k,
            fails_below=plan.threshold, **details)
    return plan.passes(k)


@pytest.mark.claim("pe.preserves-token-identity", kind="statistical")
def test_the_token_is_recovered_from_embedding_plus_position_at_realistic_width(measure):
    """d = 512, a 37000-token vocabulary, positions 0..511: the nearest scaled embedding row of embedding + code is
    the token itself. Claim P >= 0.99: an exact binomial floor test at ALPHA_TOKEN_IDENTITY / 2; narrow widths
    are recorded."""
    k, n = _recovered(512, 37000, 512, seed=0)
    for d in (16, 32, 64):
        kd, nd = _recovered(d, 37000, 512, seed=d)
        measure("recovered_fraction_narrow", kd / nd, params={"d": d}, vocab=37000, n=nd)
    assert _record_recovery(measure, k, n, "sinusoidal-init", ALPHA_TOKEN_IDENTITY / 2, vocab=37000, d=512), (
        f"only {k}/{n} tokens recovered at d = 512")


MINILM_PAIRS = 2048  # (token, position) pairs drawn from the trained tables


def _minilm_recovery() -> dict:
    """all-MiniLM-L6-v2's trained tables: random tokens of its whole vocabulary at positions 0..511 (cycled);
    a token is recovered when its word row is the nearest one to word + position (before BERT's LayerNorm)."""
    from transformer.pretrained import load_minilm

    model = load_minilm(torch.float32)
    words = model.embed.token.lut.weight.detach()  # (V, d)
    positions = model.embed.position.table.weight.detach()  # (max_len, d)
    ids = torch.randint(0, words.shape[0], (MINILM_PAIRS,), generator=torch.Generator().manual_seed(0))
    x = words[ids] + positions[torch.arange(MINILM_PAIRS) % positions.shape[0]]
    with torch.no_grad():
        nearest = (2 * x @ words.T - (words**2).sum(1)).argmax(1)
    return {"recovered": int((nearest == ids).sum()), "n": MINILM_PAIRS, "vocab": words.shape[0],
            "d": words.shape[1], "word_norm": float(words.norm(dim=1).median()),
            "position_norm": float(positions.norm(dim=1).median())}


@pytest.mark.claim("pe.preserves-token-identity", kind="statistical")
def test_the_token_is_recovered_from_trained_word_plus_position_tables(request, measure):
    """The same on a trained model, all-MiniLM-L6-v2 (d = 384, learned positions, no sqrt(d) factor): word +
    position has its own word row as the nearest for P >= 0.99 of random (token, position) pairs; binomial floor
    test at ALPHA_TOKEN_IDENTITY / 2. Row norms are recorded (positions are about half as long as words)."""
    from properties._cache import computed_once
    from properties.bert_experiments import minilm_identity, offline

    offline()
    r = computed_once(request.config, "minilm-token-recovery", _minilm_recovery, sources=(Path(__file__),),
                      extra=minilm_identity())
    passes = _record_recovery(measure, r["recovered"], r["n"], "minilm-trained", ALPHA_TOKEN_IDENTITY / 2,
                              vocab=r["vocab"], d=r["d"])
    measure("median_row_norm", {"word": r["word_norm"], "position": r["position_norm"]}, params={"table": "minilm-trained"})
    assert passes, f"only {r['recovered']}/{r['n']} tokens recovered from the trained tables"
