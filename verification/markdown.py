"""Render the ledger as ``claims.md``: the two FAQs question by question, each claim with its evidence.

A claim that several questions raise is written out in full under the first question that raises it
(reading the seeds in order) and referred to by a link from the later ones.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .aggregate import BAD, OK, questions_by_seed

STATUS_MARK = {"verified": "✅ verified", "cited": "📖 cited", "failing": "❌ failing", "missing": "⬜ missing"}
VERDICT_TEXT = {
    "holds": "holds: the claim is true as stated",
    "holds-under-conditions": "holds under conditions: true only when the condition below is met",
    "false-as-stated": "false as stated: the counterexample below refutes it",
    "reference": "reference: not computable here; the citation below is the evidence",
    "pending": "pending: the evidence has not yet settled a verdict",
}
KIND_TEXT = {
    "proof": "a symbolic derivation in sympy (proofs/), exact",
    "exact": "a property checked on every generated input (hypothesis, float64, tight tolerance)",
    "statistical": "seeded sampling with a statistical test whose false-alarm rate is at most 1e-6",
    "measured": "a counted quantity (FLOPs, parameters, memory, time) compared with a closed form",
    "counterexample": "a concrete input on which the claim as stated fails",
    "empirical": "a small training run or a trained model's measurement",
    "reference": "a citation: the claim is not computable",
}
MAX_ROWS = 200  # longer sweeps are shown as JSON


def question_heading(qid: str, gloss: dict) -> str:
    """The number a reader sees in the seed file, then the catalogue's id when it differs: ``19 (F21)``."""
    label = qid.split(":", 1)[1]
    printed = gloss.get("printed")
    if not printed or printed == label[1:]:
        return f"{label[1:]} ({label})" if printed else label
    return f"{printed} ({label})"


def _anchor(claim_id: str) -> str:
    return "claim-" + re.sub(r"[^a-z0-9]+", "-", claim_id.lower()).strip("-")


def _fmt_number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return f"{value:.4g}"


def fmt_confidence(value) -> str:
    if isinstance(value, (int, float)) and 0.99 < value < 1:
        return f"1 − {1 - value:.0e}".replace("e-0", "e-")
    return _fmt_value(value)


