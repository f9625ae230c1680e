"""pytest plugin of ``transformer.testing`` (entry point ``pytest11``): the conformance options and the
``attention_impl`` fixture.

A top-level module, so that loading it imports nothing of the ``transformer`` package: pytest loads
entry-point plugins before coverage starts, and importing the package then would hide its module-level
lines from coverage, and import it from the installed location ahead of any copy on ``PYTHONPATH``.

``pytest --pyargs transformer.testing.suite --attention-impl MODULE:FACTORY`` runs every property
against each factory (the built-in rows when none is given), one test per (implementation,
property); ``--conformance-json FILE``, ``--conformance-xfails FILE``, ``--conformance-properties a,b``
and ``--conformance-max-examples N`` are the options of ``faq-conformance``. Tests of your own that
take the ``attention_impl`` fixture and carry ``@pytest.mark.attention_property(name)`` run against
every built-in row and every ``--attention-impl``.
"""

from __future__ import annotations

import pytest

# Registered through the pytest11 entry point, this module loads in every pytest session of the
# environment: it imports transformer, torch and hypothesis only when a session asks for conformance.
ROWS_KEY = pytest.StashKey[list]()
RESULTS_KEY = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("conformance", "attention and model conformance (transformer.testing)")
    group.addoption("--attention-impl", "--conformance-impl", dest="attention_impl", action="append", default=[],
                    metavar="MODULE:FACTORY",
                    help="run the conformance properties against FACTORY() from MODULE (may be repeated)")
    group.addoption("--conformance-json", metavar="FILE", help="write the conformance results as JSON to FILE")
    group.addoption("--conformance-xfails", metavar="FILE",
                    help="expected failures, one 'implementation property reason' per line (strict)")
    group.addoption("--conformance-properties", metavar="A,B", help="run only these conformance properties")
    group.addoption("--conformance-max-examples", type=int, default=20, metavar="N",
                    help="hypothesis examples per conformance property (20)")


def pytest_configure(config):
    config.addinivalue_line("markers", "attention_property(property): an attention property run against every "
                                       "implementation (fixture attention_impl); see transformer.testing")
    config.addinivalue_line("markers", "conformance(implementation, property): this test's outcome is one cell of "
                                       "an implementation x property conformance table")
    config.stash[RESULTS_KEY] = []
    config.stash[ROWS_KEY] = None  # loaded on first use (_state)


def _state(config):
    """[user rows, expected failures, selected properties], loaded once."""
    if config.stash[ROWS_KEY] is None:
        config.stash[ROWS_KEY] = _load(config)
    return config.stash[ROWS_KEY]


def _load(config):
    from transformer.testing.implementations import BUILTIN, UsageError
    from transformer.testing.runner import (
        KNOWN_FAILURES,
        all_properties,
        load_row,
        read_xfails,
        select_properties,
    )

    try:
        rows = [load_row(spec) for spec in config.getoption("attention_impl")]
        xfails = read_xfails(config.getoption("conformance_xfails"), [*BUILTIN, *rows], all_properties()) \
            if config.getoption("conformance_xfails") else {}
        selected = select_properties(config.getoption("conformance_properties"))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    return [rows, {**KNOWN_FAILURES, **xfails}, selected]


def pytest_collection(session):
    # a bad --attention-impl or --conformance-xfails is a usage error at once, not at the first test
    config = session.config
    if any(config.getoption(o) for o in ("attention_impl", "conformance_xfails", "conformance_properties")):
        _state(config)


def user_rows(config) -> list:
    return _state(config)[0]


def expected_failures(config) -> dict:
    return _state(config)[1]


def pytest_generate_tests(metafunc):
    if "attention_impl" in metafunc.fixturenames:
        _parametrize_attention_impl(metafunc)
    elif "conformance_cell" in metafunc.fixturenames:
        _parametrize_cells(metafunc)


def _parametrize_attention_impl(metafunc):
    from transformer.testing.implementations import BUILTIN
    from transformer.testing.properties import PROPERTIES

    marker = metafunc.definition.get_closest_marker("attention_property")
    if marker is None or not marker.args or marker.args[0] not in PROPERTIES:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: an attention_impl test needs "
                                f"@pytest.mark.attention_property(property) with a property in {tuple(PROPERTIES)}")
    prop = marker.args[0]
    params = []
    rows = [*BUILTIN, *(r for r in user_rows(metafunc.config) if not hasattr(r, "adapter"))]
    for impl in rows:
        marks = [pytest.mark.conformance(impl.name, prop)]
        reason = expected_failures(metafunc.config).get((impl.name, prop))
        if reason:
            marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
        params.append(pytest.param(impl, id=impl.name, marks=marks))
    metafunc.parametrize("attention_impl", params)


def _parametrize_cells(metafunc):
    from transformer.testing.implementations import BUILTIN
    from transformer.testing.runner import properties_for

    rows, expected, selected = _state(metafunc.config)
    rows = rows or list(BUILTIN)
    params = []
    for row in rows:
        for prop in properties_for(row):
            if selected is not None and prop not in selected:
                continue
            reason = expected.get((row.name, prop))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param((row, prop), id=f"{row.name}::{prop}", marks=marks))
    metafunc.parametrize("conformance_cell", params)


def record(config, result) -> None:
    config.stash[RESULTS_KEY].append(result)


def pytest_sessionfinish(session):
    path = session.config.getoption("conformance_json", None)
    if not path or hasattr(session.config, "workerinput"):
        return
    import json
    from pathlib import Path

    from transformer.testing.implementations import BUILTIN
    from transformer.testing.runner import report

    results = session.config.stash.get(RESULTS_KEY, [])
    rows = {r.implementation for r in results}
    known = [*BUILTIN, *user_rows(session.config)]
    Path(path).write_text(json.dumps(report([r for r in known if r.name in rows], results), indent=1) + "\n",
                          encoding="utf-8")
