"""Model-level conformance: this project's Transformer behind the adapter contract of
``transformer.testing.models``, each ``model.*`` property one cell of the conformance table; and,
for every property, an adapter with the matching mistake that fails it in words."""

from __future__ import annotations

import pytest

from transformer.testing.examples import broken_models
from transformer.testing.models import (
    MODEL_PROPERTIES,
    project_transformer,
    project_transformer_without_positions,
)
from transformer.testing.runner import ModelRowFrom, run_one

ROWS = [ModelRowFrom(project_transformer(), "transformer.testing.models:project_transformer"),
        ModelRowFrom(project_transformer_without_positions(),
                     "transformer.testing.models:project_transformer_without_positions")]
CELLS = [pytest.param(row, prop, id=f"{row.name}-{prop}", marks=pytest.mark.conformance(row.name, prop))
         for row in ROWS for prop in MODEL_PROPERTIES]


@pytest.mark.parametrize("row, prop", CELLS)
def test_the_project_model_satisfies_the_model_property(row, prop):
    """The property holds, or does not apply (permutation equivariance needs a model without positions)."""
    result = run_one(row, prop, max_examples=8)
    if result.outcome == "not-applicable":
        pytest.skip(result.diagnosis)
    assert result.outcome == "passed", f"{result.diagnosis}\n{result.reproduction}"


BROKEN = [
    ("padding_ignored", "model.padding-invariance", "padding leaks into real positions"),
    ("decoder_sees_the_future", "model.causal-future-invariance", "change with later tokens"),
    ("cache_ignored", "model.kv-cache-equivalence", "cached decoding in chunks"),
    ("positions_not_declared", "model.permutation-equivariance", "does not permute the states"),
    ("tied_by_copy", "model.tied-embeddings-share-storage", "two tensors (a copy, not a share)"),
]


@pytest.mark.parametrize("factory, prop, words", BROKEN, ids=[p for _, p, _ in BROKEN])
def test_a_broken_model_fails_the_property_in_words(factory, prop, words):
    row = ModelRowFrom(getattr(broken_models, factory)(), f"transformer.testing.examples.broken_models:{factory}")
    result = run_one(row, prop, max_examples=10, shrink=False)
    assert result.outcome == "failed" and words in result.diagnosis, result.diagnosis


def test_every_model_property_is_shown_to_fail_on_some_broken_adapter():
    assert {prop for _, prop, _ in BROKEN} == set(MODEL_PROPERTIES)
