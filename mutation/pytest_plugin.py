"""Pytest plugin loaded into every run of the mutation runner (``-p mutation.pytest_plugin``).

Inert unless ``MUTATION_ROOT`` is set. Then it
* refuses to run unless ``transformer`` is imported from the copy under ``MUTATION_ROOT`` (the editable
  install maps ``transformer`` to the original checkout; testing that one would report every mutant
  as surviving, or worse, as killed for the wrong reason);
* reorders the collected tests so the likely killers run first: a node id equal to one of the
  ``MUTATION_PRIORITY`` patterns (a JSON list: the test that killed this mutant last time), then node
  ids containing one of them (the area's hints), then the rest; within each tier, whole modules from
  the fastest to the slowest per the ``MUTATION_DURATIONS`` file, tests of one module together and in
  their order, so module-scoped fixtures are built once;
* turns hypothesis's shrinking off (the first failing example is enough for a verdict);
* writes ``MUTATION_RESULT`` (JSON): the first failure (node id and message), the exit status, whether
  every imported ``transformer`` module came from the copy, and, if ``MUTATION_RECORD_DURATIONS`` is
  set, each test's duration.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

GUARD_EXIT = 17  # exit status when the wrong transformer package is imported

_ROOT = os.environ.get("MUTATION_ROOT")
_state: dict = {"first_failure": None, "durations": {}, "failed": []}


def _outside_copy() -> list[str]:
    root = Path(_ROOT).resolve()
    bad = []
    for name, module in list(sys.modules.items()):
        if name == "transformer" or name.startswith("transformer."):
            path = getattr(module, "__file__", None)
            if path is None or not Path(path).resolve().is_relative_to(root):
                bad.append(f"{name} from {path}")
    return bad


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _write(payload: dict) -> None:
    path = os.environ.get("MUTATION_RESULT")
    if path:
        Path(path).write_text(json.dumps(payload, indent=1))


def _no_shrinking() -> None:
    """Derive a profile from the loaded one (the root conftest has loaded ``ci``) without the shrink and
    explain phases: a mutant is killed by its first failing example; shrinking it to a minimal one
    (often most of a failing property's time) changes no verdict. Tests decorated with ``@settings``
    inherit it, as they are imported after this runs."""
    from hypothesis import Phase, settings

    current = settings.default
    phases = tuple(p for p in current.phases if p not in (Phase.shrink, Phase.explain))
    settings.register_profile("mutation-no-shrink", parent=current, phases=phases)
    settings.load_profile("mutation-no-shrink")


def pytest_configure(config):
    if not _ROOT:
        return
    _no_shrinking()
    import transformer  # noqa: F401  (the import under test)

    bad = _outside_copy()
    if bad:
        if not _is_worker(config):
            _write({"guard": f"transformer is not imported from the copy {_ROOT}: {'; '.join(bad)}"})
        pytest.exit(f"mutation guard: transformer imported from outside {_ROOT}: {bad}", returncode=GUARD_EXIT)


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    if not _ROOT or not items:
        return
    patterns = json.loads(os.environ.get("MUTATION_PRIORITY", "[]"))
    durations = {}
    if os.environ.get("MUTATION_DURATIONS") and Path(os.environ["MUTATION_DURATIONS"]).exists():
        durations = json.loads(Path(os.environ["MUTATION_DURATIONS"]).read_text())
    module_cost: dict[str, float] = {}
    for nodeid, seconds in durations.items():
        module_cost[_module_of(nodeid)] = module_cost.get(_module_of(nodeid), 0.0) + seconds
    order = {id(item): i for i, item in enumerate(items)}

    def key(item):
        tier = 0 if item.nodeid in patterns else 1 if any(p in item.nodeid for p in patterns) else 2
        return tier, module_cost.get(_module_of(item.nodeid), float("inf")), order[id(item)]

    items.sort(key=key)


def _message(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    text = str(report.longrepr or "").strip().splitlines()
    return text[-1][:300] if text else ""


def pytest_runtest_logreport(report):
    if not _ROOT:
        return
    _state["durations"][report.nodeid] = _state["durations"].get(report.nodeid, 0.0) + report.duration
    if report.failed and report.nodeid not in _state["failed"]:
        _state["failed"].append(report.nodeid)
    if report.failed and _state["first_failure"] is None:
        _state["first_failure"] = {"nodeid": report.nodeid, "when": report.when, "message": _message(report)}


def pytest_collectreport(report):
    if _ROOT and report.failed and _state["first_failure"] is None:
        _state["first_failure"] = {"nodeid": report.nodeid or "<collection>", "when": "collect",
                                   "message": _message(report)}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if not _ROOT or _is_worker(session.config):
        return
    payload = {"exitstatus": int(exitstatus), "first_failure": _state["first_failure"],
               "failed": _state["failed"], "outside_copy": _outside_copy()}
    if os.environ.get("MUTATION_RECORD_DURATIONS"):
        payload["durations"] = _state["durations"]
    _write(payload)
