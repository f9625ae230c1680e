"""From test reports to the ledger: per-claim evidence, measurements, status, and the summary.

The plugin feeds ``TestRecord``s (one per test node id, built from pytest reports on the controller, so
it works under pytest-xdist) to ``build_ledger``, which returns the dictionary written to
``claims.json``. Keys are part of the interface (other tools read them): see ``build_ledger``.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

from .catalogue import KINDS, STATUSES, VERDICTS, Catalogue, Claim

#: Outcomes that count as evidence that ran and agreed (an expected failure of a test marked
#: xfail counts: it is how a counterexample to a false claim is recorded).
OK = frozenset({"passed", "xfailed"})
#: Outcomes that make a claim failing. An unexpected pass of an xfail test means the recorded
#: expectation about the claim is wrong, so it fails too.
BAD = frozenset({"failed", "error", "xpassed"})
NOT_RUN = frozenset({"skipped"})
OUTCOMES = tuple(sorted(OK | BAD | NOT_RUN))

#: Largest serialised size of one measurement; a summary should be recorded, not a raw tensor.
MAX_MEASUREMENT_CHARS = 200_000


def to_jsonable(value, *, _depth: int = 0):
    """``value`` as plain JSON data (numpy/torch arrays and scalars, tuples, sets, fractions converted).

    Non-finite floats become the strings "NaN", "Infinity", "-Infinity" so the output is strict JSON.
    Raises TypeError naming the type for anything else.
    """
    if _depth > 50:
        raise TypeError("measurement nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) or (isinstance(value, numbers.Real) and not hasattr(value, "tolist")):
        f = float(value)
        if math.isfinite(f):
            return f
        return "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, _depth=_depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v, _depth=_depth + 1) for v in value), key=repr)
    detach = getattr(value, "detach", None)  # torch tensors
    if callable(detach):
        value = detach().cpu()
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, torch tensors
    if callable(tolist):
        return to_jsonable(tolist(), _depth=_depth + 1)
    if getattr(value, "is_Number", False):  # sympy numbers: exact text
        return str(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON-serialisable; convert it "
                    "(str for symbolic expressions, float/list for numbers and arrays)")


@dataclass
class TestRecord:
    """What the controller knows about one test node after its reports arrived."""

    nodeid: str
    outcome: str | None = None  # one of OUTCOMES once known
    duration: float = 0.0
    message: str | None = None
    properties: list = field(default_factory=list)  # (name, value) pairs: "claim", "measure", "conformance"

    def entries(self, name: str) -> list:
        return [value for key, value in _pairs(self.properties) if key == name]


def _pairs(properties):
    for entry in properties:
        if isinstance(entry, (list, tuple)) and len(entry) == 2:
            yield entry[0], entry[1]


def _distinguishing_suffix(nodeid: str) -> str:
    """What tells this test apart in a measurement name: its parameters, else the test's name."""
    if nodeid.endswith("]") and "[" in nodeid:
        return nodeid[nodeid.index("["):]
    return f" [{nodeid.rsplit('::', 1)[-1]}]"


def status_of(claim: Claim, outcomes: list[str]) -> str:
    """verified / failing / missing from the outcomes of the claim's evidence."""
    if any(o in BAD for o in outcomes):
        return "failing"
    if any(o in OK for o in outcomes):
        return "verified"
    if claim.is_reference and claim.citation:
        return "verified"
    return "missing"


