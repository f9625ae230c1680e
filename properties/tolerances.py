"""Named tolerances, in one place.

Exact properties run in float64. Agreement between two float64 computations of the same quantity
by different operation orders is limited by round-off, which grows with the number of accumulated
terms; a few thousand ulps of 1.0 (2.2e-16) covers the sizes drawn here with a wide margin while
still failing on any real bug (which moves results by at least 1e-3 in practice).
"""

# The float tolerances are the installable conformance suite's, so the repository's properties and a
# user's run judge an implementation alike: two float64 routes to one value (FLOAT64), a value through
# whole layer stacks (FLOAT64_DEEP), exact zeros (EXACT_ZERO), low precision against float64 (BY_DTYPE).
from transformer.testing.tolerances import BY_DTYPE, EXACT_ZERO, FLOAT64, FLOAT64_DEEP, Tol  # noqa: F401

# ---------------------------------------------------------------------------------------------------
# The false-alarm budget of one default run (`make verify`, `make test`): the probability that some
# statistical property fails on a correct implementation is at most FALSE_ALARM_BUDGET. Each claim's
# statistical evidence spends the share named below, split evenly over the decisions it makes (each
# decision records its share as `alpha=` through `measure`); the shares add up to at most the budget
# (tests/test_stats.py checks it), so by the union bound the run stays within it. A new statistical
# test takes its share out of ALPHA_RESERVE.
# ---------------------------------------------------------------------------------------------------
FALSE_ALARM_BUDGET = 1e-6
# The whole run's budget under its older name; a single test spends one of the shares below instead.
FALSE_ALARM_RATE = FALSE_ALARM_BUDGET

# Nine paired sign-test intervals over 30 replicas need 2 P(Binomial(30, 1/2) <= 1) = 5.8e-8 each to
# use ranks 2 and 29 (with less, the interval widens to the extremes): the largest share.
ALPHA_ADDITIVE_VS_DOT = 5.4e-7      # attn.additive-vs-dot-large-dk (toy retrieval training)
ALPHA_QK_VARIANCE = 3e-8            # attn.qk-variance
ALPHA_QK_VARIANCE_INIT = 2e-8       # attn.qk-variance-init
ALPHA_UNSCALED_GRADIENT = 3e-8      # attn.unscaled-vanishing-gradient
ALPHA_SPARSE_ROWS = 3e-8            # attn.sparse-rows (trained MiniLM)
ALPHA_HEADS_SPECIALISE = 2e-8       # heads.specialise (trained MiniLM)
ALPHA_HEADS_PRUNABLE = 3e-8         # heads.prunable (trained MiniLM)
ALPHA_SQRT_D_SCALING = 3e-8         # embed.sqrt-d-scaling
ALPHA_TOKEN_IDENTITY = 3e-8         # pe.preserves-token-identity
ALPHA_RESIDUAL_GRADIENT = 3e-8      # arch.residual-gradient
ALPHA_RANK_COLLAPSE = 3e-8          # arch.residual-rank-collapse
ALPHA_DROPOUT = 2e-8                # train.dropout-expectation

# Section K and qk.no-projection-self-dominant: five decisions, one equal part each (a decision over
# several settings splits its part by a union bound).
ALPHA_QK_SHARED_DIAGONAL_MASS = 1.6e-8        # qk.shared-projection-identity-like
ALPHA_QK_NO_PROJECTION_DIAGONAL_MASS = 1.6e-8  # qk.no-projection-self-dominant
ALPHA_BATCHNORM_SMALL_BATCH = 1.6e-8          # arch.batchnorm-small-batch-noise
ALPHA_BATCHNORM_SATURATION = 1.6e-8           # arch.batchnorm-sigmoid-saturation
ALPHA_RELU_GAIN = 1.6e-8                      # arch.relu-amplitude-grows

# Toy-training experiments (properties/test_toy_experiments.py): ten win-rate decisions, each
# spending ALPHA_TOY_TRAINING / TOY_TRAINING_CHECKS.
ALPHA_TOY_TRAINING = 7e-8
TOY_TRAINING_CHECKS = 10
TOY_TRAINING_ALPHA = ALPHA_TOY_TRAINING / TOY_TRAINING_CHECKS

ALPHA_RESERVE = 5e-9                # not yet spent: new statistical tests take their share from here

ALPHA_SHARES = {name: value for name, value in globals().items() if name.startswith("ALPHA_")}
