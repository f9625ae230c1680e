"""Conformance properties for attention implementations and Transformer models, shipped with the model.

``faq-conformance MODULE:FACTORY`` (or ``pytest --pyargs transformer.testing.suite --attention-impl
MODULE:FACTORY``) runs them against your own code: ``FACTORY()`` returns an attention callable
(``transformer.testing.implementations`` states the contract) or a model adapter
(``transformer.testing.models``). Strategies live in ``transformer.testing.strategies``.
"""

from .implementations import BUILTIN, Implementation, UsageError, reference_attention
from .properties import PROPERTIES, PropertyFailure
from .runner import KNOWN_FAILURES, Result, replay, run, run_one

__all__ = ["BUILTIN", "KNOWN_FAILURES", "PROPERTIES", "Implementation", "PropertyFailure", "Result", "UsageError",
           "reference_attention", "replay", "run", "run_one"]
