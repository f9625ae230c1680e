"""Every conformance property fails on an attention with the matching classic mistake, and the
failure says the mistake in words (transformer.testing.examples.broken holds the broken ones).

A property that no broken implementation can fail would prove nothing; these tests are the
evidence that each one can, and that the diagnosis names the cause rather than "not close".
"""

from __future__ import annotations

import pytest

from transformer.testing import BUILTIN, run_one
from transformer.testing.examples import broken
from transformer.testing.implementations import as_implementation

CASES = [
    ("no_scale", "definition", "scores scaled by 1, expected 1/sqrt(d)"),
    ("scale_by_d", "definition", "scores scaled by 1/d"),
    ("flipped_mask", "definition", "mask polarity flipped"),
    ("softmax_over_queries", "definition", "softmax over the query axis"),
    ("mask_after_softmax", "definition", "mask applied after the softmax"),
    ("mask_ignored", "definition", "mask ignored"),
    ("mask_after_softmax", "convex-combination", "do not sum to 1"),
    ("flipped_mask", "padding-zero-weight", "masked keys got weights"),
    ("mask_ignored", "padding-invariance", "mask ignored (every key visible)"),
    ("minus_inf_fill", "fully-masked-row", "a softmax over a row of -inf scores"),
    ("minus_1e9_fill", "fully-masked-row", "crashes in float16"),
    ("finfo_min_fill", "fully-masked-row", "reads the masked values"),
    ("minus_1e9_fill", "low-precision-fill", "such as -1e9"),
    ("no_scale", "low-precision-fill", "scores scaled by 1, expected 1/sqrt(d)"),
    ("causal_off_by_one", "causal-future-invariance", "depend on later keys/values"),
    ("causal_hides_present", "causal-future-invariance", "is invisible from position"),
    ("heads_mixed", "reshape-equals-loop", "differs from head 0 alone"),
    ("minus_inf_fill", "no-nan", "non-finite outputs for a query that sees no key"),
    ("no_max_subtraction", "no-nan", "for queries that see keys (huge scores"),
]


@pytest.mark.parametrize("factory, prop, words", CASES, ids=[f"{f}-{p}" for f, p, _ in CASES])
def test_a_broken_attention_fails_the_property_with_the_right_words(factory, prop, words):
    impl = as_implementation(getattr(broken, factory)(), f"transformer.testing.examples.broken:{factory}")
    result = run_one(impl, prop, max_examples=30, shrink=False)  # the words do not need the smallest case
    assert result.outcome == "failed", f"{factory} passes {prop}"
    assert words in result.diagnosis, result.diagnosis
    assert result.reproduction.startswith("from transformer.testing import replay")


def test_a_declared_convention_is_not_a_bug_and_the_declaration_is_checked():
    """finfo.min fill: undeclared it fails fully-masked-row (it reads masked values), declared
    'uniform' it passes; a zero-output attention that declares 'uniform' fails (the declaration is
    checked, not trusted)."""
    declared = as_implementation(broken.finfo_min_fill_declared(), "broken:finfo_min_fill_declared")
    assert run_one(declared, "fully-masked-row", max_examples=10).outcome == "passed"
    zeros = BUILTIN[0].attend

    def claims_uniform(q, k, v, allowed):
        return zeros(q, k, v, allowed)

    claims_uniform.conventions = {"fully-masked-row": "uniform"}
    result = run_one(as_implementation(claims_uniform, "x:claims_uniform"), "fully-masked-row", max_examples=10)
    assert result.outcome == "failed" and "declared convention 'uniform'" in result.diagnosis


def test_every_attention_property_is_shown_to_fail_on_some_broken_attention():
    from transformer.testing import PROPERTIES

    assert {prop for _, prop, _ in CASES} == set(PROPERTIES)
