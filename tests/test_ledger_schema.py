"""``reports/claims.json`` against its JSON Schema (``verification/claims.schema.json``).

The ledger writer validates every run before writing; these tests validate ledgers the plugin produced
and check that the schema rejects what it exists to reject.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.site_fixture import fixture_ledger
from verification.schema import SCHEMA_VERSION, load_schema, schema_errors

pytest.importorskip("jsonschema")
pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]


def test_the_schema_is_valid_and_carries_the_version():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(load_schema())
    assert load_schema()["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_a_ledger_of_the_real_catalogue_validates():
    assert schema_errors(fixture_ledger()) == []


def test_a_ledger_the_plugin_wrote_validates(pytester):
    claims = pytester.mkdir("claims")
    (claims / "a_mini.toml").write_text(
        '[section]\nletter = "A"\ntitle = "Mini"\ntitle_zh = "小节"\n'
        '[[claim]]\nid = "m.a"\nsection = "A"\nsources = ["000:F4"]\ntitle_zh = "问题？"\nclaim = "A claim."\n'
        'evidence = ["statistical"]\nverdict = "holds-under-conditions"\ncondition = "rate {rate.low:.2f}"\n'
        '[[claim]]\nid = "m.b"\nsection = "A"\nsources = ["004:D6"]\ntitle_zh = "问题？"\nclaim = "Cited."\n'
        'evidence = ["reference"]\nverdict = "reference"\ncitation = "Paper 2017, section 3."\n', encoding="utf-8")
    pytester.makepyfile('''
        import pytest
        @pytest.mark.claim("m.a", kind="statistical")
        def test_a(measure):
            measure("rate", 0.5, params={"n": 10}, interval=[0.4, 0.6], alpha=1e-7, power=0.99, alternative="rate 0.9")
    ''')
    result = pytester.runpytest("-p", "verification.plugin", "--claims-dir", str(claims), "--ledger-dir", "out",
                                "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    ledger = json.loads((pytester.path / "out/claims.json").read_text(encoding="utf-8"))
    assert schema_errors(ledger) == []
    assert [c["status"] for c in ledger["claims"]] == ["verified", "cited"]
    assert ledger["claims"][0]["condition"] == "rate 0.40" and ledger["summary"]["false_alarm_per_run"] == 1e-7
    assert (pytester.path / "out/site/index.html").is_file()


def test_the_last_ledger_of_this_checkout_validates():
    path = ROOT / "reports/claims.json"
    if not path.exists():
        pytest.skip("no reports/claims.json: run `make verify` first")
    ledger = json.loads(path.read_text(encoding="utf-8"))
    if ledger.get("schema_version") != SCHEMA_VERSION:
        pytest.skip(f"reports/claims.json was written by another version of the ledger ({ledger.get('schema_version')})")
    assert schema_errors(ledger) == []


def _broken(edit) -> list[str]:
    ledger = copy.deepcopy(fixture_ledger())
    edit(ledger)
    return schema_errors(ledger)


def _claim(ledger, cid):
    return next(c for c in ledger["claims"] if c["id"] == cid)


@pytest.mark.parametrize("edit, where", [
    (lambda L: _claim(L, "attn.qk-variance").update(status="cited"), "claims/"),
    (lambda L: _claim(L, "attn.qk-variance")["measurements"][0].pop("params"), "measurements/0"),
    (lambda L: _claim(L, "attn.qk-variance")["measurements"][0].update(name="dot variance"), "measurements/0/name"),
    (lambda L: _claim(L, "attn.qk-variance")["measurements"][0].update(alpha=1e-7, power=None), "measurements/0"),
    (lambda L: L["summary"].pop("false_alarm_per_run"), "summary"),
    (lambda L: L["environment"].pop("torch"), "environment"),
    (lambda L: L.update(schema_version=1), "schema_version"),
])
def test_the_schema_rejects_what_it_exists_to_reject(edit, where):
    errors = _broken(edit)
    assert errors and any(e.startswith(where) or f"/{where}" in e for e in errors), errors
