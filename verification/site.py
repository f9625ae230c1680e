"""The ledger as a web page: ``reports/site/index.html``, one static file and its plots.

The page follows the two FAQs question by question, under the numbers the seed files print. Each claim
is an ``<article id="<claim id>">`` with its verdict and status, the condition or counterexample filled
from the run's measurements, every measurement in a table (nothing cut), proof statements as MathML
(native in browsers), plots drawn from this run's records (``verification.plots``) and a link from each
piece of evidence to the line of its test. It opens from ``file://`` with no network; a few lines of
JavaScript add a filter box, and the page is whole without them.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

from latex2mathml.converter import convert

from .aggregate import BAD, OK, question_info, questions_by_seed
from .markdown import KIND_TEXT, VERDICT_TEXT, fmt_confidence, record_label

#: Lists of numbers longer than this are shown as a table of index and value, never cut.
WIDE_LIST = 16

CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --cited: #8250df; --missing: #9a6700; --ink: #1f2328; --muted: #57606a;
        --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif;
       color: var(--ink); margin: 0; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 1rem; }
header { padding-top: 1rem; }
h1 { font-size: 1.6rem; margin: .5rem 0; }
h2 { border-bottom: 2px solid var(--line); padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { margin: 1.8rem 0 .6rem; font-size: 1.15rem; }
h3 .printed { display: inline-block; min-width: 2.2em; padding: 0 .35em; margin-right: .3em; border-radius: 4px;
              background: var(--ink); color: #fff; text-align: center; }
h3 .fid { color: var(--muted); font-weight: normal; font-size: .85em; }
article.claim { border: 1px solid var(--line); border-radius: 8px; padding: .6rem 1rem 1rem; margin: .8rem 0;
                background: #fff; }
article.claim h4 { margin: .2rem 0 .4rem; font-size: 1rem; }
article.claim h4 a.self { color: inherit; text-decoration: none; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .8rem; font-weight: 600;
         border: 1px solid currentColor; margin-right: .3em; }
.status-verified { color: var(--ok); } .status-failing { color: var(--bad); }
.status-cited { color: var(--cited); } .status-missing { color: var(--missing); }
.verdict { color: var(--ink); background: var(--bg); }
blockquote { margin: .4rem 0; padding: .2rem .8rem; border-left: 4px solid var(--line); color: var(--ink); }
dl.texts dt { font-weight: 600; margin-top: .4rem; } dl.texts dd { margin: 0 0 0 1rem; }
.render-error { color: var(--bad); }
table { border-collapse: collapse; margin: .4rem 0; font-size: .85rem; }
th, td { border: 1px solid var(--line); padding: .15rem .45rem; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
details { margin: .4rem 0; } summary { cursor: pointer; color: var(--muted); }
figure { margin: .6rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85rem; }
.math { overflow-x: auto; padding: .3rem 0; }
.evidence li { margin: .1rem 0; }
.muted { color: var(--muted); }
#filter { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid var(--line);
          display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; z-index: 1; }
#filter input { flex: 1 1 18rem; padding: .3rem .5rem; font-size: 1rem; }
nav.toc { columns: 2 22rem; font-size: .9rem; }
nav.toc a { text-decoration: none; }
.summary td, .summary th { font-size: .9rem; }
"""

