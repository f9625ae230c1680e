"""From a clean copy of the repository: a non-editable ``pip install .`` into a new virtualenv ships
the console script, the properties and the pytest plugin, and both run from an empty folder against a
user's module there (exit codes and the JSON report as documented). Slow: it builds an environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_MODULE = '''
import torch

def make_attention():
    def attend(q, k, v, allowed):
        s = q @ k.transpose(-2, -1)  # the scale is forgotten
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        return torch.softmax(s, -1).nan_to_num(0.0) @ v
    return attend
'''


def _run(args, cwd, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, **kwargs)


@pytest.mark.slow
def test_pip_install_then_faq_conformance_and_pytest_pyargs_from_an_empty_folder(tmp_path):
    source = tmp_path / "clone"  # the files a clone of the working tree would hold (tracked or not ignored)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = _run([str(venv / "bin/pip"), "install", "-q", "-c", "constraints.txt", ".", "pytest"], cwd=source)
    assert pip.returncode == 0, pip.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "mymodule.py").write_text(USER_MODULE)
    cli = _run([str(venv / "bin/faq-conformance"), "mymodule:make_attention", "--json", "out.json",
                "--properties", "definition,padding-zero-weight", "--max-examples", "5"], cwd=empty)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "scores scaled by 1, expected 1/sqrt(d)" in cli.stdout
    report = json.loads((empty / "out.json").read_text())
    assert {r["property"]: r["outcome"] for r in report["results"]} == {"definition": "failed",
                                                                       "padding-zero-weight": "passed"}
    usage = _run([str(venv / "bin/faq-conformance"), "mymodule"], cwd=empty)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    ok = _run([str(venv / "bin/faq-conformance"), "transformer.testing.examples.naive_attention:make_attention",
               "--properties", "definition", "--max-examples", "3"], cwd=empty)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    pyargs = _run([str(venv / "bin/python"), "-m", "pytest", "-q", "--pyargs", "transformer.testing.suite",
                   "--attention-impl", "mymodule:make_attention", "--conformance-properties", "definition",
                   "--conformance-max-examples", "3", "--conformance-json", "py.json", "-p", "no:cacheprovider"],
                  cwd=empty)
    assert pyargs.returncode == 1 and "scores scaled by 1" in pyargs.stdout, pyargs.stdout + pyargs.stderr
    assert json.loads((empty / "py.json").read_text())["results"][0]["outcome"] == "failed"
    # its own reports only: no ledger (reports/claims.json); hypothesis's pytest plugin may leave its .hypothesis folder
    assert {p.name for p in empty.iterdir()} - {".hypothesis"} == {"mymodule.py", "out.json", "py.json"}
