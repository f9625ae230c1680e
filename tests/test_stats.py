"""The statistics helpers keep their stated levels.

The bounds scipy does not provide are checked by simulation: over many seeded replicates at a moderate
level (alpha = 0.05, where misses are frequent enough to count), the share of intervals that miss the
truth stays within what the level allows; a version made half as wide misses far more often, so each
check can fail. The planned tests' sizes and powers are compared with their simulated rejection rates.
"""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from properties import tolerances
from properties.stats import (
    binomial_equal_tails,
    binomial_floor,
    chi2_variance_bounds,
    chi2_variance_power,
    clopper_pearson,
    empirical_bernstein,
    hoeffding_half_width,
    hoeffding_interval,
    hoeffding_power,
    median_interval,
    median_interval_power,
    median_of_means,
    proportion_bound_power,
    seeds_for_power,
    separated_power,
    sign_test_rank,
)

ALPHA = 0.05
REPLICATES = 2000


def _most_misses_allowed(alpha: float) -> int:
    """Misses among REPLICATES that a level-alpha interval exceeds with probability < 1e-9."""
    return int(scipy.stats.binom.isf(1e-9, REPLICATES, alpha))


def _miss_rate(samples: torch.Tensor, truth: float, interval) -> tuple[int, int]:
    """Misses of the interval and of the same interval made half as wide, over the rows of samples."""
    misses = narrow = 0
    for row in samples:
        centre, half_width = interval(row)
        misses += abs(centre - truth) > half_width
        narrow += abs(centre - truth) > half_width / 2
    return misses, narrow


def test_median_of_means_covers_the_mean_of_a_heavy_tailed_distribution():
    """Student t with 3 degrees of freedom (sd sqrt(3), finite variance, infinite kurtosis)."""
    torch.manual_seed(0)
    samples = torch.distributions.StudentT(3.0).sample((REPLICATES, 400))
    misses, narrow = _miss_rate(samples, 0.0, lambda x: median_of_means(x, sigma=math.sqrt(3), alpha=ALPHA))
    assert misses <= _most_misses_allowed(ALPHA), f"{misses}/{REPLICATES} misses at level {ALPHA}"
    assert narrow > misses, "the simulation cannot tell a half-width interval from the real one"


def test_empirical_bernstein_covers_the_mean_of_bounded_skewed_values():
    torch.manual_seed(1)
    samples = torch.distributions.Beta(0.5, 5.0).sample((REPLICATES, 200)).double()
    truth = 0.5 / 5.5
    misses, narrow = _miss_rate(samples, truth, lambda x: empirical_bernstein(x, ALPHA))
    assert misses <= _most_misses_allowed(ALPHA), f"{misses}/{REPLICATES} misses at level {ALPHA}"
    assert narrow > 0 or misses == 0


def test_hoeffding_half_width_covers_the_mean_of_fair_coins_and_is_not_loose_by_far():
    torch.manual_seed(2)
    samples = (torch.rand(REPLICATES, 100) < 0.5).double()
    h = hoeffding_half_width(100, ALPHA)
    misses = int(((samples.mean(1) - 0.5).abs() > h).sum())
    narrow = int(((samples.mean(1) - 0.5).abs() > h / 2).sum())
    assert misses <= _most_misses_allowed(ALPHA)
    assert narrow > _most_misses_allowed(ALPHA), "half of Hoeffding's width must miss more than the level allows"



def test_hoeffding_interval_covers_bernoulli_means_and_its_power_is_a_lower_bound():
    """The clipped interval keeps Hoeffding's coverage, and the power it claims against a threshold is
    never more than the simulated share of intervals that land wholly on the truth's side."""
    torch.manual_seed(3)
    truth, threshold, n = 0.3, 0.5, 100
    samples = (torch.rand(REPLICATES, n) < truth).double()
    intervals = [hoeffding_interval(row, ALPHA) for row in samples]
    misses = sum(not (low <= truth <= high) for _, low, high in intervals)
    assert misses <= _most_misses_allowed(ALPHA)
    below = sum(high < threshold for _, _, high in intervals) / REPLICATES
    claimed = hoeffding_power(n, ALPHA, truth, threshold)
    assert 0 < claimed <= below + 3 * (below * (1 - below) / REPLICATES) ** 0.5 + 1e-3
    assert hoeffding_power(n, ALPHA, 0.49, threshold) == 0.0, "no power is claimed inside the interval's width"

def test_binomial_floor_has_its_planned_size_and_power():
    """Simulated rejection rates at p_claim and at p_wrong match the plan's exact alpha and power."""
    plan = binomial_floor(60, 0.9, 0.5, 1e-3)
    assert plan.alpha <= 1e-3 and binomial_floor(60, 0.9, 0.5, plan.alpha).threshold == plan.threshold
    torch.manual_seed(3)
    for p, expected in ((0.9, plan.alpha), (0.5, plan.power), (0.8, None)):
        k = (torch.rand(20000, plan.n) < p).sum(1)
        rate = float((k < plan.threshold).double().mean())
        reference = expected if expected is not None else float(scipy.stats.binom.cdf(plan.threshold - 1, plan.n, p))
        assert abs(rate - reference) <= 5 * math.sqrt(reference * (1 - reference) / 20000) + 1e-4, (p, rate, reference)


