"""The ledger's JSON Schema (``claims.schema.json`` beside this file) and its validation.

The ledger writer validates every ``claims.json`` before writing it, and the test suite validates a
produced ledger, so a reader's tool can trust the schema. Bump ``SCHEMA_VERSION`` (and the schema's
``const``) whenever a key changes meaning.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SCHEMA_VERSION = 2
SCHEMA_FILE = Path(__file__).with_name("claims.schema.json")


@cache
def load_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def schema_errors(ledger: dict, limit: int = 20) -> list[str]:
    """Where ``ledger`` breaks the schema, one line each (at most ``limit``); empty when it is valid."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(ledger), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in errors[:limit]]
