"""The README as a newcomer reads it: every Python sample runs as written, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[int, str]]:
    """(line number, text) of every fenced block of ``language``."""
    return [(README.count("\n", 0, m.start()) + 1, m.group(2)) for m in _FENCE.finditer(README)
            if m.group(1) == language]


PYTHON_BLOCKS = _blocks("python")


def test_the_readme_has_python_samples():
    assert len(PYTHON_BLOCKS) >= 2, "the README's model and tokeniser samples are missing"


@pytest.mark.parametrize("line, code", PYTHON_BLOCKS, ids=[f"README.md:{line}" for line, _ in PYTHON_BLOCKS])
def test_a_readme_python_sample_runs_as_written(line, code, monkeypatch):
    """Each block runs on its own, in a fresh namespace, from the repository root, as a reader would paste it."""
    monkeypatch.chdir(ROOT)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})


def _readme_test_command() -> str:
    """The command the set-up section gives for running the tests (the first ``make test`` line)."""
    for _, block in _blocks(""):
        for command in (line.split("#")[0].strip() for line in block.splitlines()):
            if command.startswith("make test"):
                return command
    raise AssertionError("the README gives no `make test` command")


def test_make_test_also_writes_the_ledger():
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert recipe and "--ledger-dir reports" in recipe.group(1), "`make test` must write reports/ from its own run"


def test_the_ci_workflow_runs_the_readme_test_command_and_publishes_reports():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    runs = [step for step in steps if "run" in step]
    uses = {step["uses"].split("@")[0]: step for step in steps if "uses" in step}

    test_step = next((s for s in runs if s["run"].strip() == _readme_test_command()), None)
    assert test_step is not None, f"no step runs {_readme_test_command()!r}: {[s['run'] for s in runs]}"
    assert "--junitxml=reports/" in test_step.get("env", {}).get("PYTEST_ADDOPTS", ""), "JUnit XML not written"
    assert str(uses["actions/setup-python"]["with"]["python-version"]) == "3.11"
    cache = uses["actions/cache"]["with"]
    assert cache["path"] == ".venv" and "hashFiles('pyproject.toml', 'constraints.txt')" in cache["key"]
    upload = uses["actions/upload-artifact"]
    assert upload["with"]["path"].rstrip("/") == "reports" and upload.get("if") == "always()"
