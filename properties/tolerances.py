"""Named tolerances, in one place.

Exact properties run in float64. Agreement between two float64 computations of the same quantity
by different operation orders is limited by round-off, which grows with the number of accumulated
terms; a few thousand ulps of 1.0 (2.2e-16) covers the sizes drawn here with a wide margin while
still failing on any real bug (which moves results by at least 1e-3 in practice).
"""

from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tol(Mapping):
    """A relative and an absolute tolerance; ``assert_close(a, b, **FLOAT64)`` passes both."""

    rtol: float
    atol: float

    def __getitem__(self, key: str) -> float:
        if key not in ("rtol", "atol"):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(("rtol", "atol"))

    def __len__(self) -> int:
        return 2


# Two float64 routes to the same value (different summation order, fused vs explicit paths).
FLOAT64 = Tol(rtol=1e-10, atol=1e-12)
# A float64 quantity that went through many layers (whole encoder-decoder stacks, BERT).
FLOAT64_DEEP = Tol(rtol=1e-9, atol=1e-10)
# A value that must be exactly zero in float64 (masked weights): no slack at all.
EXACT_ZERO = 0.0

# Low-precision runs are compared against a float64 reference; each widening is the dtype's
# machine epsilon times a small factor for the softmax's accumulation.
BY_DTYPE = {
    torch.float64: FLOAT64,
    torch.float32: Tol(rtol=1e-5, atol=1e-6),
    torch.float16: Tol(rtol=5e-3, atol=5e-3),   # eps 9.8e-4
    torch.bfloat16: Tol(rtol=4e-2, atol=4e-2),  # eps 7.8e-3
}

# Statistical properties: every test's false-alarm rate (probability of failing on a correct
# implementation) is at most this, per run.
FALSE_ALARM_RATE = 1e-6

# --- Section K and qk.no-projection-self-dominant --------------------------------------------------
# These decisive statistical checks share 2e-7 of the run's 1e-6, one equal part each; each check
# records its part as `alpha` (a check over several settings splits its part by a union bound).
SECOND_READING_BUDGET = 2e-7
_SECOND_READING_CHECKS = 5
ALPHA_QK_SHARED_DIAGONAL_MASS = SECOND_READING_BUDGET / _SECOND_READING_CHECKS
ALPHA_QK_NO_PROJECTION_DIAGONAL_MASS = SECOND_READING_BUDGET / _SECOND_READING_CHECKS
ALPHA_BATCHNORM_SMALL_BATCH = SECOND_READING_BUDGET / _SECOND_READING_CHECKS
ALPHA_BATCHNORM_SATURATION = SECOND_READING_BUDGET / _SECOND_READING_CHECKS
ALPHA_RELU_GAIN = SECOND_READING_BUDGET / _SECOND_READING_CHECKS
# --------------------------------------------------------------------------------------------------
# Toy-training experiments (properties/test_toy_experiments.py): their decisive checks together take
# at most 2e-7 of the run's budget, split evenly; each check records TOY_TRAINING_ALPHA as its alpha.
# --------------------------------------------------------------------------------------------------
TOY_TRAINING_BUDGET = 2e-7
TOY_TRAINING_CHECKS = 10
TOY_TRAINING_ALPHA = TOY_TRAINING_BUDGET / TOY_TRAINING_CHECKS
