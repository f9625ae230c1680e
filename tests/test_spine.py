"""Tests of the claims spine: catalogue validation, the claim marker, measurements, statuses, the ledger.

Inner pytest runs use ``pytester`` with a small catalogue written for the test (``--claims-dir``), so
they do not depend on the real one. One run is a subprocess, to go through pytest-xdist.
"""

import json
import os
from pathlib import Path

import pytest

import tests.site_fixture  # noqa: F401 - imports the page's libraries before the in-process runs below
from verification import aggregate
from verification import ledger as ledger_cli
from verification.aggregate import (
    FALSE_ALARM_BUDGET,
    build_ledger,
    strict_problems,
    summary_line,
    to_jsonable,
)
from verification.catalogue import CatalogueError, load_catalogue
from verification.records import make_record, render, typed_numbers

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SECTION = '[section]\nletter = "A"\ntitle = "Mini"\ntitle_zh = "小节"\n'


def claim_toml(cid: str, verdict: str = "pending", evidence=("exact",), **extra) -> str:
    lines = ["[[claim]]", f'id = "{cid}"', 'section = "A"', 'sources = ["000:F4"]', 'title_zh = "问题？"',
             f'claim = "The claim {cid} stated in words."', f"evidence = {json.dumps(list(evidence))}",
             f'verdict = "{verdict}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def write_catalogue(directory: Path, *claims: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "a_mini.toml").write_text(SECTION + "\n".join(claims), encoding="utf-8")
    return directory


MINI = [claim_toml("m.passes"), claim_toml("m.fails"), claim_toml("m.counter", evidence=["counterexample"]),
        claim_toml("m.skipped"), claim_toml("m.setup-error"), claim_toml("m.untested"),
        claim_toml("m.cited", verdict="reference", evidence=["reference"], citation="Author 2017, 'A Paper'.")]

EVIDENCE = '''
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

@pytest.mark.claim("m.passes", kind="statistical")
@pytest.mark.conformance("impl-a", "prop-x")
def test_passes(measure):
    measure("variance", 1.003, params={"d_k": 4}, interval=[0.98, 1.02], confidence=0.95, unit="ratio", n=1000)
    measure("variance", 0.998, params={"d_k": 64}, interval=[0.99, 1.01], alpha=1e-7, power=0.999,
            alternative="variance 2 (unscaled scores at d_k = 2)")

@pytest.mark.claim("m.fails", kind="exact")
def test_fails(conformance):
    conformance("impl-b", "prop-x")
    assert 1 == 2

@pytest.mark.claim("m.counter", kind="counterexample")
@pytest.mark.xfail(strict=True, reason="the claim as stated is false")
def test_counterexample(measure):
    measure("counterexample", {"x": [1, 2]})
    assert False

@pytest.mark.claim("m.skipped", kind="exact")
def test_skipped():
    pytest.skip("not today")

@pytest.mark.claim("m.setup-error", kind="exact")
def test_setup_error(broken):
    pass
'''


@pytest.fixture
def mini(pytester):
    """A pytester folder with the mini catalogue in ./claims; returns the --claims-dir arguments."""
    write_catalogue(pytester.path / "claims", *MINI)
    return ["-p", "verification.plugin", "--claims-dir", str(pytester.path / "claims"), "-p", "no:cacheprovider"]


# -- the real catalogue ---------------------------------------------------------------------------------
def test_catalogue_carries_every_inventory_id():
    """The repository's copy of the inventory ids is a subset of the catalogue."""
    ids = [line.strip() for line in (ROOT / "claims/inventory-ids.txt").read_text().splitlines() if line.strip()]
    missing = sorted(set(ids) - set(load_catalogue().ids()))
    assert ids and not missing, f"inventory ids missing from claims/*.toml: {missing}"


def test_every_seed_question_has_a_gloss():
    catalogue = load_catalogue()
    expected = {f"000:F{i}" for i in range(22)} | {f"004:D{i}" for i in range(1, 32)}
    assert set(catalogue.questions) == expected
    assert all(g["en"] and g["zh"] for g in catalogue.questions.values())


# -- catalogue validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("claims, message", [
    ([claim_toml("m.a"), claim_toml("m.a")], "duplicate claim id 'm.a'"),
    ([claim_toml("m.a", verdict="probably")], "unknown verdict 'probably'"),
    ([claim_toml("m.a", evidence=["vibes"])], "unknown evidence kind 'vibes'"),
    ([claim_toml("m.a", verdict="holds-under-conditions")], "requires the key 'condition'"),
    ([claim_toml("m.a", verdict="false-as-stated")], "requires the key 'counterexample'"),
    ([claim_toml("m.a", verdict="reference", evidence=["reference"])], "requires the key 'citation'"),
    ([claim_toml("m.a", refers_to=["m.nowhere"])], "unknown id 'm.nowhere'"),
    ([claim_toml("m.a", conditon="typo")], "unknown key 'conditon'"),
    ([claim_toml("Bad Id")], "the id must look like"),
    ([claim_toml("m.a").replace('"000:F4"', '"000:F99"')], "unknown source '000:F99'"),
])
def test_catalogue_errors_name_the_problem(tmp_path, claims, message):
    write_catalogue(tmp_path, *claims)
    with pytest.raises(CatalogueError) as info:
        load_catalogue(tmp_path)
    assert message in str(info.value)