def build_ledger(catalogue: Catalogue, records: dict[str, TestRecord], *, seconds: float,
                 collection_errors: list[str] = (), exitstatus: int | None = None) -> dict:
    """The ledger dictionary (``claims.json``).

    ``{"claims": [{"id", "title_zh", "claim", "sources", "section", "verdict", condition/counterexample/
    citation as set, "refers_to", "expected_evidence", "status", "evidence": [{"nodeid", "kind",
    "outcome", "duration", ...}], "measurements": {name: {"value", ..., "nodeid"}}, "kinds_missing"}],
    "conformance": [{"implementation", "property", "outcome", "nodeid"}], "summary": {"total",
    "verified", "failing", "missing", "by_verdict", "seconds", ...}}``
    """
    evidence: dict[str, list[dict]] = {cid: [] for cid in catalogue.claims}
    measurements: dict[str, dict[str, dict]] = {cid: {} for cid in catalogue.claims}
    conformance: list[dict] = []
    unknown: set[str] = set()
    for record in sorted(records.values(), key=lambda r: r.nodeid):
        outcome = record.outcome or "error"
        for info in record.entries("claim"):
            for cid in info.get("ids", []):
                if cid not in evidence:
                    unknown.add(cid)
                    continue
                row = {"nodeid": record.nodeid, "kind": info.get("kind"), "outcome": outcome,
                       "duration": round(record.duration, 4)}
                if info.get("path"):
                    row["path"], row["lineno"] = info["path"], info.get("lineno")
                if record.message and outcome in BAD:
                    row["message"] = record.message
                evidence[cid].append(row)
        for m in record.entries("measure"):
            for cid in m.get("claims", []):
                if cid not in measurements:
                    unknown.add(cid)
                    continue
                table = measurements[cid]
                name = m["name"]
                if name in table:  # parametrised tests and loops measure the same name several times
                    base = f"{m['name']}{_distinguishing_suffix(record.nodeid)}"
                    name, k = base, 2
                    while name in table:
                        name, k = f"{base}#{k}", k + 1
                table[name] = {"value": m.get("value"), **m.get("details", {}), "nodeid": record.nodeid}
        for row in record.entries("conformance"):
            conformance.append({"implementation": row.get("implementation"), "property": row.get("property"),
                                "outcome": outcome, "nodeid": record.nodeid})

    claims = []
    for claim in catalogue:
        rows = evidence[claim.id]
        if claim.citation and claim.is_reference:
            rows = rows + [{"nodeid": f"claims/{claim.file}#{claim.id}", "kind": "reference", "outcome": "cited",
                            "duration": 0.0, "citation": claim.citation}]
        outcomes = [r["outcome"] for r in evidence[claim.id]]
        covered = {r["kind"] for r in evidence[claim.id] if r["outcome"] in OK}
        if claim.citation:
            covered.add("reference")
        entry = {"id": claim.id, "title_zh": claim.title_zh, "claim": claim.claim, "sources": list(claim.sources),
                 "section": claim.section, "verdict": claim.verdict, **claim.verdict_detail()}
        if claim.refers_to:
            entry["refers_to"] = list(claim.refers_to)
        if claim.note:
            entry["note"] = claim.note
        entry.update({"expected_evidence": list(claim.evidence), "status": status_of(claim, outcomes),
                      "evidence": rows, "measurements": measurements[claim.id],
                      "kinds_missing": [k for k in claim.evidence if k not in covered]})
        claims.append(entry)

    statuses = [c["status"] for c in claims]
    tests = [r for r in records.values() if r.entries("claim")]
    summary = {"total": len(claims), **{s: statuses.count(s) for s in STATUSES},
               "by_verdict": {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS},
               "seconds": round(seconds, 1),
               "evidence_tests": {o: sum(r.outcome == o for r in tests) for o in OUTCOMES},
               "kinds_incomplete": sum(bool(c["kinds_missing"]) for c in claims),
               "collection_errors": list(collection_errors),
               "unknown_ids_in_reports": sorted(unknown),
               "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if exitstatus is not None:
        summary["pytest_exit_status"] = int(exitstatus)
    return {"claims": claims, "conformance": conformance, "summary": summary}


def strict_problems(ledger: dict) -> list[str]:
    """Why a strict run fails: failing claims, and non-reference claims without evidence that ran."""
    problems = []
    for c in ledger["claims"]:
        if c["status"] == "failing":
            bad = [f"{e['nodeid']} ({e['outcome']})" for e in c["evidence"] if e["outcome"] in BAD]
            problems.append(f"{c['id']}: failing evidence: {', '.join(bad)}")
        elif c["status"] == "missing" and c["verdict"] != "reference":
            problems.append(f"{c['id']}: no evidence ran (expected: {', '.join(c['expected_evidence'])})")
    for nodeid in ledger["summary"].get("collection_errors", []):
        problems.append(f"collection error in {nodeid}: its evidence did not run")
    return problems


def summary_line(ledger: dict, seconds: float | None = None) -> str:
    """One line: totals by status, counts by verdict, and the time taken."""
    s = ledger["summary"]
    verdicts = ", ".join(f"{v} {n}" for v, n in s["by_verdict"].items())
    secs = s["seconds"] if seconds is None else seconds
    return (f"claims: {s['total']} total, {s['verified']} verified, {s['failing']} failing, {s['missing']} missing"
            f" | {verdicts} | {secs:.1f} s")


__all__ = ["KINDS", "OK", "BAD", "NOT_RUN", "OUTCOMES", "TestRecord", "build_ledger", "status_of",
           "strict_problems", "summary_line", "to_jsonable"]
