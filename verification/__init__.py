"""The claims spine: the catalogue of FAQ claims, the pytest plugin linking evidence to them, the ledger.

* ``verification.catalogue``: load and validate ``claims/*.toml`` (``load_catalogue``, ``Claim``).
* ``verification.plugin``: the ``claim`` and ``conformance`` markers, the ``measure`` and ``conformance``
  fixtures, ``--ledger-dir``, ``--claims-strict`` (loaded by the root ``conftest.py``).
* ``verification.aggregate``: reports to per-claim evidence, statuses and the summary.
* ``verification.markdown``: ``claims.md``, question by question.
* ``verification.ledger``: ``python -m verification.ledger`` (``make verify``).
"""