def test_duplicate_ids_across_files_are_caught(tmp_path):
    write_catalogue(tmp_path, claim_toml("m.a"))
    (tmp_path / "b_more.toml").write_text(SECTION.replace('"A"', '"B"') + claim_toml("m.a").replace(
        'section = "A"', 'section = "B"'), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"b_more.toml: duplicate claim id 'm.a' \(first defined in a_mini.toml\)"):
        load_catalogue(tmp_path)


def test_a_broken_catalogue_is_a_usage_error(pytester):
    write_catalogue(pytester.path / "claims", claim_toml("m.a", verdict="maybe"))
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "verification.plugin", "--claims-dir", str(pytester.path / "claims"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown verdict 'maybe'*"])


# -- the marker -----------------------------------------------------------------------------------------------
def test_unknown_claim_id_fails_collection_and_names_the_id(pytester, mini):
    pytester.makepyfile(test_bad='''
        import pytest
        @pytest.mark.claim("m.passes", "m.no-such-claim", kind="exact")
        def test_x(): pass
        def test_unrelated(): pass
    ''')
    result = pytester.runpytest(*mini)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*", "*unknown claim id 'm.no-such-claim'*"])
    result.assert_outcomes(errors=1)


@pytest.mark.parametrize("marker, message", [
    ('claim("m.passes")', "kind= is required"),
    ('claim("m.passes", kind="hunch")', "unknown kind 'hunch'"),
    ('claim(kind="exact")', "give at least one claim id"),
    ('claim("m.passes", kind="exact", weight=2)', "unexpected keyword(s) weight"),
])
def test_marker_arguments_are_validated(pytester, mini, marker, message):
    pytester.makepyfile(f"import pytest\n@pytest.mark.{marker}\ndef test_x(): pass\n")
    result = pytester.runpytest(*mini)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert message in result.stdout.str()


def test_valid_markers_on_classes_and_params_collect(pytester, mini):
    pytester.makepyfile('''
        import pytest
        pytestmark = pytest.mark.claim("m.passes", kind="exact")
        class TestGroup:
            @pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.claim("m.fails", kind="measured"))])
            def test_n(self, n): pass
    ''')
    result = pytester.runpytest(*mini, "--ledger-dir", "out")
    assert result.ret == 0
    claims = {c["id"]: c for c in json.loads((pytester.path / "out/claims.json").read_text())["claims"]}
    assert [e["nodeid"].split("::")[-1] for e in claims["m.passes"]["evidence"]] == ["test_n[1]", "test_n[2]"]
    assert [(e["kind"], e["outcome"]) for e in claims["m.fails"]["evidence"]] == [("measured", "passed")]


# -- statuses, measurements, conformance, the ledger files -------------------------------------------------------
def test_ledger_statuses_measurements_and_conformance(pytester, mini):
    pytester.makepyfile(test_evidence=EVIDENCE)
    result = pytester.runpytest(*mini, "--ledger-dir", "reports")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    data = json.loads((pytester.path / "reports/claims.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    assert {cid: c["status"] for cid, c in claims.items()} == {
        "m.passes": "verified", "m.fails": "failing", "m.counter": "verified", "m.skipped": "missing",
        "m.setup-error": "failing", "m.untested": "missing", "m.cited": "cited"}
    outcomes = {cid: [e["outcome"] for e in c["evidence"]] for cid, c in claims.items()}
    assert outcomes["m.counter"] == ["xfailed"] and outcomes["m.skipped"] == ["skipped"]
    assert outcomes["m.setup-error"] == ["error"] and outcomes["m.cited"] == ["cited"]
    variance, decision = claims["m.passes"]["measurements"]
    assert variance == {"name": "variance", "value": 1.003, "params": {"d_k": 4}, "interval": [0.98, 1.02],
                        "confidence": 0.95, "unit": "ratio", "alpha": None, "power": None, "alternative": None,
                        "details": {"n": 1000}, "nodeid": "test_evidence.py::test_passes",
                        "path": "test_evidence.py", "lineno": variance["lineno"]}
    assert decision["alpha"] == 1e-7 and decision["confidence"] == 1 - 1e-7 and decision["power"] == 0.999
    assert claims["m.counter"]["measurements"][0]["value"] == {"x": [1, 2]}
    assert claims["m.fails"]["evidence"][0]["message"].startswith("assert 1 == 2")
    rows = sorted((r["implementation"], r["property"], r["outcome"]) for r in data["conformance"])
    assert rows == [("impl-a", "prop-x", "passed"), ("impl-b", "prop-x", "failed")]
    s = data["summary"]
    assert (s["total"], s["verified"], s["cited"], s["failing"], s["missing"]) == (7, 2, 1, 2, 2)
    assert s["false_alarm_per_run"] == 1e-7 and [d["name"] for d in s["statistical_decisions"]] == ["variance"]
    assert data["schema_version"] == 2 and data["environment"]["python"] and "hypothesis" in data["environment"]
    assert s["by_verdict"]["reference"] == 1 and s["by_verdict"]["pending"] == 6
    md = (pytester.path / "reports/claims.md").read_text()
    assert "### F4." in md and '<a id="claim-m-passes"></a>' in md and "📖 cited" in md
    assert "*variance[d_k=4]* = 1.003 ratio (interval [0.98, 1.02]; confidence 0.95; n = 1000)" in md
    assert "| prop-x | passed | failed |" in md


def test_strict_run_fails_on_a_claim_without_evidence_and_names_it(pytester, mini):
    pytester.makepyfile('''
        import pytest
        @pytest.mark.claim("m.passes", "m.fails", "m.counter", "m.skipped", "m.setup-error", kind="exact")
        def test_all(): pass
    ''')
    assert pytester.runpytest(*mini).ret == 0
    result = pytester.runpytest(*mini, "--claims-strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*strict claims check failed*", "*m.untested: no evidence ran*"])
    assert "m.cited" not in result.stdout.str()  # a reference claim needs its citation only


def test_only_the_option_makes_a_run_strict(pytester, mini):
    """No guessing from the command line: a full run is strict with --claims-strict and lenient without."""
    write_catalogue(pytester.path / "claims", claim_toml("m.passes"), claim_toml("m.untested"))
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    pytester.mkdir("tests")
    (pytester.path / "tests/test_one.py").write_text(
        'import pytest\n@pytest.mark.claim("m.passes", kind="exact")\ndef test_x(): pass\n')
    assert pytester.runpytest(*mini).ret == 0
    assert pytester.runpytest(*mini, "--claims-strict").ret == pytest.ExitCode.TESTS_FAILED
    assert pytester.runpytest(*mini, "--claims-strict", "tests/test_one.py").ret == pytest.ExitCode.TESTS_FAILED


def test_measure_rejects_unknown_ids_and_unserialisable_values(pytester, mini):
    pytester.makepyfile('''
        import pytest
        @pytest.mark.claim("m.passes", kind="exact")
        def test_unknown(measure):
            with pytest.raises(ValueError, match="unknown claim id.*'m.nope'"):
                measure("x", 1, claim="m.nope")
            with pytest.raises(TypeError, match="not JSON-serialisable"):
                measure("x", object())
        def test_unmarked(measure):
            with pytest.raises(ValueError, match="has no @pytest.mark.claim"):
                measure("x", 1)
            measure("x", 2, claim="m.untested")
    ''')
    result = pytester.runpytest(*mini, "--ledger-dir", "out")
    assert result.ret == 0
    claims = {c["id"]: c for c in json.loads((pytester.path / "out/claims.json").read_text())["claims"]}
    assert [r["value"] for r in claims["m.untested"]["measurements"]] == [2]
    assert claims["m.untested"]["status"] == "missing"  # a measurement alone is not evidence


def test_values_become_plain_json():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": torch.tensor([1.0, float("nan")]), "d": (1, 2),
             "e": float("inf"), 3: {np.int64(4)}}
    assert to_jsonable(value) == {"a": 0.5, "b": [0, 1, 2], "c": [1.0, "NaN"], "d": [1, 2], "e": "Infinity", "3": [4]}


