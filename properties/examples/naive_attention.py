"""The worked example now ships with the package: ``transformer.testing.examples.naive_attention``."""

from transformer.testing.examples.naive_attention import make_attention  # noqa: F401
