"""The conformance suite as pytest tests: ``pytest --pyargs transformer.testing.suite --attention-impl M:F``.

One test per (implementation, property); a failure's message is the diagnosis and the reproduction.
"""

from __future__ import annotations

import pytest

from .runner import run_one


def test_conformance(conformance_cell, request):
    """The implementation satisfies the property (see ``transformer.testing.properties`` for each claim)."""
    from pytest_faq_conformance import record

    row, prop = conformance_cell
    config = request.config
    result = run_one(row, prop, max_examples=config.getoption("conformance_max_examples"))
    reason = request.node.get_closest_marker("xfail")
    if reason is not None:  # the outcome pytest will give it: xfailed if it fails, a strict XPASS otherwise
        result.outcome = {"failed": "xfailed", "passed": "xpassed"}.get(result.outcome, result.outcome)
    record(config, result)
    if result.outcome == "not-applicable":
        pytest.skip(f"{prop} does not apply to {row.name}: {result.diagnosis}")
    if result.outcome in ("failed", "xfailed"):
        pytest.fail(f"{row.name} {prop}: {result.diagnosis}\n    reproduce: {result.reproduction}", pytrace=False)
