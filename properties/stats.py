"""The suite's statistics: every statistical property decides with one of these helpers.

A statistical decision can be wrong in two ways, and both are stated. Its ``alpha`` is the probability
that it decides wrongly when its null hypothesis holds (the share of the run's false-alarm budget it
spends, named in ``properties/tolerances.py``); its ``power`` is the probability that it rejects the
wrong alternative it exists to rule out, computed for its own sample size. Two shapes of test occur:

* a floor test keeps the claim as its null (``p >= 0.9``) and fails when the data contradict it:
  alpha is its chance of failing a correct model, power its chance of failing a model whose true
  rate is the wrong alternative (``p = 0.5``);
* an interval test asserts that a (1 - alpha) interval excludes the wrong value (a median difference
  of 0): alpha is its chance of passing when the wrong value is the truth, power its chance of passing
  under a stated truth.

scipy computes the exact tests (binomial, Clopper-Pearson, the sign-test interval for a median,
chi-square). The distribution-free bounds scipy lacks (median of means, empirical Bernstein,
Hoeffding) are written here; ``tests/test_stats.py`` checks their coverage by simulation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch


def clopper_pearson(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion (Clopper and Pearson 1934)."""
    ci = scipy.stats.binomtest(successes, n).proportion_ci(confidence_level=1 - alpha, method="exact")
    return float(ci.low), float(ci.high)


def proportion_bound_power(n: int, alpha: float, threshold: float, p_true: float, *, above: bool = True) -> float:
    """P(the (1 - alpha) Clopper-Pearson interval of n trials lies wholly above ``threshold``, or wholly below it
    with above=False) when the true proportion is p_true: the power of asserting "the rate exceeds threshold"."""
    k = np.arange(n + 1)
    if above:
        low = np.where(k > 0, scipy.stats.beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1), 0.0)
        passing = k[low > threshold]
        return float(scipy.stats.binom.sf(passing.min() - 1, n, p_true)) if passing.size else 0.0
    high = np.where(k < n, scipy.stats.beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1)), 1.0)
    passing = k[high < threshold]
    return float(scipy.stats.binom.cdf(passing.max(), n, p_true)) if passing.size else 0.0


# ------------------------------------------------------------------------------------------------
# Binomial floor: "the event happens in at least a fraction p_claim of independent trials"
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BinomialFloor:
    """Fail when fewer than ``threshold`` of ``n`` trials succeed.

    alpha = P(K < threshold | p = p_claim) is at most the budget it was planned for; power =
    P(K < threshold | p = p_wrong) is the chance of failing when the true rate is only p_wrong.
    """

    n: int
    p_claim: float
    p_wrong: float
    threshold: int
    alpha: float
    power: float

    def passes(self, successes: int) -> bool:
        return successes >= self.threshold


def binomial_floor(n: int, p_claim: float, p_wrong: float, alpha: float) -> BinomialFloor:
    """The most powerful floor test of p >= p_claim against p = p_wrong < p_claim at level alpha
    (Neyman-Pearson: reject for small K), with its exact size and power."""
    below = int(scipy.stats.binom.ppf(alpha, n, p_claim))  # smallest k with P(K <= k) >= alpha
    while below >= 0 and scipy.stats.binom.cdf(below, n, p_claim) > alpha:
        below -= 1
    threshold = below + 1  # fail when K <= below
    size = float(scipy.stats.binom.cdf(below, n, p_claim)) if below >= 0 else 0.0
    power = float(scipy.stats.binom.cdf(below, n, p_wrong)) if below >= 0 else 0.0
    return BinomialFloor(n, p_claim, p_wrong, threshold, size, power)


def binomial_equal_tails(n: int, p0: float, alpha: float, p_wrong: float) -> tuple[int, int, float]:
    """Accepted counts [a, b] of the two-sided test of p = p0 with alpha / 2 in each tail (each tail's exact
    size is at most alpha / 2), and its power when the true rate is p_wrong."""
    a, b = (int(scipy.stats.binom.ppf(q, n, p0)) for q in (alpha / 2, 1 - alpha / 2))
    return a, b, float(scipy.stats.binom.cdf(a - 1, n, p_wrong) + scipy.stats.binom.sf(b, n, p_wrong))


def seeds_for_power(p_claim: float, p_wrong: float, alpha: float, power: float) -> int:
    """The fewest trials whose floor test reaches ``power`` against p_wrong at level alpha."""
    n = 1
    while binomial_floor(n, p_claim, p_wrong, alpha).power < power:
        n += 1
    return n


# ------------------------------------------------------------------------------------------------
# Medians: the sign test and its distribution-free interval
# ------------------------------------------------------------------------------------------------

def sign_test_rank(n: int, alpha: float) -> int:
    """The largest r with 2 P(Binomial(n, 1/2) <= r - 1) <= alpha: [x_(r), x_(n+1-r)] is the (1 - alpha)
    sign-test interval for the median. 0 when n values cannot bound a median at that level."""
    r = 0
    while r + 1 <= n // 2 and 2 * scipy.stats.binom.cdf(r, n, 0.5) <= alpha:
        r += 1
    return r


def median_interval(values: torch.Tensor, alpha: float) -> tuple[float, float, float]:
    """Median of n independent values and scipy's order-statistic interval around it (the sign test
    inverted): it misses the true median with probability <= alpha whatever the distribution."""
    x = values.flatten().double().numpy()
    if sign_test_rank(x.size, alpha) == 0:
        raise ValueError(f"{x.size} values cannot bound a median at error rate {alpha}")
    ci = scipy.stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(1 - alpha)
    return float(np.median(x)), float(ci.low), float(ci.high)


