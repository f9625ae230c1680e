"""Third-party libraries in the conformance table: Hugging Face transformers (BERT's eager and sdpa
attention functions, BERT, GPT-2 with its cache, T5) and x-transformers (its Attend module, an
encoder without positions, a decoder with its cache and tied embeddings), all small random-initialised
float64 configs built here, nothing downloaded (``transformer.testing.thirdparty``).

Every cell runs the same property search as ``faq-conformance``, with few examples (the explicit hard
cases always run). A defect found upstream is a strict expected failure that names its reason and, where
one exists, the upstream issue: the day upstream fixes it, the cell turns into an error.
"""

from __future__ import annotations

import functools
import importlib.util

import pytest

from transformer.testing import thirdparty
from transformer.testing.models import MODEL_PROPERTIES
from transformer.testing.properties import PROPERTIES
from transformer.testing.runner import KNOWN_FAILURES, row_from, run_one

EXAMPLES = 4  # per cell: enough to reach every known failure, cheap enough for the default suite
LIBRARY = {"transformers": "transformers", "x-transformers": "x_transformers"}


def _library(factory) -> str:
    return "x-transformers" if factory.__name__.startswith("x_transformers") else "transformers"


@functools.cache
def _row(factory):
    """The row a factory builds, once per session; None when its library is not installed."""
    if importlib.util.find_spec(LIBRARY[_library(factory)]) is None:
        return None
    return row_from(factory(), f"transformer.testing.thirdparty:{factory.__name__}")


def _name(factory) -> str:
    row = _row(factory)
    return factory.__name__.replace("_", "-") if row is None else row.name


def _cells():
    for factories, properties in ((thirdparty.ATTENTION_FACTORIES, PROPERTIES), (thirdparty.MODEL_FACTORIES, MODEL_PROPERTIES)):
        for factory in factories:
            name = _name(factory)
            for prop in properties:
                marks = [pytest.mark.conformance(name, prop)]
                reason = KNOWN_FAILURES.get((name, prop))
                if reason:
                    marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
                yield pytest.param(factory, prop, id=f"{name}-{prop}", marks=marks)


@pytest.mark.parametrize("factory, prop", list(_cells()))
def test_a_third_party_implementation_satisfies_the_property(factory, prop):
    """The property holds for the library's row, or does not apply to it (a model without a cache or encoder)."""
    row = _row(factory)
    if row is None:
        pytest.skip(f"{LIBRARY[_library(factory)]} is not installed (pip install '.[thirdparty]')")
    result = run_one(row, prop, max_examples=EXAMPLES, shrink=False)  # the ledger keeps the words, not the case
    if result.outcome == "not-applicable":
        pytest.skip(result.diagnosis)
    assert result.outcome == "passed", f"{result.diagnosis}\n{result.reproduction}"


def test_transformers_eager_convention_is_recognised_and_must_be_declared():
    """Undeclared, transformers' eager attention fails fully-masked-row, and the diagnosis says why in
    words (it averages the masked values, a finite-fill convention) and how to declare it; the
    declared row passes the same property (its cell in the table)."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed")
    from transformer.testing.implementations import as_implementation

    declared = thirdparty.transformers_bert_eager_attention()
    undeclared = as_implementation(lambda q, k, v, allowed: declared(q, k, v, allowed), "undeclared")
    result = run_one(undeclared, "fully-masked-row", max_examples=EXAMPLES, shrink=False)
    assert result.outcome == "failed", result
    assert "reads the masked values" in result.diagnosis and "'fully-masked-row': 'uniform'" in result.diagnosis
    assert run_one(row_from(declared, "declared"), "fully-masked-row", max_examples=EXAMPLES).outcome == "passed"
