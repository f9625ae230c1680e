"""faq-conformance in-process: the matrix and the words, the exit codes, the JSON report, the
expected-failures file and its strictness, usage errors in a few lines."""

from __future__ import annotations

import json

import pytest

from transformer.testing.cli import main

NAIVE = "transformer.testing.examples.naive_attention:make_attention"
NO_SCALE = "transformer.testing.examples.broken:no_scale"
FAST = ["--properties", "definition,padding-zero-weight", "--max-examples", "3"]


def test_a_correct_attention_passes_with_exit_0_and_the_json_report_has_the_stated_schema(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main([NAIVE, *FAST, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "definition" in printed and "pass" in printed and "FAIL" not in printed
    report = json.loads(out.read_text())
    assert set(report) >= {"implementations", "results", "summary"}
    assert [i["name"] for i in report["implementations"]] == [NAIVE]
    assert [(r["implementation"], r["property"], r["outcome"]) for r in report["results"]] == [
        (NAIVE, "definition", "passed"), (NAIVE, "padding-zero-weight", "passed")]
    assert all(set(r) == {"implementation", "property", "outcome", "diagnosis", "reproduction"} for r in report["results"])
    assert report["summary"]["passed"] == 2 and report["summary"]["exit_status"] == 0


def test_a_missing_scale_fails_with_exit_1_in_words_and_a_reproduction_that_fails_again(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main([NO_SCALE, NAIVE, *FAST, "--json", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"FAIL {NO_SCALE} definition:" in printed
    assert "scores scaled by 1, expected 1/sqrt(d)" in printed
    result = next(r for r in json.loads(out.read_text())["results"] if r["outcome"] == "failed")
    assert result["property"] == "definition" and "replay(" in result["reproduction"]
    from transformer.testing import PropertyFailure

    with pytest.raises(PropertyFailure, match="scores scaled by 1"):
        exec(result["reproduction"], {})


def test_the_expected_failures_file_is_strict(tmp_path, capsys):
    xfails = tmp_path / "xfails.txt"
    xfails.write_text(f"# mine\n{NO_SCALE} definition we forgot the scale\n")
    assert main([NO_SCALE, *FAST, "--xfails", str(xfails)]) == 0
    assert "xfail" in capsys.readouterr().out
    xfails.write_text(f"{NAIVE} definition it was broken once\n")
    assert main([NAIVE, *FAST, "--xfails", str(xfails)]) == 1
    assert "expected to fail (it was broken once) but passed" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    ([NAIVE.replace(":", ".")], "expected MODULE:FACTORY"),
    (["no_such_module_here:make"], "cannot import 'no_such_module_here'"),
    (["transformer.testing.examples.broken:nothing"], "has no callable 'nothing'"),
    (["transformer.testing.examples.broken:not_a_callable"], "not a callable"),
    (["transformer.testing.examples.broken:raises_on_construction"], "the factory raised RuntimeError: no GPU here"),
    ([NAIVE, "--properties", "definitoin"], "unknown definitoin"),
    ([NAIVE, "--max-examples", "0"], "at least 1"),
    ([NAIVE, "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ([], "the following arguments are required"),
])
def test_usage_errors_exit_2_in_a_few_lines_without_a_traceback(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3


@pytest.mark.parametrize("line, words", [
    ("{impl} definition", "expected 'implementation property reason'"),
    ("someone-else definition a reason", "unknown implementation 'someone-else'"),
    ("{impl} defintion a reason", "unknown property 'defintion'"),
])
def test_a_bad_expected_failures_file_is_a_usage_error(tmp_path, capsys, line, words):
    xfails = tmp_path / "xfails.txt"
    xfails.write_text(line.format(impl=NAIVE) + "\n")
    assert main([NAIVE, *FAST, "--xfails", str(xfails)]) == 2
    assert words in capsys.readouterr().err
    assert main([NAIVE, *FAST, "--xfails", str(tmp_path / "missing.txt")]) == 2


pytest_plugins = ["pytester"]


def test_the_same_run_through_pytest_pyargs_with_the_plugin(pytester):
    """pytest --pyargs transformer.testing.suite: one test per (implementation, property), the
    diagnosis as the failure message, the user's expected failures strict, the same JSON report."""
    pytester.makefile(".txt", xfails=f"{NO_SCALE} padding-zero-weight it passes, so this is an XPASS\n")
    result = pytester.runpytest_inprocess(
        "-p", "pytest_faq_conformance", "--pyargs", "transformer.testing.suite", "--attention-impl", NO_SCALE,
        "--attention-impl", NAIVE, "--conformance-properties", "definition,padding-zero-weight",
        "--conformance-max-examples", "3", "--conformance-json", "out.json", "--conformance-xfails", "xfails.txt")
    result.assert_outcomes(passed=2, failed=2)  # no-scale definition; its padding-zero-weight XPASS(strict)
    assert "scores scaled by 1, expected 1/sqrt(d)" in result.stdout.str()
    report = json.loads((pytester.path / "out.json").read_text())
    outcomes = {(r["implementation"], r["property"]): r["outcome"] for r in report["results"]}
    assert outcomes == {(NO_SCALE, "definition"): "failed", (NO_SCALE, "padding-zero-weight"): "xpassed",
                        (NAIVE, "definition"): "passed", (NAIVE, "padding-zero-weight"): "passed"}
    bad = pytester.runpytest_inprocess("-p", "pytest_faq_conformance", "--pyargs", "transformer.testing.suite",
                                       "--attention-impl", "nowhere:make")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "cannot import 'nowhere'" in bad.stderr.str()