def median_interval_power(n: int, alpha: float, p_above: float) -> float:
    """P(the (1 - alpha) median interval lies wholly above a value c) when each value exceeds c with
    probability p_above: the lower end x_(r) > c needs at least n + 1 - r of the n values above c."""
    r = sign_test_rank(n, alpha)
    return float(scipy.stats.binom.sf(n - r, n, p_above))


# ------------------------------------------------------------------------------------------------
# Variances of Gaussian samples: chi-square
# ------------------------------------------------------------------------------------------------

def chi2_variance_bounds(n: int, alpha: float) -> tuple[float, float]:
    """[low, high] with P(low <= mean(x^2) / sigma^2 <= high) = 1 - alpha for n i.i.d. N(0, sigma^2)."""
    return tuple(float(scipy.stats.chi2.ppf(q, n)) / n for q in (alpha / 2, 1 - alpha / 2))


def chi2_variance_power(n: int, alpha: float, ratio: float) -> float:
    """P(mean(x^2) falls outside the bounds for variance sigma^2) when the true variance is ratio * sigma^2."""
    low, high = chi2_variance_bounds(n, alpha)
    return float(scipy.stats.chi2.cdf(n * low / ratio, n) + scipy.stats.chi2.sf(n * high / ratio, n))


# ------------------------------------------------------------------------------------------------
# Means of bounded or finite-variance values (distribution-free)
# ------------------------------------------------------------------------------------------------

def hoeffding_half_width(n: int, alpha: float, value_range: float = 1.0) -> float:
    """h with P(|mean - E x| > h) <= alpha for n independent values in an interval of this length
    (Hoeffding 1963, Theorem 2, two-sided)."""
    return value_range * math.sqrt(math.log(2 / alpha) / (2 * n))



def hoeffding_interval(values: torch.Tensor, alpha: float) -> tuple[float, float, float]:
    """Mean of independent values in [0, 1] and its (1 - alpha) Hoeffding interval, clipped to [0, 1]."""
    mean, h = float(values.double().mean()), hoeffding_half_width(values.numel(), alpha)
    return mean, max(0.0, mean - h), min(1.0, mean + h)


def hoeffding_power(n: int, alpha: float, truth: float, threshold: float) -> float:
    """Lower bound on P(the Hoeffding interval lies wholly on truth's side of threshold) when the true mean of
    values in [0, 1] is truth: the estimate must land within |threshold - truth| - h of it (one-sided Hoeffding)."""
    margin = abs(threshold - truth) - hoeffding_half_width(n, alpha)
    return max(0.0, 1 - math.exp(-2 * n * margin**2)) if margin > 0 else 0.0

@functools.lru_cache
def _median_of_means_plan(alpha: float) -> tuple[float, int]:
    """(c, K) minimising c sqrt(K) subject to P(Binomial(K, 1/c^2) >= (K+1)/2) <= alpha, K odd."""
    best = None
    for c in [i / 10 for i in range(15, 50)]:
        K = 1
        while scipy.stats.binom.sf((K - 1) // 2, K, 1 / c**2) > alpha:
            K += 2
        if best is None or c * math.sqrt(K) < best[0] * math.sqrt(best[1]):
            best = (c, K)
    return best


def median_of_means(x: torch.Tensor, *, sigma: float, alpha: float) -> tuple[float, float]:
    """(estimate, half_width) with P(|estimate - E x| > half_width) <= alpha, for independent x_i of
    standard deviation at most ``sigma`` (no distributional assumption beyond that).

    K groups of m: a group mean is off by more than c sigma / sqrt(m) with probability <= 1/c^2
    (Chebyshev); the median of K (odd) group means is off only if (K+1)/2 of them are, with probability
    <= P(Binomial(K, 1/c^2) >= (K+1)/2) <= alpha. (c, K) minimise the half-width c sigma sqrt(K / n).
    """
    c, K = _median_of_means_plan(alpha)
    m = x.numel() // K
    if m == 0:
        raise ValueError(f"{x.numel()} values are fewer than the {K} groups level {alpha} needs")
    means = x.flatten()[: K * m].reshape(K, m).mean(1)
    return float(means.median()), median_of_means_half_width(x.numel(), sigma=sigma, alpha=alpha)


def median_of_means_half_width(n: int, *, sigma: float, alpha: float) -> float:
    """The half-width median_of_means gives n values of standard deviation at most sigma."""
    c, K = _median_of_means_plan(alpha)
    return c * sigma / math.sqrt(n // K)


def empirical_bernstein(x: torch.Tensor, alpha: float) -> tuple[float, float]:
    """(mean, half_width) for independent x_i in [0, 1], two-sided at level alpha (Maurer and Pontil
    2009, Theorem 4, applied to x and 1 - x at alpha / 2 each): sqrt(2 V ln(4/alpha) / n) +
    7 ln(4/alpha) / (3 (n - 1)), V the unbiased sample variance."""
    n = x.numel()
    log_term = math.log(4 / alpha)
    v = float(x.double().var(unbiased=True))
    return float(x.double().mean()), math.sqrt(2 * v * log_term / n) + 7 * log_term / (3 * (n - 1))


def separated_power(null: float, wrong: float, half_width_null: float, half_width_wrong: float, alpha: float) -> float:
    """A lower bound on the power of "fail when the estimate is more than half_width_null from null"
    when the truth is ``wrong``: if the two values are further apart than both half-widths, the estimate
    lands within half_width_wrong of ``wrong`` (so outside the null's band) with probability >= 1 - alpha.
    0 (no guarantee) otherwise."""
    return 1 - alpha if abs(wrong - null) > half_width_null + half_width_wrong else 0.0