# -- pytest-xdist: two subprocess runs ------------------------------------------------------------------------
@pytest.fixture
def subprocess_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def test_measurements_outcomes_and_marker_errors_survive_xdist(pytester, mini, subprocess_env):
    """One run with two workers: reports, measurements and collection errors reach the controller."""
    pytest.importorskip("xdist")
    pytester.makepyfile(test_evidence=EVIDENCE,
                        test_typo='import pytest\n@pytest.mark.claim("m.typo", kind="exact")\ndef test_x(): pass\n')
    result = pytester.runpytest_subprocess(*mini, "-n", "2", "--ledger-dir", "reports", "--continue-on-collection-errors",
                                           "-p", "no:hypothesispytest", "-p", "no:cov")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "unknown claim id 'm.typo'" in result.stdout.str()
    data = json.loads((pytester.path / "reports/claims.json").read_text())
    claims = {c["id"]: c for c in data["claims"]}
    assert claims["m.passes"]["measurements"][0]["interval"] == [0.98, 1.02]
    assert [e["outcome"] for e in claims["m.counter"]["evidence"]] == ["xfailed"]
    assert claims["m.fails"]["status"] == "failing" and claims["m.setup-error"]["status"] == "failing"
    assert data["summary"]["collection_errors"] == ["test_typo.py"]


