"""The claims spine: the catalogue of FAQ claims, the pytest plugin linking evidence to them, the ledger.

* ``verification.catalogue``: load and validate ``claims/*.toml`` (``load_catalogue``, ``Claim``).
* ``verification.plugin``: the ``claim`` and ``conformance`` markers, the ``measure`` and ``conformance``
  fixtures, ``--ledger-dir``, ``--claims-strict`` (loaded by the root ``conftest.py``).
* ``verification.records``: typed measurement records, and claim texts filled from them (placeholders).
* ``verification.aggregate``: reports to per-claim evidence, statuses, the false-alarm budget, the summary.
* ``verification.schema``: ``claims.schema.json``, the JSON Schema every ledger is validated against.
* ``verification.markdown``: ``claims.md``, question by question.
* ``verification.site`` and ``verification.plots``: ``site/index.html`` and its plots, drawn from the records.
* ``verification.ledger``: ``python -m verification.ledger`` (``make verify``).
"""
