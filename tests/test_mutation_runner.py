"""The mutation gate's own tests: the catalogue is well-formed and applies, and the runner's verdicts
(killed, survived, runner error) are right on a tiny fake repository.

Skipped inside the runner's own pytest processes (``MUTATION_ROOT`` set): there the sources are
patched on purpose, so "each patch applies to the current sources" would fail for every mutant and
count as a kill that says nothing about the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from mutation import run
from mutation.catalogue import AREAS, CATALOGUE, Mutant, Patch
from mutation.pytest_plugin import GUARD_EXIT

pytestmark = pytest.mark.skipif("MUTATION_ROOT" in os.environ, reason="inside a mutation run the sources are mutated")

REPO = Path(__file__).resolve().parents[1]
BUG_AREAS = {"scaling", "masks", "heads", "enc-dec", "embeddings", "norm", "decoding", "training", "tokenisers"}


def test_catalogue_has_at_least_35_mutants_with_unique_ids_covering_every_area():
    ids = [m.id for m in CATALOGUE]
    assert len(ids) >= 35
    assert len(set(ids)) == len(ids), "duplicate mutant ids"
    assert set(AREAS) == BUG_AREAS
    assert {m.area for m in CATALOGUE} == BUG_AREAS, "an area of Transformer bugs has no mutant"
    assert all(m.description and m.patches for m in CATALOGUE)
    assert all(m.citation is None or m.citation.startswith("https://github.com/") for m in CATALOGUE)


def test_every_patch_applies_to_the_current_sources_exactly_once_and_compiles():
    assert run.check_catalogue(REPO, CATALOGUE) == []


def test_patches_only_touch_the_transformer_package():
    assert all(p.file.startswith("transformer/") for m in CATALOGUE for p in m.patches)


def test_a_patch_that_no_longer_applies_is_a_runner_error(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "f.py").write_text("x = 1\nx = 1\n")
    missing = Mutant("gone", "masks", "old text missing", (Patch("transformer/f.py", "y = 2\n", "y = 3\n"),))
    twice = Mutant("twice", "masks", "old text ambiguous", (Patch("transformer/f.py", "x = 1\n", "x = 2\n"),))
    for mutant in (missing, twice):
        with pytest.raises(run.RunnerError, match=mutant.id):
            run.apply_patches(tmp_path, mutant)
    problems = run.check_catalogue(tmp_path, [missing, twice])
    assert len(problems) == 2 and "0 times" in problems[0] and "2 times" in problems[1]


def test_a_mutant_that_does_not_compile_is_refused(tmp_path):
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "f.py").write_text("x = 1\n")
    broken = Mutant("broken", "masks", "syntax error", (Patch("transformer/f.py", "x = 1\n", "x = (\n"),))
    assert "does not compile" in run.check_catalogue(tmp_path, [broken])[0]


# ------------------------------------------------------------------------------ a tiny fake repository

def _fake_repo(root: Path, *, test_body: str = "assert add(2, 3) == 5") -> Path:
    """A repository with a one-function `transformer`, one test, and the real `mutation` package."""
    (root / "transformer").mkdir(parents=True)
    (root / "transformer" / "__init__.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_add.py").write_text(textwrap.dedent(f"""\
        from transformer import add

        def test_add():
            {test_body}
        """))
    (root / "conftest.py").write_text("")
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    shutil.copytree(REPO / "mutation", root / "mutation", ignore=shutil.ignore_patterns("__pycache__", "killers.json"))
    return root


ADD = "transformer/__init__.py"
KILLABLE = Mutant("subtracts", "training", "a - b", (Patch(ADD, "return a + b", "return a - b"),))
EQUIVALENT = Mutant("commutes", "training", "b + a (equivalent)", (Patch(ADD, "return a + b", "return b + a"),))


def test_runner_reports_killed_and_survived_mutants_with_the_killing_test(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    repo = _fake_repo(tmp_path / "repo")
    status = run.main(["--jobs", "2"], repo=repo, catalogue=(KILLABLE, EQUIVALENT))
    assert status == 1, "a surviving mutant must fail the gate"
    report = json.loads((repo / "reports" / "mutants.json").read_text())
    verdicts = {m["id"]: (m["killed"], m["killed_by"]) for m in report["mutants"]}
    assert verdicts == {"subtracts": (True, "tests/test_add.py::test_add"), "commutes": (False, None)}
    assert report["summary"]["total"] == 2 and report["summary"]["killed"] == 1
    assert "**SURVIVED**" in (repo / "reports" / "mutants.md").read_text()
    assert (repo / ADD).read_text() == "def add(a, b):\n    return a + b\n", "the original must stay untouched"
    # Only the killable one, now with last run's killer known (so it runs alone first): exit 0,
    # verdict printed, the full report left as it was.
    before = (repo / "reports" / "mutants.json").read_text()
    assert run.main(["--jobs", "1", "--only", "subtracts"], repo=repo, catalogue=(KILLABLE, EQUIVALENT)) == 0
    assert (repo / "reports" / "mutants.json").read_text() == before
    # --matrix: no fail-fast, every killing test recorded.
    assert run.main(["--jobs", "1", "--only", "subtracts", "--matrix"], repo=repo, catalogue=(KILLABLE, EQUIVALENT)) == 0
    assert json.loads((repo / "reports" / "mutants-matrix.json").read_text()) == {"subtracts": ["tests/test_add.py::test_add"]}


def test_a_failing_unmutated_suite_is_a_runner_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    repo = _fake_repo(tmp_path / "repo", test_body="assert add(2, 3) == 6")
    assert run.main(["--jobs", "1"], repo=repo, catalogue=(KILLABLE,)) == 2


def test_the_guard_stops_a_run_that_imports_transformer_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    repo = _fake_repo(tmp_path / "repo")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status, result, _ = run.run_pytest(repo, ["-p", "no:xdist"], timeout=120,
                                       env_extra={"MUTATION_ROOT": str(elsewhere),
                                                  "MUTATION_RESULT": str(tmp_path / "result.json")})
    assert status == GUARD_EXIT
    assert "not imported from the copy" in json.loads((tmp_path / "result.json").read_text())["guard"]
