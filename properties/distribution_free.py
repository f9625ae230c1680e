"""Small, distribution-free intervals and their power, shared by the statistical properties.

Each interval misses the true value with probability at most ``alpha`` whatever the distribution
(Hoeffding for means of values in [0, 1]; the sign-test order statistics for a median); each power
function gives the probability that such an interval lands entirely on one side of a threshold when the
truth is a stated value, so a test can report how surely it rejects the wrong alternative.
"""

from __future__ import annotations

import math

import torch
from scipy.stats import binom


def hoeffding_half_width(n: int, alpha: float) -> float:
    """Half-width h of the two-sided interval mean +- h for n independent values in [0, 1]:
    P(|mean - mu| >= h) <= 2 exp(-2 n h^2) = alpha."""
    return math.sqrt(math.log(2 / alpha) / (2 * n))


def hoeffding_interval(values: torch.Tensor, alpha: float) -> tuple[float, float, float]:
    """Mean of independent values in [0, 1] and its (1 - alpha) Hoeffding interval, clipped to [0, 1]."""
    mean, h = float(values.double().mean()), hoeffding_half_width(values.numel(), alpha)
    return mean, max(0.0, mean - h), min(1.0, mean + h)


def hoeffding_power(n: int, alpha: float, truth: float, threshold: float) -> float:
    """Lower bound on P(the interval lies entirely on truth's side of threshold) when the true mean is
    truth: the estimate must land within |threshold - truth| - h of it (one-sided Hoeffding)."""
    margin = abs(threshold - truth) - hoeffding_half_width(n, alpha)
    return max(0.0, 1 - math.exp(-2 * n * margin**2)) if margin > 0 else 0.0


def sign_test_rank(n: int, alpha: float) -> int:
    """The largest r with 2 P(Binomial(n, 1/2) <= r - 1) <= alpha: [x_(r), x_(n+1-r)] covers the median."""
    r = 0
    while r + 1 <= n // 2 and 2 * binom.cdf(r, n, 0.5) <= alpha:
        r += 1
    if r == 0:
        raise ValueError(f"{n} values cannot bound a median at error rate {alpha}")
    return r


def sign_test_power(n: int, alpha: float, share_beyond: float) -> float:
    """P(the median interval lies entirely beyond a threshold) when each value is beyond it with
    probability share_beyond: at least n + 1 - r of the n values must be."""
    r = sign_test_rank(n, alpha)
    return float(binom.sf(n - r, n, share_beyond))


def clopper_pearson(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion."""
    from scipy.stats import beta

    low = beta.ppf(alpha / 2, successes, n - successes + 1) if successes else 0.0
    high = beta.ppf(1 - alpha / 2, successes + 1, n - successes) if successes < n else 1.0
    return float(low), float(high)


def clopper_pearson_power_below(n: int, alpha: float, truth: float, threshold: float) -> float:
    """P(the Clopper-Pearson upper bound falls below threshold) when the true proportion is truth."""
    k = -1
    while k + 1 <= n and clopper_pearson(k + 1, n, alpha)[1] < threshold:
        k += 1
    return float(binom.cdf(k, n, truth)) if k >= 0 else 0.0