#: The filter: words (id, English, Chinese), verdict and status; hides questions with no match left.
SCRIPT = """
(function () {
  var form = document.getElementById('filter');
  form.hidden = false;
  var words = document.getElementById('filter-words'), verdict = document.getElementById('filter-verdict'),
      status = document.getElementById('filter-status'), count = document.getElementById('filter-count');
  var claims = Array.prototype.slice.call(document.querySelectorAll('article.claim'));
  function apply() {
    var terms = words.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    claims.forEach(function (el) {
      var text = el.getAttribute('data-search');
      var ok = terms.every(function (t) { return text.indexOf(t) >= 0; }) &&
               (!verdict.value || el.getAttribute('data-verdict') === verdict.value) &&
               (!status.value || el.getAttribute('data-status') === status.value);
      el.hidden = !ok; if (ok) { shown++; }
    });
    document.querySelectorAll('section.question').forEach(function (q) {
      q.hidden = !q.querySelector('article.claim:not([hidden])') && (terms.length || verdict.value || status.value);
    });
    count.textContent = shown + ' of ' + claims.length + ' claims';
  }
  [words, verdict, status].forEach(function (el) { el.addEventListener('input', apply); });
  apply();
})();
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return esc(json.dumps(value))
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return esc(value)
    return f"<code>{esc(json.dumps(value, ensure_ascii=False))}</code>"


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def value_html(value) -> str:
    """A value as HTML: numbers, tables for matrices, records and mappings, nested as needed; never cut."""
    if _is_num(value):
        return f'<span class="mono">{_fmt(value)}</span>'
    if isinstance(value, list) and value and all(isinstance(r, list) and r and all(_is_num(x) for x in r) for r in value):
        width = max(len(r) for r in value)
        head = "<tr><th></th>" + "".join(f"<th>{j}</th>" for j in range(width)) + "</tr>"
        body = "".join(f"<tr><th>{i}</th>" + "".join(f'<td class="num">{_fmt(x)}</td>' for x in r) + "</tr>"
                       for i, r in enumerate(value))
        return f'<div class="scroll"><table class="matrix">{head}{body}</table></div>'
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        keys = list(dict.fromkeys(k for r in value for k in r))
        head = "<tr>" + "".join(f"<th>{esc(k)}</th>" for k in keys) + "</tr>"
        body = "".join("<tr>" + "".join(_cell(r.get(k, "")) for k in keys) + "</tr>" for r in value)
        return f'<div class="scroll"><table>{head}{body}</table></div>'
    if isinstance(value, list) and len(value) > WIDE_LIST and all(_is_num(x) for x in value):
        body = "".join(f'<tr><th>{i}</th><td class="num">{_fmt(x)}</td></tr>' for i, x in enumerate(value))
        return f'<div class="scroll"><table><tr><th>index</th><th>value</th></tr>{body}</table></div>'
    if isinstance(value, list):
        return "[" + ", ".join(value_html(v) if isinstance(v, (dict, list)) else _fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        body = "".join(f"<tr><th>{esc(k)}</th>{_cell(v)}</tr>" for k, v in value.items())
        return f'<div class="scroll"><table class="mapping">{body}</table></div>'
    return _fmt(value)


def _cell(v) -> str:
    return f'<td class="num">{_fmt(v)}</td>' if _is_num(v) else f"<td>{value_html(v)}</td>"


def math_html(latex: str) -> str:
    """LaTeX as presentation MathML (latex2mathml); the LaTeX source as code if it cannot be converted."""
    try:
        return f'<div class="math">{convert(latex, display="block")}</div>'
    except Exception:  # noqa: BLE001 - any converter failure falls back to the source text
        return f'<div class="math"><code>{esc(latex)}</code></div>'


def _link(path: str | None, lineno, root: Path, directory: Path) -> str | None:
    if not path:
        return None
    target = os.path.relpath(root / path, directory).replace(os.sep, "/")
    return f"{target}#L{lineno}" if lineno else target


def measurements_html(records: list[dict], root: Path, directory: Path) -> str:
    """Statements as math, then one table row per record: name and params, value, interval, test."""
    parts, rows = [], []
    for r in records:
        if r["name"] == "statement" and isinstance(r["value"], str):
            parts.append(math_html(r["value"]))
            continue
        about = []
        if r.get("unit"):
            about.append(f"unit: {esc(r['unit'])}")
        if r.get("interval") is not None:
            about.append(f'interval [{_fmt(r["interval"][0])}, {_fmt(r["interval"][1])}]'
                         + (f" at confidence {esc(fmt_confidence(r['confidence']))}" if r.get("confidence") is not None else ""))
        elif r.get("confidence") is not None:
            about.append(f"confidence {esc(fmt_confidence(r['confidence']))}")
        if r.get("alpha") is not None:
            about.append(f'false-alarm rate {r["alpha"]:.2g}; power {r["power"]:.3g} against: {esc(r["alternative"])}')
        if r.get("details"):
            about.append(value_html(r["details"]))
        href = _link(r.get("path"), r.get("lineno"), root, directory)
        where = (f'<br><a class="muted" href="{esc(href)}">{esc(r.get("path"))}:{r.get("lineno")}</a>' if href
                 else f'<br><span class="muted">{esc(r.get("nodeid", ""))}</span>')
        rows.append(f"<tr><td><code>{esc(record_label(r))}</code>{where}</td><td>{value_html(r['value'])}</td>"
                    f"<td>{'<br>'.join(about)}</td></tr>")
    if rows:
        parts.append('<div class="scroll"><table class="measurements"><tr><th>measurement (where)</th><th>value</th>'
                     "<th>interval, decision, details</th></tr>" + "".join(rows) + "</table></div>")
    return "".join(parts)


def evidence_html(rows: list[dict], root: Path, directory: Path) -> str:
    items = []
    for e in rows:
        if e["outcome"] == "cited":
            continue
        href = _link(e.get("path"), e.get("lineno"), root, directory)
        label = esc(e["nodeid"].split("::", 1)[-1])
        test = f'<a href="{esc(href)}"><code>{label}</code></a>' if href else f"<code>{label}</code>"
        file = esc(e.get("path") or e["nodeid"].split("::", 1)[0])
        cls = "status-verified" if e["outcome"] in OK else ("status-failing" if e["outcome"] in BAD else "status-missing")
        message = f": {esc(e['message'])}" if e.get("message") else ""
        items.append(f'<li><span class="badge {cls}">{esc(e["outcome"])}</span>{esc(e["kind"])} · {test} in '
                     f'<code>{file}</code>{":" + str(e["lineno"]) if e.get("lineno") else ""} '
                     f'<span class="muted">({e["duration"]:.2f} s)</span>{message}</li>')
    return f'<ul class="evidence">{"".join(items)}</ul>' if items else ""


def claim_html(c: dict, plots: list[dict], root: Path, directory: Path) -> str:
    """One ``<article id="<claim id>">``."""
    search = " ".join([c["id"], c["claim"], c["title_zh"], c["verdict"], c["status"], c.get("condition", ""),
                       c.get("counterexample", ""), c.get("note", "")]).lower()
    texts = []
    for key, label in (("condition", "Condition"), ("counterexample", "Counterexample"), ("citation", "Citation"),
                       ("note", "Note")):
        if c.get(key):
            texts.append(f"<dt>{label}</dt><dd>{_inline(c[key])}</dd>")
    for error in c.get("render_errors", []):
        texts.append(f'<dt class="render-error">Not filled from the measurements</dt><dd class="render-error">{esc(error)}</dd>')
    if c.get("refers_to"):
        texts.append("<dt>See also</dt><dd>" + ", ".join(f'<a href="#{esc(r)}"><code>{esc(r)}</code></a>'
                                                      for r in c["refers_to"]) + "</dd>")
    missing = c.get("kinds_missing") or []
    texts.append("<dt>Evidence expected</dt><dd>" + ", ".join(
        f'<span title="{esc(KIND_TEXT.get(k, k))}">{esc(k)}</span>' for k in c["expected_evidence"])
        + (f' <span class="status-missing">(not covered: {esc(", ".join(missing))})</span>' if missing else "") + "</dd>")
    figures = "".join(
        f'<figure id="{esc(p["id"])}"><img src="{esc(p["file"])}" alt="{esc(p["alt"])}" width="{p["width"]}" '
        f'height="{p["height"]}" loading="eager"><figcaption>{esc(p["caption"])}</figcaption></figure>' for p in plots)
    measured = measurements_html(c["measurements"], root, directory)
    tests = evidence_html(c["evidence"], root, directory)
    n = len(c["measurements"])
    questions = ", ".join(f'<a href="#{question_anchor(q["id"])}">{esc(q["seed"])} · {esc(q["printed"])}</a>'
                          for q in c.get("questions", []))
    return (f'<article class="claim" id="{esc(c["id"])}" data-verdict="{esc(c["verdict"])}" '
            f'data-status="{esc(c["status"])}" data-search="{esc(search)}">'
            f'<h4><a class="self" href="#{esc(c["id"])}"><code>{esc(c["id"])}</code></a> · {esc(c["title_zh"])}</h4>'
            f'<span class="badge status-{esc(c["status"])}">{esc(c["status"])}</span>'
            f'<span class="badge verdict" title="{esc(VERDICT_TEXT.get(c["verdict"], ""))}">{esc(c["verdict"])}</span>'
            f'<span class="muted">questions {questions}</span>'
            f'<blockquote>{_inline(c["claim"])}</blockquote><dl class="texts">{"".join(texts)}</dl>{figures}'
            + (f"<details open><summary>Measurements ({n})</summary>{measured}</details>" if measured else "")
            + (f"<h5>Evidence</h5>{tests}" if tests else "")
            + "</article>")


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(f"<code>{esc(p[1:-1])}</code>" if p.startswith("`") and p.endswith("`") and len(p) > 1 else esc(p)
                   for p in parts)


def question_anchor(qid: str) -> str:
    return "q-" + qid.replace(":", "-")


def render_page(ledger: dict, catalogue, plots: dict[str, list[dict]], root: Path, directory: Path) -> str:
    """The whole page as a string."""
    claims = {c["id"]: c for c in ledger["claims"]}
    s = ledger["summary"]
    body, toc, shown = [], [], {}
    for prefix, questions in questions_by_seed(ledger, catalogue):
        seed = catalogue.seeds.get(prefix, {})
        title = f"Seed {prefix}: {seed.get('title', '')}".rstrip(": ")
        body.append(f'<section class="seed" id="seed-{esc(prefix)}"><h2>{esc(title)} · {esc(seed.get("title_zh", ""))}</h2>')
        if seed.get("file"):
            body.append(f'<p class="muted">Questions of <code>seeds/{esc(seed["file"])}</code>, '
                        "numbered as the file prints them.</p>")
        toc.append(f"<li><strong>{esc(title)}</strong><ul>")
        for qid, members in questions:
            gloss = catalogue.questions.get(qid, {})
            info = question_info(catalogue, qid)
            anchor = question_anchor(qid)
            fid = qid.split(":", 1)[1]
            body.append(f'<section class="question" id="{anchor}"><h3><span class="printed">{esc(info["printed"])}</span>'
                        f'{esc(gloss.get("en", ""))} · {esc(gloss.get("zh", ""))} <span class="fid">({esc(fid)})</span></h3>')
            also = "" if info["printed"] == fid[1:] else f" ({fid})"
            toc.append(f'<li><a href="#{anchor}">{esc(info["printed"])}{esc(also)}. {esc(gloss.get("en", fid))}</a></li>')
            if not members:
                body.append('<p class="muted">No claim of the catalogue comes from this question.</p>')
            for cid in members:
                c = claims[cid]
                if cid in shown:
                    body.append(f'<p class="ref"><a href="#{esc(cid)}"><code>{esc(cid)}</code></a> '
                                f'<span class="badge status-{esc(c["status"])}">{esc(c["status"])}</span>'
                                f'{esc(c["title_zh"])}: shown under question {esc(shown[cid])}.</p>')
                else:
                    shown[cid] = f"{prefix} · {info['printed']}"
                    body.append(claim_html(c, plots.get(cid, []), root, directory))
            body.append("</section>")
        body.append("</section>")
        toc.append("</ul></li>")
    if plots.get("_conformance"):
        body.append('<section id="conformance"><h2>Conformance</h2><p>Each cell is the outcome of the test that checks '
                    "the property on the implementation.</p>"
                    + "".join(f'<figure id="{esc(p["id"])}"><img src="{esc(p["file"])}" alt="{esc(p["alt"])}" '
                              f'width="{p["width"]}" height="{p["height"]}"><figcaption>{esc(p["caption"])}</figcaption></figure>'
                              for p in plots["_conformance"]) + conformance_table(ledger) + "</section>")
        toc.append('<li><a href="#conformance">Conformance</a></li>')
    body.append(false_alarm_html(s))
    toc.append('<li><a href="#false-alarms">False-alarm budget</a></li>')
    verdict_options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in VERDICT_TEXT)
    status_options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in ("verified", "cited", "failing", "missing"))
    env = ledger.get("environment", {})
    env_text = ", ".join(f"{k} {v}" for k, v in env.items() if k in ("python", "torch", "hypothesis", "profile") and v)
    counts = "".join(f"<td>{s.get(k, 0)}</td>" for k in ("total", "verified", "cited", "failing", "missing"))
    counts += (f'<td>{s.get("false_alarm_per_run", 0):.2g} (budget {s.get("false_alarm_budget", 1e-6):.0e})</td>'
               f'<td>{s.get("seconds", 0):.1f} s</td>')
    commit = f" at commit <code>{esc(ledger['commit'])}</code>" if ledger.get("commit") else ""
    failed = "".join(f'<p class="render-error">Plot not drawn: {esc(f["error"])}</p>' for f in plots.get("_failed", []))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>The Transformer FAQs, checked claim by claim</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>The Transformer FAQs, checked claim by claim</h1>
<p>Two Chinese interview FAQs about the Transformer make claims; this page takes them question by question, under
the numbers the FAQs print, and shows for every claim what the evidence in this repository measured. A claim's
<em>verdict</em> says what is true; its <em>status</em> says whether its evidence ran and passed
(<em>cited</em>: a reference claim, settled by its citation, verified by no test).</p>
<table class="summary"><tr><th>claims</th><th>verified</th><th>cited</th><th>failing</th><th>missing</th>
<th>false alarms per run</th><th>evidence ran</th></tr><tr>{counts}</tr></table>
<p class="muted">Generated {esc(ledger.get("generated_at", ""))}{commit};
{esc(env_text)}. Machine-readable: <a href="../claims.json">claims.json</a> (schema
<code>verification/claims.schema.json</code>), <a href="../claims.md">claims.md</a>.</p>
<form id="filter" hidden onsubmit="return false">
<input id="filter-words" type="search" placeholder="Filter: claim id, words in English or 中文" aria-label="filter words">
<select id="filter-verdict" aria-label="verdict"><option value="">any verdict</option>{verdict_options}</select>
<select id="filter-status" aria-label="status"><option value="">any status</option>{status_options}</select>
<span id="filter-count" class="muted"></span>
</form>
<nav class="toc"><ul>{"".join(toc)}</ul></nav>
</header>
<main>
{"".join(body)}
</main>
<footer>{failed}<p class="muted">Written by <code>python -m verification.ledger</code> (<code>make verify</code>) from this run's
records; every plot is drawn from them.</p></footer>
<script>{SCRIPT}</script>
</body>
</html>
"""