# -- the ledger command -----------------------------------------------------------------------------------------------
def test_summary_line_counts_statuses_and_verdicts():
    ledger = {"summary": {"total": 7, "verified": 2, "cited": 1, "failing": 2, "missing": 2, "seconds": 4.26,
                          "false_alarm_per_run": 4e-7, "by_verdict": {"holds": 0, "reference": 1, "pending": 6}}}
    assert summary_line(ledger) == ("claims: 7 total, 2 verified, 1 cited, 2 failing, 2 missing | false alarms per run "
                                    "4e-07 | holds 0, reference 1, pending 6 | 4.3 s")


@pytest.mark.parametrize("pytest_code, failing, missing, expected", [
    (0, 0, 0, 0), (1, 1, 0, 1), (0, 0, 1, 1), (2, 0, 0, 2), (5, 0, 0, 5)])
def test_ledger_exit_status(tmp_path, capsys, pytest_code, failing, missing, expected):
    claims = [{"id": "m.a", "verdict": "pending", "status": "verified", "evidence": [], "expected_evidence": ["exact"]}]
    if failing:
        claims.append({"id": "m.b", "verdict": "pending", "status": "failing", "expected_evidence": ["exact"],
                       "evidence": [{"nodeid": "t::x", "outcome": "failed"}]})
    if missing:
        claims.append({"id": "m.c", "verdict": "pending", "status": "missing", "evidence": [], "expected_evidence": ["exact"]})
    ledger = {"claims": claims, "summary": {"total": len(claims), "verified": 1, "failing": failing, "missing": missing,
                                            "seconds": 1.0, "by_verdict": {"pending": len(claims)}}}
    seen = []

    def fake_pytest(args):
        seen.extend(args)
        (tmp_path / "claims.json").write_text(json.dumps(ledger))
        return pytest_code

    cwd = os.getcwd()
    try:
        code = ledger_cli.main(["-n", "0", "--reports", str(tmp_path), "-q"], run=fake_pytest)
    finally:
        os.chdir(cwd)
    assert code == expected
    assert seen[:2] == ["-n", "0"] and "--claims-strict" in seen and seen[-1] == "-q"
    assert capsys.readouterr().out.strip().startswith(f"claims: {len(claims)} total")


