"""From test reports to the ledger: per-claim evidence, measurements, status, and the summary.

The plugin feeds ``TestRecord``s (one per test node id, built from pytest reports on the controller, so
it works under pytest-xdist) to ``build_ledger``, which returns the dictionary written to
``claims.json``. Keys are part of the interface (other tools read them): see ``build_ledger``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .catalogue import KINDS, STATUSES, VERDICTS, Catalogue, Claim
from .records import TYPED, render, to_jsonable

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


#: The whole default run may raise at most this many false alarms in expectation: the sum of the
#: ``alpha`` of every statistical decision that ran (each test's share is set in properties/tolerances.py).
FALSE_ALARM_BUDGET = 1e-6
#: Keys of the condition / counterexample texts that are templates filled from the claim's records.
TEMPLATED = ("condition", "counterexample")


def status_of(claim: Claim, outcomes: list[str]) -> str:
    """verified / cited / failing / missing from the outcomes of the claim's evidence.

    A reference claim is ``cited``: its citation is the evidence, and no test verifies it, even when
    tests related to it ran (unless one of them failed).
    """
    if any(o in BAD for o in outcomes):
        return "failing"
    if claim.is_reference and claim.citation:
        return "cited"
    if any(o in OK for o in outcomes):
        return "verified"
    return "missing"


def _record_row(m: dict, nodeid: str) -> dict:
    """A measurement record as stored in the ledger (typed keys, details, where it was measured)."""
    row = {k: m.get(k) for k in TYPED}
    row["params"] = row["params"] or {}
    row["details"] = m.get("details") or {}
    row["nodeid"] = nodeid
    if m.get("path"):
        row["path"], row["lineno"] = m["path"], m.get("lineno")
    return row


def build_ledger(catalogue: Catalogue, records: dict[str, TestRecord], *, seconds: float,
                 collection_errors: list[str] = (), exitstatus: int | None = None,
                 environment: dict | None = None) -> dict:
    """The ledger dictionary (``claims.json``; its schema is ``verification/claims.schema.json``).

    ``{"schema_version", "generated_at", "commit", "environment", "claims": [{"id", "title_zh", "claim",
    "sources", "questions", "section", "verdict", condition/counterexample (rendered from the records)/
    citation as set, "templates", "render_errors", "refers_to", "expected_evidence", "status",
    "evidence": [{"nodeid", "kind", "outcome", "duration", "path", "lineno", ...}], "measurements":
    [{"name", "value", "params", "interval", "confidence", "unit", "alpha", "power", "alternative",
    "details", "nodeid", "path", "lineno"}], "kinds_missing"}], "conformance": [...], "summary": {"total",
    "verified", "cited", "failing", "missing", "by_verdict", "false_alarm_per_run", "statistical_decisions",
    "seconds", ...}}``
    """
    from .schema import SCHEMA_VERSION  # the version travels with the schema file

    evidence: dict[str, list[dict]] = {cid: [] for cid in catalogue.claims}
    measurements: dict[str, list[dict]] = {cid: [] for cid in catalogue.claims}
    conformance: list[dict] = []
    decisions: list[dict] = []
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
            row = _record_row(m, record.nodeid)
            if row["alpha"] is not None:  # one decision, however many claims it serves
                decisions.append({"nodeid": record.nodeid, "name": row["name"], "params": row["params"],
                                  "alpha": row["alpha"], "power": row["power"], "claims": list(m.get("claims", []))})
            for cid in m.get("claims", []):
                if cid not in measurements:
                    unknown.add(cid)
                    continue
                measurements[cid].append(row)
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
                 "questions": [question_info(catalogue, s) for s in claim.sources],
                 "section": claim.section, "verdict": claim.verdict}
        templates, render_errors = {}, []
        for key, text in claim.verdict_detail().items():
            if key in TEMPLATED:
                filled, errors = render(text, measurements[claim.id])
                entry[key] = filled
                if filled != text:
                    templates[key] = text
                render_errors += [f"{key}: {e}" for e in errors]
            else:
                entry[key] = text
        entry["templates"] = templates
        entry["render_errors"] = render_errors
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
    false_alarm = math.fsum(d["alpha"] for d in decisions)
    summary = {"total": len(claims), **{s: statuses.count(s) for s in STATUSES},
               "by_verdict": {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS},
               "false_alarm_per_run": false_alarm,
               "false_alarm_budget": FALSE_ALARM_BUDGET,
               "statistical_decisions": decisions,
               "seconds": round(seconds, 1),
               "evidence_tests": {o: sum(r.outcome == o for r in tests) for o in OUTCOMES},
               "kinds_incomplete": sum(bool(c["kinds_missing"]) for c in claims),
               "render_errors": sum(len(c["render_errors"]) for c in claims),
               "collection_errors": list(collection_errors),
               "unknown_ids_in_reports": sorted(unknown)}
    if exitstatus is not None:
        summary["pytest_exit_status"] = int(exitstatus)
    env = environment or {}
    return {"schema_version": SCHEMA_VERSION, "generated_at": env.get("generated_at") or _now(),
            "commit": env.get("commit"), "environment": {k: v for k, v in env.items() if k not in ("generated_at", "commit")},
            "claims": claims, "conformance": conformance, "summary": summary}


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


_SOURCE = re.compile(r"^(\d{3}):([FD])(\d+)$")


def question_info(catalogue: Catalogue, source: str) -> dict:
    """``{"id": "000:F21", "seed": "000", "printed": "19"}``: the number a reader sees in the seed file."""
    m = _SOURCE.match(source)
    gloss = catalogue.questions.get(source, {})
    printed = gloss.get("printed") or (m.group(3) if m else source)
    return {"id": source, "seed": m.group(1) if m else source.split(":")[0], "printed": printed}


def source_key(source: str):
    """Sort key of a question id such as "000:F21": its seed, then its number in reading order."""
    m = _SOURCE.match(source)
    return (m.group(1), int(m.group(3))) if m else (source, 0)


def questions_by_seed(ledger: dict, catalogue: Catalogue) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """The ledger's claims under the FAQ questions they come from: ``[(seed, [(question id, [claim ids])])]``,
    seeds in catalogue order, questions in reading order (every catalogue question, with or without claims)."""
    by_question: dict[str, list[str]] = {}
    for c in ledger["claims"]:
        for source in c["sources"]:
            by_question.setdefault(source, []).append(c["id"])
    prefixes = list(catalogue.seeds) or sorted({q.split(":")[0] for q in by_question})
    walk = []
    for prefix in prefixes:
        ids = [q for q in catalogue.questions if q.startswith(prefix + ":")]
        ids += [q for q in by_question if q.startswith(prefix + ":") and q not in ids]
        walk.append((prefix, [(qid, by_question.get(qid, [])) for qid in sorted(ids, key=source_key)]))
    return walk


def over_budget(ledger: dict) -> bool:
    s = ledger["summary"]
    return s.get("false_alarm_per_run", 0.0) > s.get("false_alarm_budget", FALSE_ALARM_BUDGET) * (1 + 1e-9)


def strict_problems(ledger: dict) -> list[str]:
    """Why a strict run fails: failing claims, non-reference claims without evidence that ran, claim
    texts the measurements cannot fill, and a run whose false-alarm rates add up to more than the budget."""
    problems = []
    for c in ledger["claims"]:
        if c["status"] == "failing":
            bad = [f"{e['nodeid']} ({e['outcome']})" for e in c["evidence"] if e["outcome"] in BAD]
            problems.append(f"{c['id']}: failing evidence: {', '.join(bad)}")
        elif c["status"] == "missing" and c["verdict"] != "reference":
            problems.append(f"{c['id']}: no evidence ran (expected: {', '.join(c['expected_evidence'])})")
        for error in c.get("render_errors", []):
            problems.append(f"{c['id']}: cannot fill its {error}")
    s = ledger["summary"]
    if over_budget(ledger):
        top = sorted(s.get("statistical_decisions", []), key=lambda d: -d["alpha"])[:5]
        problems.append(f"false alarms per run {s['false_alarm_per_run']:.3g} exceed the budget "
                        f"{s.get('false_alarm_budget', FALSE_ALARM_BUDGET):.0e} (largest: "
                        + ", ".join(f"{d['nodeid']} {d['name']} alpha={d['alpha']:.2g}" for d in top) + ")")
    for nodeid in s.get("collection_errors", []):
        problems.append(f"collection error in {nodeid}: its evidence did not run")
    return problems


def summary_line(ledger: dict, seconds: float | None = None) -> str:
    """One line: totals by status, the run's false-alarm rate, counts by verdict, and the time taken."""
    s = ledger["summary"]
    verdicts = ", ".join(f"{v} {n}" for v, n in s["by_verdict"].items())
    secs = s["seconds"] if seconds is None else seconds
    alarm = f" | false alarms per run {s['false_alarm_per_run']:.2g}" if "false_alarm_per_run" in s else ""
    return (f"claims: {s['total']} total, {s['verified']} verified, {s.get('cited', 0)} cited, {s['failing']} failing, "
            f"{s['missing']} missing{alarm} | {verdicts} | {secs:.1f} s")


__all__ = ["KINDS", "OK", "BAD", "NOT_RUN", "OUTCOMES", "FALSE_ALARM_BUDGET", "TestRecord", "build_ledger",
           "status_of", "strict_problems", "summary_line", "to_jsonable"]
