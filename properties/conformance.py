"""The attention implementations under test, as the repository's own tests import them.

Everything lives in the installable package ``transformer.testing`` (contract and built-in rows:
``transformer.testing.implementations``; properties: ``transformer.testing.properties``; the pytest
plugin with ``--attention-impl``: ``transformer.testing.plugin``, loaded by the root ``conftest.py``).
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
