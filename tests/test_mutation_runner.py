"""The mutation gate's own tests: the catalogue is well-formed and applies, and the runner's verdicts
(killed, survived, runner error) are right on a tiny fake repository.

Skipped inside the runner's own pytest processes (``MUTATION_ROOT`` set): there the sources are
patched on purpose, so "each patch applies to the current sources" would fail for every mutant and
count as a kill that says nothing about the suite.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import textwrap
import tokenize
from pathlib import Path

import pytest

from mutation import anchor, run
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


# ------------------------------------------------------------------------------ patches anchored on code

def _reworded(source: str) -> str:
    """``source`` with every comment and docstring reworded (found by Python's own tokenizer)."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits, previous = [], tokenize.NEWLINE
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        is_docstring = tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                      tokenize.DEDENT, tokenize.NL)
        if tok.type == tokenize.COMMENT or is_docstring:
            start = offsets[tok.start[0] - 1] + tok.start[1]
            end = offsets[tok.end[0] - 1] + tok.end[1]
            edits.append((start, end, "# a reworded comment" if tok.type == tokenize.COMMENT
                          else '"""A reworded docstring,\non two lines."""'))
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            previous = tok.type
    for start, end, text in reversed(edits):
        source = source[:start] + text + source[end:]
    return source


def _code(source: str) -> list[str]:
    return [t.text for t in anchor.code_tokens(source)]


def test_rewording_every_comment_and_docstring_breaks_no_patch(tmp_path):
    files = sorted({p.file for m in CATALOGUE for p in m.patches})
    for file in files:
        original = (REPO / file).read_text(encoding="utf-8")
        reworded = _reworded(original)
        assert reworded != original and _code(reworded) == _code(original)
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(reworded, encoding="utf-8")
    assert run.check_catalogue(tmp_path, CATALOGUE) == []
    for mutant in CATALOGUE:  # the mutant computes the same code whatever the prose says
        for file in mutant.files:
            on_original, on_reworded = (REPO / file).read_text(encoding="utf-8"), (tmp_path / file).read_text(encoding="utf-8")
            for patch in (p for p in mutant.patches if p.file == file):
                on_original = anchor.replace(on_original, patch.old, patch.new)
                on_reworded = anchor.replace(on_reworded, patch.old, patch.new)
            assert _code(on_reworded) == _code(on_original), mutant.id


def test_a_change_of_code_still_stops_a_patch():
    source = "def f(x):\n    return x / 2  # halve\n"
    assert anchor.count(source, "    return x / 2  # a different comment\n") == 1
    assert anchor.count(source.replace("/ 2", "/ 3"), "    return x / 2\n") == 0


def test_line_snippets_replace_whole_lines_and_fragments_replace_spans():
    source = "y = f(a,  b)  # comment\nz = 1\n"
    assert anchor.replace(source, "y = f(a, b)\n", "y = g(a)\n") == "y = g(a)\nz = 1\n"
    assert anchor.replace(source, "f(a, b)", "f(b, a)") == "y = f(b, a)  # comment\nz = 1\n"
    with pytest.raises(anchor.AnchorError, match="share code"):
        anchor.replace("y = f(a); x = 1\n", "y = f(a)\n", "y = 0\n")


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


def test_the_readme_table_names_every_mutant_of_the_catalogue():
    readme = (REPO / "mutation" / "README.md").read_text(encoding="utf-8")
    missing = [m.id for m in CATALOGUE if f"`{m.id}`" not in readme]
    assert not missing, f"mutation/README.md does not list {missing}"