def _fmt_value(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _fmt_number(value)
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "[" + ", ".join(_fmt_number(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _rounded(value):
    """Floats to 6 significant digits, for display only (claims.json keeps full precision)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _block(value) -> list[str]:
    """A JSON code block: one line per key of a dict, compact values, long lines cut."""
    value = _rounded(value)
    if isinstance(value, dict):
        rows = [f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}" for k, v in value.items()]
    else:
        rows = [json.dumps(value, ensure_ascii=False)]
    return ["  ```json", *("  " + r for r in rows), "  ```"]


def _table(rows) -> list[str] | None:
    """A list of flat records with the same keys (FLOP rows, sweeps) as a markdown table, else None."""
    if not (isinstance(rows, list) and 0 < len(rows) <= MAX_ROWS and all(isinstance(r, dict) for r in rows)):
        return None
    keys = list(rows[0])
    if any(list(r) != keys for r in rows) or any(isinstance(v, (dict, list)) for r in rows for v in r.values()):
        return None
    return ["", "  | " + " | ".join(keys) + " |", "  |" + "---|" * len(keys),
            *("  | " + " | ".join(_fmt_value(r[k]) for k in keys) + " |" for r in rows), ""]


def record_label(r: dict) -> str:
    """``name[d_k=64]``: the record's name and its params, as placeholders select it."""
    params = ", ".join(f"{k}={v}" for k, v in r.get("params", {}).items())
    return f"{r['name']}[{params}]" if params else r["name"]


def render_measurement(r: dict) -> list[str]:
    """Lines (markdown bullets) for one typed record."""
    name, value = record_label(r), r.get("value")
    details = dict(r.get("details") or {})
    if "statement" in r["name"] or details.pop("latex", False):
        return [f"- *{name}*: $$ {value} $$" if isinstance(value, str) else f"- *{name}*: {_fmt_value(value)}"]
    unit = f" {r['unit']}" if r.get("unit") else ""
    if isinstance(value, (dict, list)) and len(json.dumps(value)) > 80:
        head = f"- *{name}*{unit and f' ({unit.strip()})'}" + (f" ({_fmt_details(details)})" if details else "") + ":"
        return [head, *(_table(value) or _block(value))]
    text = f"- *{name}* = {_fmt_value(value)}{unit}"
    parts = []
    if r.get("interval") is not None:
        parts.append(f"interval {_fmt_value(r['interval'])}")
    if r.get("confidence") is not None:
        parts.append(f"confidence {fmt_confidence(r['confidence'])}")
    if r.get("alpha") is not None:
        parts.append(f"false-alarm rate {r['alpha']:.2g}, power {r['power']:.3g} against: {r['alternative']}")
    if "closed_form" in details:
        closed = details.pop("closed_form")
        mark = ""
        if isinstance(closed, (int, float)) and isinstance(value, (int, float)):
            mark = " ✓ equal" if closed == value else f" (differs by {_fmt_number(value - closed)})"
        parts.append(f"closed form {_fmt_value(closed)}{mark}")
    if details:
        parts.append(_fmt_details(details))
    return [text + (f" ({'; '.join(parts)})" if parts else "")]


def _fmt_details(details: dict) -> str:
    return ", ".join(f"{k} = {_fmt_value(v)}" for k, v in details.items())


def _link(path: str | None, lineno, label: str, root: Path, directory: Path) -> str:
    if not path:
        return f"`{label}`"
    target = os.path.relpath(root / path, directory).replace(os.sep, "/")
    suffix = f"#L{lineno}" if lineno else ""
    return f"[`{label}`]({target}{suffix})"


def _render_claim(c: dict, root: Path, directory: Path) -> list[str]:
    lines = [f'<a id="{_anchor(c["id"])}"></a>', f"#### `{c['id']}` · {c['title_zh']}", "", f"> {c['claim']}", ""]
    n_ran = sum(e["outcome"] in OK | BAD for e in c["evidence"])
    lines.append(f"- **Status:** {STATUS_MARK.get(c['status'], c['status'])}"
                 + (f" ({n_ran} test{'s' if n_ran != 1 else ''} ran)" if n_ran else ""))
    lines.append(f"- **Verdict:** {VERDICT_TEXT.get(c['verdict'], c['verdict'])}")
    for key, label in (("condition", "Condition"), ("counterexample", "Counterexample"), ("citation", "Citation")):
        if c.get(key):
            lines.append(f"- **{label}:** {c[key]}")
    for error in c.get("render_errors", []):
        lines.append(f"- **Not filled from the measurements:** {error}")
    if c.get("note"):
        lines.append(f"- **Note:** {c['note']}")
    if c.get("refers_to"):
        lines.append("- **See also:** " + ", ".join(f"[`{r}`](#{_anchor(r)})" for r in c["refers_to"]))
    expected = ", ".join(c["expected_evidence"])
    missing = c.get("kinds_missing") or []
    lines.append(f"- **Evidence expected:** {expected}"
                 + (f" (not yet covered: {', '.join(missing)})" if missing else ""))
    if c["measurements"]:
        lines.append("- **Measurements:**")
        for r in c["measurements"]:
            lines.extend("  " + line for line in render_measurement(r))
    tests = [e for e in c["evidence"] if e["outcome"] != "cited"]
    if tests:
        lines.append("- **Evidence:**")
        for e in tests:
            label = e["nodeid"].split("::", 1)[-1]
            where = _link(e.get("path"), e.get("lineno"), label, root, directory)
            file = e.get("path") or e["nodeid"].split("::", 1)[0]
            extra = f": {e['message']}" if e.get("message") else ""
            lines.append(f"  - {e['kind']} · {e['outcome']}{extra} · {where} in `{file}` ({e['duration']:.2f} s)")
    lines.append("")
    return lines


def render_markdown(ledger: dict, catalogue, directory: Path, root: Path | None = None) -> str:
    """The whole ``claims.md``; ``root`` is the repository root the evidence paths are relative to."""
    directory = Path(directory).resolve()
    root = Path(root).resolve() if root is not None else (
        Path(catalogue.directory).resolve().parent if catalogue.directory else Path.cwd())
    claims = {c["id"]: c for c in ledger["claims"]}
    s = ledger["summary"]
    verdicts = ", ".join(f"{v} {n}" for v, n in s["by_verdict"].items() if n)
    out = ["# The Transformer FAQs, checked claim by claim", "",
           f"**{s['total']} claims: {s['verified']} verified, {s.get('cited', 0)} cited, {s['failing']} failing, "
           f"{s['missing']} missing** ({verdicts}). Evidence ran in {s['seconds']:.1f} s; the statistical tests "
           f"that ran add up to {s.get('false_alarm_per_run', 0):.2g} false alarms per run (budget "
           f"{s.get('false_alarm_budget', 1e-6):.0e}); generated {ledger.get('generated_at', '')}"
           + (f" at commit `{ledger['commit']}`" if ledger.get("commit") else "")
           + (f", pytest exit status {s['pytest_exit_status']}." if "pytest_exit_status" in s else "."), "",
           "Two Chinese interview FAQs about the Transformer make claims; this page takes them question by "
           "question and says, for every claim, what the evidence in this repository shows. Each claim has a "
           "*verdict* (what is true) and a *status* (whether its evidence ran and passed):", ""]
    out += [f"- *{v}*: {t.split(': ', 1)[1]}" for v, t in VERDICT_TEXT.items()]
    out += ["", "Status: *verified* means every test linked to the claim passed (an `xfailed` test is a "
            "counterexample that failed as expected); *cited* means a reference claim, settled by its citation and "
            "verified by no test; *failing* means one of them failed; *missing* means none ran yet. Evidence kinds:", ""]
    out += [f"- *{k}*: {t}" for k, t in KIND_TEXT.items()]
    out += ["", "## Overview", "", "| section | claims | verified | cited | failing | missing |", "|---|---|---|---|---|---|"]
    for letter, section in sorted(catalogue.sections.items()):
        members = [c for c in ledger["claims"] if c["section"] == letter]
        counts = [sum(c["status"] == st for c in members) for st in ("verified", "cited", "failing", "missing")]
        out.append(f"| {letter}. {section.title} ({section.title_zh}) | {len(members)} | "
                   + " | ".join(map(str, counts)) + " |")
    for status in ("failing", "missing"):
        ids = [c["id"] for c in ledger["claims"] if c["status"] == status]
        if ids:
            out += ["", f"{status.capitalize()} ({len(ids)}): " + ", ".join(f"[`{i}`](#{_anchor(i)})" for i in ids) + "."]
    if s.get("collection_errors"):
        out += ["", "**Collection errors** (their tests did not run): "
                + ", ".join(f"`{n}`" for n in s["collection_errors"])]

    shown: dict[str, str] = {}
    for prefix, questions in questions_by_seed(ledger, catalogue):
        seed = catalogue.seeds.get(prefix, {})
        out += ["", f"## Seed {prefix}: {seed.get('title', '')} · {seed.get('title_zh', '')}".rstrip(" ·"), ""]
        if seed.get("file"):
            out.append(f"Questions of `seeds/{seed['file']}`.")
        for qid, members in questions:
            gloss = catalogue.questions.get(qid, {})
            out += ["", f"### {question_heading(qid, gloss)}. {gloss.get('en', '')} · {gloss.get('zh', '')}".rstrip(" ·"), ""]
            if not members:
                out.append("No claim of the catalogue comes from this question.")
            for cid in members:
                c = claims[cid]
                if cid in shown:
                    out.append(f"- [`{cid}`](#{_anchor(cid)}) ({STATUS_MARK[c['status']]}, {c['verdict']}): "
                               f"{c['title_zh']}, discussed under {shown[cid]}.")
                else:
                    shown[cid] = qid
                    out.extend(_render_claim(c, root, directory))
    if ledger.get("conformance"):
        out += render_conformance(ledger["conformance"])
    return "\n".join(out) + "\n"


CONFORMANCE_WORDS = {"skipped": "n/a"}  # every other outcome is shown as pytest names it


def render_conformance(rows: list[dict]) -> list[str]:
    """The implementation x property tables (attention-level, then model-level ``model.*``), one cell per
    (implementation, property) with the outcome of its tests; expected failures are numbered and their
    reasons (upstream issues) listed below the tables."""
    try:
        from transformer.testing.runner import KNOWN_FAILURES
        from transformer.testing.thirdparty import CONVENTIONS
    except ImportError:  # the ledger renders without the package's testing extras
        KNOWN_FAILURES, CONVENTIONS = {}, {}
    out = ["", "## Conformance", "", "Each cell is the outcome of the tests that check the property on the implementation "
           "(n/a: the property does not apply, e.g. a model without a cache). Rows of `faq-conformance`'s "
           "`transformer.testing` properties; third-party rows are small random-initialised configs.", ""]
    cells: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        cells.setdefault((r["property"], r["implementation"]), set()).add(r["outcome"])
    notes: dict[str, int] = {}
    for title, model_level in (("Attention functions", False), ("Models", True)):
        props = sorted({p for p, _ in cells if p.startswith("model.") == model_level})
        if not props:
            continue
        impls = sorted({i for p, i in cells if p in props})
        out += [f"### {title}", "", "| property | " + " | ".join(f"`{i}`" for i in impls) + " |",
                "|---" * (len(impls) + 1) + "|"]
        for p in props:
            row = []
            for i in impls:
                outcomes = cells.get((p, i), set())
                if len(outcomes) > 1 and "passed" in outcomes and outcomes <= {"passed", "skipped"}:
                    outcomes = {"passed"}  # some tests of the cell do not apply, the others pass
                text = ", ".join(CONFORMANCE_WORDS.get(o, o) for o in sorted(outcomes)) or "·"
                reason = KNOWN_FAILURES.get((i, p))
                if reason and outcomes & {"xfailed", "xpassed"}:
                    text += f" [{notes.setdefault(reason, len(notes) + 1)}]"
                row.append(text)
            out.append(f"| {p} | " + " | ".join(row) + " |")
        out.append("")
    if notes:
        out += ["Expected failures (strict: a fix upstream turns the cell into an error):", ""]
        out += [f"{n}. {reason}" for reason, n in notes.items()]
    declared = {name: words for name, words in CONVENTIONS.items() if any(i == name for _, i in cells)}
    if declared:
        out += ["", "Declared conventions (not bugs; the cell checks the declared behaviour):", ""]
        out += [f"- `{name}`: {words}." for name, words in declared.items()]
    return out