def false_alarm_html(summary: dict) -> str:
    """The run's statistical decisions with their rates, and their sum against the budget."""
    rows = []
    for d in summary.get("statistical_decisions", []):
        claims = " ".join(f'<a href="#{esc(c)}"><code>{esc(c)}</code></a>' for c in d.get("claims", []))
        rows.append(f'<tr><td>{claims}</td><td><code>{esc(record_label(d))}</code></td><td class="num">{d["alpha"]:.2g}</td>'
                    f'<td class="num">{d["power"]:.3g}</td><td><code>{esc(d["nodeid"])}</code></td></tr>')
    table = ('<div class="scroll"><table><tr><th>claims</th><th>decision</th><th>alpha</th><th>power</th><th>test</th></tr>'
             + "".join(rows) + "</table></div>") if rows else "<p>No statistical decision recorded its rate in this run.</p>"
    return (f'<section id="false-alarms"><h2>False-alarm budget</h2><p>Each statistical decision of the run and its '
            f'false-alarm rate: together {summary.get("false_alarm_per_run", 0):.2g}, against a budget of '
            f'{summary.get("false_alarm_budget", 1e-6):.0e} per run (the run fails above it).</p>{table}</section>')


def conformance_table(ledger: dict) -> str:
    impls = sorted({r["implementation"] for r in ledger["conformance"]})
    props = sorted({r["property"] for r in ledger["conformance"]})
    cells: dict[tuple[str, str], set[str]] = {}
    for r in ledger["conformance"]:
        cells.setdefault((r["property"], r["implementation"]), set()).add(r["outcome"])
    head = "<tr><th>property</th>" + "".join(f"<th>{esc(i)}</th>" for i in impls) + "</tr>"
    body = "".join(f"<tr><th>{esc(p)}</th>" + "".join(f"<td>{esc(', '.join(sorted(cells.get((p, i), set()))) or '·')}</td>"
                                                       for i in impls) + "</tr>" for p in props)
    return f'<div class="scroll"><table>{head}{body}</table></div>'


def build_site(ledger: dict, catalogue, directory: Path, root: Path | None = None) -> dict:
    """Write ``index.html`` and its plots into ``directory``; ``{"page", "plots", "failed"}``: the page's path,
    how many plots were drawn, and the plots whose drawing raised (named on the page too)."""
    from .plots import draw_plots

    directory = Path(directory).resolve()
    root = Path(root).resolve() if root is not None else (
        Path(catalogue.directory).resolve().parent if catalogue.directory else Path.cwd())
    directory.mkdir(parents=True, exist_ok=True)
    plots = draw_plots(ledger, directory)
    page = directory / "index.html"
    page.write_text(render_page(ledger, catalogue, plots, root, directory), encoding="utf-8")
    drawn = sum(len(v) for k, v in plots.items() if k != "_failed")
    return {"page": page, "plots": drawn, "failed": [f["error"] for f in plots.get("_failed", [])]}


def write_site(ledger: dict, catalogue, directory: Path, root: Path | None = None) -> Path:
    """Write ``index.html`` and its plots into ``directory``; return the page's path."""
    return build_site(ledger, catalogue, directory, root)["page"]