def test_more_seeds_buy_power_against_a_rate_of_one_half():
    n = seeds_for_power(0.9, 0.5, 1e-8, 0.999)
    assert binomial_floor(n, 0.9, 0.5, 1e-8).power >= 0.999 > binomial_floor(n - 1, 0.9, 0.5, 1e-8).power
    assert binomial_floor(10, 0.9, 0.5, 1e-6).power < 0.1, "ten seeds cannot tell 0.9 from 0.5 at 1e-6"


def test_median_interval_is_scipys_sign_test_interval_with_its_ranks():
    x = torch.tensor([3.0, -1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0, 9.0, 7.0, 9.0, 3.0,
                      2.0, 3.0, 8.0, 4.0, 6.0, 2.0, 6.0, 4.0, 3.0, 3.0, 8.0, 3.0, 2.0, 7.0])
    r = sign_test_rank(30, 1e-3)
    med, low, high = median_interval(x, 1e-3)
    ordered = x.sort().values
    assert (low, high) == (float(ordered[r - 1]), float(ordered[30 - r])) and med == float(x.double().median())
    with pytest.raises(ValueError):
        median_interval(x[:10], 1e-6)


def test_median_interval_power_matches_simulation():
    torch.manual_seed(4)
    n, alpha, q = 24, 1e-4, 0.8
    x = torch.randn(5000, n) + scipy.stats.norm.ppf(q)  # P(x > 0) = q
    r = sign_test_rank(n, alpha)
    rate = float((x.sort(1).values[:, r - 1] > 0).double().mean())
    power = median_interval_power(n, alpha, q)
    assert abs(rate - power) <= 5 * math.sqrt(power * (1 - power) / 5000) + 1e-3


def test_chi2_variance_bounds_have_their_level_and_power():
    torch.manual_seed(5)
    n = 50
    low, high = chi2_variance_bounds(n, ALPHA)
    for ratio in (1.0, 1.5):
        m = (torch.randn(20000, n, dtype=torch.float64) ** 2 * ratio).mean(1)
        rate = float(((m < low) | (m > high)).double().mean())
        expected = chi2_variance_power(n, ALPHA, ratio)
        assert abs(rate - expected) <= 5 * math.sqrt(expected * (1 - expected) / 20000), (ratio, rate, expected)
    assert chi2_variance_power(n, ALPHA, 1.0) == pytest.approx(ALPHA)


def test_clopper_pearson_is_the_exact_beta_interval():
    low, high = clopper_pearson(3, 10, 0.01)
    assert low == pytest.approx(scipy.stats.beta.ppf(0.005, 3, 8)) and high == pytest.approx(scipy.stats.beta.ppf(0.995, 4, 7))
    assert clopper_pearson(0, 10, 0.01)[0] == 0.0 and clopper_pearson(10, 10, 0.01)[1] == 1.0


def test_separated_power_only_claims_power_when_the_bands_cannot_overlap():
    assert separated_power(1.0, 2.0, 0.4, 0.5, 1e-6) == 1 - 1e-6
    assert separated_power(1.0, 2.0, 0.5, 0.5, 1e-6) == 0.0


def test_the_shares_of_the_false_alarm_budget_add_up_to_at_most_the_budget():
    shares = tolerances.ALPHA_SHARES
    assert len(shares) >= 10 and all(0 < a for a in shares.values())
    assert math.fsum(shares.values()) <= tolerances.FALSE_ALARM_BUDGET * (1 + 1e-12), shares


def test_proportion_bound_power_matches_simulation():
    torch.manual_seed(6)
    n, alpha = 200, 1e-3
    for above, threshold, p in ((True, 0.5, 0.62), (False, 0.1, 0.04)):
        counts = (torch.rand(4000, n) < p).sum(1)
        table = {int(x): clopper_pearson(int(x), n, alpha) for x in counts.unique()}  # one interval per count
        rate = sum((table[int(x)][0] > threshold) if above else (table[int(x)][1] < threshold) for x in counts) / 4000
        power = proportion_bound_power(n, alpha, threshold, p, above=above)
        assert abs(rate - power) <= 5 * math.sqrt(power * (1 - power) / 4000) + 1e-3, (above, rate, power)


def test_binomial_equal_tails_has_at_most_its_size_and_its_power():
    n, p0, alpha = 500, 0.3, 0.01
    a, b, power = binomial_equal_tails(n, p0, alpha, 0.35)
    size = scipy.stats.binom.cdf(a - 1, n, p0) + scipy.stats.binom.sf(b, n, p0)
    assert size <= alpha and scipy.stats.binom.cdf(a, n, p0) > alpha / 2  # the region cannot shrink further on the left
    torch.manual_seed(7)
    k = (torch.rand(20000, n) < 0.35).sum(1)
    rate = float(((k < a) | (k > b)).double().mean())
    assert abs(rate - power) <= 5 * math.sqrt(power * (1 - power) / 20000)
