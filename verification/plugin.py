"""pytest plugin of the claims spine: link tests to claims, record measurements, aggregate a ledger.

Interface (loaded by the root ``conftest.py``)::

    @pytest.mark.claim("attn.qk-variance", kind="statistical")        # one or more catalogue ids
    def test_scaled_scores_have_unit_variance(measure):
        measure("scaled_variance", 1.003, params={"d_k": 64}, interval=[0.98, 1.02], confidence=0.95, n=100_000)

    @pytest.mark.conformance("torch-sdpa", "padding-zero-weight")       # or the conformance fixture
    def test_...(conformance): conformance("torch-sdpa", "padding-zero-weight")

* ``kind=`` is required, one of ``catalogue.KINDS``. An unknown id, a missing or unknown kind fails the
  collection of the test's module with a message naming the id.
* ``measure(name, value, *, params=None, interval=None, confidence=None, unit=None, alpha=None, power=None,
  alternative=None, claim=None, **details)`` attaches one typed record (``verification.records``) to the
  test's claims (or only to ``claim=``, an id or a list of ids). Everything travels in
  ``item.user_properties``, which pytest-xdist ships with each report, so the controller sees it.
* Options: ``--ledger-dir DIR`` writes ``claims.json``, ``claims.md`` and
  ``site/index.html`` there at the end (the json validated against ``claims.schema.json``);
  ``--claims-strict`` fails the session if a non-reference claim has no evidence that ran or any
  evidence failed; ``--claims-dir DIR`` loads another catalogue (tests of the spine use it).
* ``make test`` and ``make verify`` pass ``--claims-strict``; a plain ``pytest`` run is never strict.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from .aggregate import (
    BAD,
    MAX_MEASUREMENT_CHARS,
    TestRecord,
    build_ledger,
    strict_problems,
)
from .catalogue import KINDS, Catalogue, CatalogueError, load_catalogue
from .records import make_record

SPINE_KEY = pytest.StashKey["Spine"]()
MARKER_HELP = ("claim(*ids, kind): link this test to catalogue claims (claims/*.toml) as evidence of the "
               f"given kind ({', '.join(KINDS)})")
CONFORMANCE_HELP = ("conformance(implementation, property): record this test's outcome as one cell of the "
                    "implementation x property conformance table in the ledger")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "claims spine (verification/plugin.py)")
    group.addoption("--ledger-dir", metavar="DIR", default=None,
                    help="write claims.json and claims.md (the claims ledger) to DIR at the end of the session")
    group.addoption("--claims-strict", action="store_true", default=False,
                    help="fail if any non-reference claim has no evidence that ran or any evidence failed")
    group.addoption("--claims-dir", metavar="DIR", default=None,
                    help="claim catalogue folder (default: the repository's claims/)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", CONFORMANCE_HELP)
    try:
        catalogue = load_catalogue(config.getoption("claims_dir"))
    except CatalogueError as exc:
        raise pytest.UsageError(str(exc)) from None
    spine = Spine(config, catalogue)
    config.stash[SPINE_KEY] = spine
    config.pluginmanager.register(spine, "claims-spine")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def claim_ids(item: pytest.Item) -> list[str]:
    """The claim ids an item is linked to, in marker order, without repeats."""
    ids: list[str] = []
    for mark in item.iter_markers("claim"):
        ids.extend(a for a in mark.args if isinstance(a, str) and a not in ids)
    return ids


class Spine:
    """Per-session state: the catalogue, and on the controller the records of finished tests."""

    def __init__(self, config: pytest.Config, catalogue: Catalogue):
        self.config = config
        self.catalogue = catalogue
        self.records: dict[str, TestRecord] = {}
        self.collection_errors: list[str] = []
        self.started = time.perf_counter()
        self.ledger: dict | None = None
        self.problems: list[str] = []
        self.strict = False
        self.site: dict = {}

    # -- collection: validate and link -------------------------------------------------------------
    def link(self, item: pytest.Item) -> list[str]:
        """Validate the item's claim/conformance markers, store them as user properties; return problems."""
        problems = []
        for mark in item.iter_markers("claim"):
            ids, kind = mark.args, mark.kwargs.get("kind")
            where = f"{item.nodeid}: @pytest.mark.claim{_show_args(mark)}"
            if not ids:
                problems.append(f"{where}: give at least one claim id")
            for cid in ids:
                if not isinstance(cid, str):
                    problems.append(f"{where}: claim ids are strings, got {cid!r}")
                elif cid not in self.catalogue:
                    problems.append(f"{where}: unknown claim id {cid!r} (not in the catalogue claims/*.toml)")
            if kind is None:
                problems.append(f"{where}: kind= is required, one of {', '.join(KINDS)}")
            elif kind not in KINDS:
                problems.append(f"{where}: unknown kind {kind!r}, expected one of {', '.join(KINDS)}")
            extra = sorted(set(mark.kwargs) - {"kind"})
            if extra:
                problems.append(f"{where}: unexpected keyword(s) {', '.join(extra)} (only kind= is accepted)")
            if not problems:
                path, lineno, _ = item.location
                item.user_properties.append(
                    ("claim", {"ids": list(ids), "kind": kind, "path": path, "lineno": (lineno or 0) + 1}))
        for mark in item.iter_markers("conformance"):
            args = dict(zip(("implementation", "property"), mark.args)) | mark.kwargs
            if set(args) != {"implementation", "property"} or not all(isinstance(v, str) for v in args.values()):
                problems.append(f"{item.nodeid}: @pytest.mark.conformance needs two strings, implementation and property")
            elif not problems:
                item.user_properties.append(("conformance", args))
        return problems

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector):
        report = yield
        if report.outcome == "passed" and report.result:
            problems = [p for node in report.result if isinstance(node, pytest.Item) for p in self.link(node)]
            if problems:
                # A failed collect report: the module's collection errors, naming the id, under xdist too.
                report.outcome = "failed"
                report.longrepr = "claims spine: invalid claim marker(s):\n  " + "\n  ".join(problems)
                report.result = []
        return report

    # -- controller: gather reports ------------------------------------------------------------------
    def pytest_sessionstart(self, session):
        self.started = time.perf_counter()

    def pytest_collectreport(self, report):
        # Under xdist every worker collects, so the same module's error can arrive once per worker.
        if report.failed and not _is_worker(self.config) and report.nodeid not in self.collection_errors:
            self.collection_errors.append(report.nodeid)

    def pytest_runtest_logreport(self, report):
        if _is_worker(self.config):
            return
        record = self.records.setdefault(report.nodeid, TestRecord(report.nodeid))
        record.duration += float(getattr(report, "duration", 0.0) or 0.0)
        if report.user_properties:
            record.properties = list(report.user_properties)  # later phases carry a superset
        xfail = hasattr(report, "wasxfail")
        if report.when == "call":
            if xfail:
                record.outcome = "xfailed" if report.skipped else "xpassed"
            else:
                record.outcome = report.outcome
        elif report.when == "setup":
            if report.failed:
                record.outcome = "error"
            elif report.skipped:
                record.outcome = "xfailed" if xfail else "skipped"
        elif report.when == "teardown" and report.failed:
            record.outcome = "error"
        if record.outcome in BAD and record.message is None:
            record.message = _crash_message(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if _is_worker(self.config):
            return
        self.strict = self.config.getoption("claims_strict") and not self.config.option.collectonly
        ledger_dir = self.config.getoption("ledger_dir")
        if not (self.strict or ledger_dir):
            return
        self.ledger = build_ledger(self.catalogue, self.records, seconds=time.perf_counter() - self.started,
                                   collection_errors=self.collection_errors, environment=run_environment(self.config))
        from .schema import schema_errors

        invalid = [f"claims.json breaks its schema at {e}" for e in schema_errors(self.ledger)]
        if self.strict:
            self.problems = strict_problems(self.ledger) + invalid
        elif invalid:
            self.problems = invalid
        if self.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.ledger["summary"]["pytest_exit_status"] = int(session.exitstatus)
        if ledger_dir:
            self.site = write_ledger(self.ledger, Path(ledger_dir), self.catalogue, self.config.rootpath)

    def pytest_terminal_summary(self, terminalreporter):
        if self.ledger is None:
            return
        s = self.ledger["summary"]
        terminalreporter.section("claims")
        terminalreporter.write_line(f"{s['total']} claims: {s['verified']} verified, {s['cited']} cited, "
                                    f"{s['failing']} failing, {s['missing']} missing; false alarms per run "
                                    f"{s['false_alarm_per_run']:.2g} (budget {s['false_alarm_budget']:.0e})")
        if self.problems:
            terminalreporter.write_line("strict claims check failed:", red=True, bold=True)
            for problem in self.problems:
                terminalreporter.write_line(f"  {problem}", red=True)
        if self.config.getoption("ledger_dir"):
            site = f"site/index.html ({self.site.get('plots', 0)} plots, {self.site.get('seconds', 0):.1f} s)"
            terminalreporter.write_line(f"ledger written to {self.config.getoption('ledger_dir')}/claims.json, claims.md, {site}")
            for error in self.site.get("failed", []):
                terminalreporter.write_line(f"  plot not drawn: {error}", red=True)


def write_ledger(ledger: dict, directory: Path, catalogue: Catalogue, root: Path | None = None) -> dict:
    """``claims.json``, ``claims.md`` and the web page ``site/index.html`` (with its plots) in ``directory``;
    returns what writing the page took (``plots``, ``seconds``, ``failed``)."""
    from .markdown import render_markdown  # imported late: only ledger runs need them
    from .site import build_site

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "claims.json").write_text(json.dumps(ledger, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (directory / "claims.md").write_text(render_markdown(ledger, catalogue, directory, root), encoding="utf-8")
    started = time.perf_counter()
    site = build_site(ledger, catalogue, directory / "site", root)
    return site | {"seconds": time.perf_counter() - started}


def run_environment(config: pytest.Config) -> dict:
    """What a reader needs to reproduce the run: versions, the hypothesis profile and seeds, the commit."""
    import platform
    from importlib import metadata

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    profile = derandomize = None
    try:
        from hypothesis import settings

        profile = getattr(settings, "_current_profile", None)
        derandomize = bool(settings.default.derandomize)
    except ImportError:
        pass
    randomly = config.getoption("randomly_seed", None) if config.pluginmanager.has_plugin("randomly") else None
    seed = {"hypothesis": _seed_option(config), "derandomize": derandomize,
            "pytest_randomly": randomly if isinstance(randomly, int) else None}
    return {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": _git_commit(config.rootpath),
            "python": platform.python_version(), "torch": version("torch"), "hypothesis": version("hypothesis"),
            "profile": profile, "seed": seed, "platform": platform.platform(),
            "workers": getattr(config.option, "numprocesses", None)}


def _seed_option(config: pytest.Config):
    value = config.getoption("hypothesis_seed", None)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def _git_commit(root: Path) -> str | None:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _show_args(mark) -> str:
    parts = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return f"({', '.join(parts)})"


def _crash_message(report) -> str | None:
    try:
        message = report.longrepr.reprcrash.message
    except AttributeError:
        message = str(report.longrepr) if report.longrepr else None
    if not message:
        return None
    first = message.strip().splitlines()[0] if message.strip() else message
    return first[:300]


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture
def measure(request):
    """``measure(name, value, *, params=None, interval=None, confidence=None, unit=None, alpha=None,
    power=None, alternative=None, claim=None, **details)``: attach one typed measurement record.

    ``name`` is a plain identifier (``"dot_variance"``); what varies goes in ``params`` (``{"d_k": 4}``).
    A statistical decision gives ``alpha`` (its false-alarm rate), ``power`` and ``alternative``; the
    ledger sums the alphas of the run. The record goes to every claim of the test's ``claim`` markers,
    or only to ``claim=`` (an id or a list of ids). numpy/torch values are converted; returns ``value``
    unchanged so it can be used inline.
    """
    spine: Spine = request.config.stash[SPINE_KEY]
    item = request.node

    def record(name, value, *, params=None, interval=None, confidence=None, unit=None, alpha=None, power=None,
               alternative=None, claim=None, **details):
        if claim is None:
            targets = claim_ids(item)
            if not targets:
                raise ValueError(f"measure({name!r}): {item.nodeid} has no @pytest.mark.claim; pass claim=")
        else:
            targets = [claim] if isinstance(claim, str) else list(claim)
            unknown = [c for c in targets if c not in spine.catalogue]
            if unknown:
                raise ValueError(f"measure({name!r}): unknown claim id(s) {', '.join(map(repr, unknown))}")
        caller = sys._getframe(1)
        payload = make_record(name, value, params=params, interval=interval, confidence=confidence, unit=unit,
                              alpha=alpha, power=power, alternative=alternative, details=details)
        payload |= {"claims": targets, "path": _relative(caller.f_code.co_filename, request.config.rootpath),
                    "lineno": caller.f_lineno}
        size = len(json.dumps(payload))
        if size > MAX_MEASUREMENT_CHARS:
            raise ValueError(f"measure({name!r}): {size} characters of JSON; record a summary instead")
        item.user_properties.append(("measure", payload))
        return value

    return record


def _relative(filename: str, root: Path) -> str:
    try:
        return Path(filename).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(filename).name


@pytest.fixture
def conformance(request):
    """``conformance(implementation, property)``: this test's outcome is that cell of the conformance table."""
    item = request.node

    def record(implementation: str, property: str) -> None:
        if not (isinstance(implementation, str) and isinstance(property, str)):
            raise TypeError("conformance(implementation, property) takes two strings")
        item.user_properties.append(("conformance", {"implementation": implementation, "property": property}))

    return record
