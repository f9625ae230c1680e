"""Claim texts quote no number by hand: every number in a condition or counterexample is a placeholder
filled by the ledger from the claim's own measurements (``{name[k=v]:.3g}``), or sits in backticks as
part of a formula or of the claim's own statement. A number typed by hand goes stale the day the code
changes; this test fails on each one, naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from verification.catalogue import load_catalogue
from verification.records import PLACEHOLDER, placeholders, typed_numbers

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = load_catalogue()
TEXTS = [(c.id, key, getattr(c, key)) for c in CATALOGUE for key in ("condition", "counterexample") if getattr(c, key)]
#: Every file where evidence records measurements.
SOURCES = "\n".join(p.read_text(encoding="utf-8") for folder in ("properties", "proofs", "tests")
                    for p in sorted((ROOT / folder).rglob("*.py")) if p != Path(__file__).resolve())


@pytest.mark.parametrize("claim_id, key, text", TEXTS, ids=[f"{c}:{k}" for c, k, _ in TEXTS])
def test_a_condition_holds_no_number_that_no_measurement_produced(claim_id, key, text):
    typed = typed_numbers(text)
    assert not typed, (f"{claim_id} {key}: numbers typed by hand {typed}; use a placeholder such as "
                       "{name[param=value]:.3g} filled from the claim's measurements, or backticks for a formula")


@pytest.mark.parametrize("claim_id, key, text", TEXTS, ids=[f"{c}:{k}" for c, k, _ in TEXTS])
def test_every_placeholder_names_a_measurement_the_suite_records(claim_id, key, text):
    names = sorted({PLACEHOLDER.match(p).group("name") for p in placeholders(text)})
    # A cheap static check (the ledger itself refuses a placeholder no record of the run fills): the name
    # must appear as a string literal in the evidence, as measure's first argument or passed to a helper.
    unknown = [n for n in names if not re.search(rf"""["']{re.escape(n)}["']""", SOURCES)]
    assert not unknown, f"{claim_id} {key}: no test records a measurement called {unknown}"


def test_measurement_names_fold_in_no_parameters():
    """``measure("dot_variance", ..., params={"d_k": 4})``, never ``measure(f"dot_variance_d{d_k}", ...)``: a
    placeholder selects a record by its params, which a name built from them hides."""
    built = re.findall(r"""measure\(\s*f["'][^"']*["']""", SOURCES)
    folded = re.findall(r"""measure\(\s*["']([A-Za-z_0-9]*_d?\d+(?:\.\d+)?)["']""", SOURCES)
    assert not built and not folded, f"measurement names with parameters folded in: {built + folded}"
