"""The attention implementations under test, as the repository's own tests import them.

Everything lives in the installable package ``transformer.testing`` (contract and built-in rows:
``transformer.testing.implementations``; properties: ``transformer.testing.properties``; the pytest
plugin with ``--attention-impl``: ``pytest_faq_conformance``, loaded by the root ``conftest.py``).
This module re-exports the names the tests use.
"""

from transformer.testing.implementations import (  # noqa: F401
    BUILTIN,
    Implementation,
    attention_weights,
    load_user_implementation,
    merge_heads,
    reference_attention,
    split_heads,
)
from transformer.testing.properties import PROPERTIES  # noqa: F401
from transformer.testing.runner import KNOWN_FAILURES  # noqa: F401


def attention_property(name: str):
    """Decorate a test ``(attention_impl, case)`` as the conformance property ``name``: it runs against
    every implementation on the property's own cases (and explicit hard cases), through hypothesis."""
    import pytest
    from hypothesis import example, given

    prop = PROPERTIES[name]

    def decorate(test):
        wrapped = given(case=prop.cases())(test)
        for case in prop.examples:
            wrapped = example(case=case)(wrapped)
        return pytest.mark.attention_property(name)(wrapped)

    return decorate