# -- typed records, placeholders, the false-alarm budget, cited ---------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="dot_variance_d4.0"), "plain identifier"),
    (dict(params=[4]), "params must be a dict"),
    (dict(params={"d_k": [4]}), "scalar value"),
    (dict(interval=[2, 1]), "low <= high"),
    (dict(interval=[0.1, 0.2], alpha=1e-7, power=0.9), "also records alternative"),
    (dict(alpha=1e-7, power=0.9, alternative="d = 2", interval=[0, 1], confidence=0.95), "not 1 - alpha"),
    (dict(alpha=1.5, power=0.9, alternative="d = 2", interval=[0, 1]), "alpha"),
    (dict(power=1.2), "power must be"),
])
def test_measure_rejects_untyped_records(kwargs, message):
    kwargs = {"name": "dot_variance", **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        make_record(kwargs.pop("name"), 1.0, **kwargs)


RECORDS = [dict(make_record("dot_variance", 3.98, params={"d_k": 4}, interval=[3.9, 4.1], confidence=0.95), nodeid="t::a"),
           dict(make_record("dot_variance", 63.2, params={"d_k": 64}, interval=[62.0, 64.5], confidence=0.95), nodeid="t::a"),
           dict(make_record("gap", {"scaled": 0.25, "unscaled": 0.75}, details={"n": 200}), nodeid="t::b"),
           dict(make_record("grid", [[0.1, 0.2], [0.3, 0.4]]), nodeid="t::c")]


@pytest.mark.parametrize("template, expected", [
    ("variance {dot_variance[d_k=4]:.3g}", "variance 3.98"),
    ("within [{dot_variance[d_k=64].low:.1f}, {dot_variance[d_k=64].high:.1f}]", "within [62.0, 64.5]"),
    ("{gap.unscaled:.0%} of {gap.n} rows", "75% of 200 rows"),
    ("`1/sqrt(d_k)` and {gap.scaled}", "`1/sqrt(d_k)` and 0.25"),
    ("row {grid.1.0:.0%} at d_k = {dot_variance[d_k=64].d_k}", "row 30% at d_k = 64"),
    ("{dot_variance[d_k=64.0]:.1f} and {dot_variance[d_k=4.0]:.2f}", "63.2 and 3.98"),
])
def test_placeholders_are_filled_from_the_claims_own_records(template, expected):
    assert render(template, RECORDS) == (expected, [])


@pytest.mark.parametrize("template, message", [
    ("{dot_variance:.3g}", "2 records match"),
    ("{dot_variance[d_k=8]}", "no record with those params"),
    ("{nowhere}", "no measurement of this claim is called 'nowhere'"),
    ("{gap.low}", "no interval"),
    ("{gap.nothing}", "no field, param, detail or value key 'nothing'"),
    ("{grid.0.9}", "no field, param, detail or value key '0.9'"),
])
def test_an_unmatched_placeholder_is_an_error_not_a_guess(template, message):
    text, errors = render(template, RECORDS)
    assert len(errors) == 1 and message in errors[0] and "not measured" in text


def test_typed_numbers_are_found_outside_backticks_and_placeholders():
    assert typed_numbers("at d_k = 64 the gap is {gap:.2f} (`1/sqrt(d_k)`, {x[d=4]})") == ["64"]
    assert typed_numbers("holds when `n > 2 d` for {r.low:.3g}") == []


def _ledger_with(catalogue_dir, records):
    catalogue = load_catalogue(catalogue_dir)
    return build_ledger(catalogue, records, seconds=1.0)


def _decision(nodeid, alpha):
    payload = make_record("rate", 0.5, interval=[0.4, 0.6], alpha=alpha, power=0.99, alternative="rate 0.9")
    record = aggregate.TestRecord(nodeid, outcome="passed")
    record.properties = [("claim", {"ids": ["m.a"], "kind": "statistical"}),
                         ("measure", payload | {"claims": ["m.a"]})]
    return record


def test_the_run_fails_when_its_false_alarm_rates_add_up_past_the_budget(tmp_path):
    write_catalogue(tmp_path, claim_toml("m.a", evidence=["statistical"]))
    within = _ledger_with(tmp_path, {n: _decision(n, FALSE_ALARM_BUDGET / 4) for n in ("t::a", "t::b", "t::c")})
    assert within["summary"]["false_alarm_per_run"] == pytest.approx(0.75e-6) and strict_problems(within) == []
    over = _ledger_with(tmp_path, {n: _decision(n, FALSE_ALARM_BUDGET / 2) for n in ("t::a", "t::b", "t::c")})
    problems = strict_problems(over)
    assert len(problems) == 1 and "false alarms per run 1.5e-06 exceed the budget 1e-06" in problems[0]


def test_a_condition_that_no_measurement_fills_fails_the_strict_run(tmp_path):
    write_catalogue(tmp_path, claim_toml("m.a", verdict="holds-under-conditions", condition="rate {rate:.2f}, {rate.n}"))
    ledger = _ledger_with(tmp_path, {"t::a": _decision("t::a", 1e-7)})
    claim = ledger["claims"][0]
    assert claim["condition"].startswith("rate 0.50, ⟨{rate.n}: not measured⟩")
    assert claim["templates"] == {"condition": "rate {rate:.2f}, {rate.n}"}
    assert strict_problems(ledger) == ["m.a: cannot fill its condition: rate has no field, param, detail or value key 'n'"]


def test_a_reference_claim_is_cited_even_when_related_tests_pass(tmp_path):
    write_catalogue(tmp_path, claim_toml("m.a", verdict="reference", evidence=["reference"], citation="Paper 2017, §3."))
    ledger = _ledger_with(tmp_path, {"t::a": _decision("t::a", 1e-7)})
    assert ledger["claims"][0]["status"] == "cited" and ledger["summary"]["cited"] == 1
    assert ledger["summary"]["verified"] == 0
