"""Token embeddings: the sqrt(d_model) factor, and whether the token survives the added position code.

The embedding table is drawn with variance 1/d_model and multiplied by sqrt(d_model), so its entries
have unit variance, the scale of the sinusoidal code added to it; at a realistic width the token can
still be read back from the sum as the nearest embedding row. Both are measured on the model's own
``TokenEmbedding`` / ``InputEmbedding`` at initialisation.

Statistical tests and their false-alarm rates (each <= 1e-6 per run):
- unit variance: the scaled entries are N(0, 1) under the claim (the model draws N(0, 1/d) and
  multiplies by sqrt(d)), so sum(x^2) ~ chi-square(n); a two-sided test at 1e-6 / 3 per width.
- token recovery: k of n positions recovered; one-sided exact binomial test of P(recovered) >= 0.99.
"""

from __future__ import annotations

import pytest
import scipy.stats
import torch

from proofs.closed_forms import KERAS_UNIFORM_VARIANCE, sinusoid_squared_norm
from properties.tolerances import FALSE_ALARM_RATE
from transformer import (
    InputEmbedding,
    TokenEmbedding,
    TransformerConfig,
    sinusoidal_encoding,
)


@pytest.mark.claim("embed.sqrt-d-scaling", kind="statistical")
def test_scaled_embeddings_have_unit_variance_like_the_position_code(measure):
    """For d in {8, 64, 512}: the model's scaled token embeddings (every row of a vocabulary) have entry variance
    1 (two-sided chi-square test), the sinusoidal code has mean square 1/2 per entry, so both are O(1);
    unscaled, the embedding would be d/2 times smaller in variance than the code."""
    alpha = FALSE_ALARM_RATE / 3
    for d in (8, 64, 512):
        vocab = 2 ** 19 // d  # 2^19 entries per width
        torch.manual_seed(d)
        embedding = TokenEmbedding(vocab, d).double()
        with torch.no_grad():
            x = embedding(torch.arange(vocab)[None])[0]  # (V, d), scaled by sqrt(d)
        n, sum_squares = x.numel(), float((x ** 2).sum())
        low, high = (scipy.stats.chi2.ppf(q, n) / n for q in (alpha / 2, 1 - alpha / 2))
        variance = sum_squares / n
        code = sinusoidal_encoding(torch.arange(512), d)
        code_mean_square = float((code ** 2).mean())
        measure("scaled_entry_variance", variance, params={"d_model": d}, interval=[variance / high, variance / low],
                confidence=1 - alpha, n=n, expected=1.0, unscaled=variance / d, code_mean_square=code_mean_square)
        assert low <= variance <= high, f"d={d}: variance {variance:.5f} outside [{low:.5f}, {high:.5f}]"
        assert code_mean_square == pytest.approx(sinusoid_squared_norm(d) / d)
    measure("keras_default_embedding_variance", float(KERAS_UNIFORM_VARIANCE),
            xavier_variance_37000x512=2 / (37000 + 512), after_sqrt_512=512 * float(KERAS_UNIFORM_VARIANCE),
            note="uniform(-0.05, 0.05) is not Glorot/Xavier; scaled by sqrt(512) its variance is 0.43, not 1")


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


@pytest.mark.claim("pe.preserves-token-identity", kind="statistical")
def test_the_token_is_recovered_from_embedding_plus_position_at_realistic_width(measure):
    """d = 512, a 37000-token vocabulary, positions 0..511: the nearest scaled embedding row of embedding + code is
    the token itself. Claim P >= 0.99, one-sided exact binomial test at 1e-6; narrow widths are recorded."""
    k, n = _recovered(512, 37000, 512, seed=0)
    interval = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=1 - FALSE_ALARM_RATE)
    narrow = {d: _recovered(d, 37000, 512, seed=d) for d in (16, 32, 64)}
    measure("recovered_fraction", k / n, params={"d_model": 512}, interval=[interval.low, interval.high],
            confidence=1 - FALSE_ALARM_RATE, n=n, vocab=37000, p0=0.99)
    measure("recovered_fraction_by_width", {str(d): kd / nd for d, (kd, nd) in narrow.items()}, vocab=37000, n=512)
    assert scipy.stats.binom.cdf(k, n, 0.99) > FALSE_ALARM_RATE, f"only {k}/{n} tokens recovered at d = 512"
