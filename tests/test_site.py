"""The page (``reports/site/index.html``): every claim its element, numbers the seeds print, plots drawn from
the records, tables uncut, math as MathML, links that resolve, nothing fetched from the network.

Built from the fixture ledger of ``tests/site_fixture.py`` in a temporary folder (the suite is not rerun).
"""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.site_fixture import fixture_ledger
from verification.catalogue import load_catalogue
from verification.markdown import render_markdown
from verification.plots import CLAIM_PLOTS
from verification.site import write_site

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("matplotlib")
pytest.importorskip("latex2mathml")


class Page(HTMLParser):
    """Every element's id, every img src, every a href, every script/link/img pointing elsewhere."""

    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.claims: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "article" and "claim" in (a.get("class") or ""):
            self.claims.append(a["id"])
        if tag == "img":
            self.images.append(a["src"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for key in ("src", "href"):
            if re.match(r"^(https?:)?//", a.get(key) or "") and tag in ("img", "script", "link", "iframe", "source"):
                self.external.append(a[key])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    ledger = fixture_ledger()
    page = write_site(ledger, load_catalogue(), folder / "site", ROOT)
    parsed = Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    return ledger, page, parsed


def test_every_claim_has_exactly_one_element_with_its_id(site):
    ledger, _, page = site
    ids = [c["id"] for c in ledger["claims"]]
    assert sorted(page.claims) == sorted(ids)
    duplicates = sorted({i for i in page.ids if page.ids.count(i) > 1})
    assert not duplicates, f"element ids used twice: {duplicates}"


def test_at_least_ten_plots_each_a_file_beside_the_page(site):
    _, page_file, page = site
    assert len(page.images) >= 10, page.images
    for src in page.images:
        target = page_file.parent / src
        assert target.is_file() and target.stat().st_size > 1000, src
        assert target.read_text(encoding="utf-8").lstrip().startswith(("<?xml", "<svg"))


def test_internal_links_and_source_links_resolve(site):
    _, page_file, page = site
    ids = set(page.ids)
    for href in page.links:
        if href.startswith("#"):
            assert href[1:] in ids, f"link to a missing element: {href}"
        else:
            target = (page_file.parent / href.split("#", 1)[0]).resolve()
            if href.startswith("../claims."):  # the json and markdown are written beside the site by the ledger
                continue
            assert target.exists(), f"link to a missing file: {href}"


def test_the_page_fetches_nothing_from_the_network(site):
    _, page_file, page = site
    assert page.external == []
    assert "<script src" not in page_file.read_text(encoding="utf-8")


def test_questions_carry_the_numbers_the_seed_files_print(site):
    _, page_file, _ = site
    text = page_file.read_text(encoding="utf-8")
    # seed 000 prints 1..16, then "1." (F17), "18." (F18), "1." (F19), "2." (F20), "19." (F21)
    for fid, printed in (("F4", "4"), ("F17", "1"), ("F18", "18"), ("F19", "1"), ("F20", "2"), ("F21", "19")):
        assert re.search(rf'id="q-000-{fid}"><h3><span class="printed">{printed}</span>', text), fid
    assert re.search(r'id="q-004-D17"><h3><span class="printed">17</span>', text)


def test_matrices_are_tables_with_every_number(site):
    ledger, page_file, _ = site
    text = page_file.read_text(encoding="utf-8")
    grid = next(r["value"] for c in ledger["claims"] for r in c["measurements"] if r["name"] == "mass_on_previous_token")
    article = text[text.index('id="heads.specialise"'):]
    article = article[:article.index("</article>")]
    for row in grid:
        for x in row:
            assert f">{x:.6g}<" in article, x


def test_proof_statements_are_mathml(site):
    _, page_file, _ = site
    text = page_file.read_text(encoding="utf-8")
    article = text[text.index('id="attn.qk-variance"'):]
    assert "<math" in article[:article.index("</article>")]


def test_the_filter_is_there_for_scripts_and_the_page_is_whole_without_them(site):
    _, page_file, page = site
    text = page_file.read_text(encoding="utf-8")
    assert '<form id="filter" hidden' in text  # shown by the script only
    assert "article.claim" in text and "data-search=" in text


def _drawn(ledger: dict, claim_id: str, function) -> str:
    import io

    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    claim = next(c for c in ledger["claims"] if c["id"] == claim_id)
    fig, _ = function(claim, plt)
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)
    return re.sub(r'id="[^"]*"|xlink:href="#[^"]*"|url\(#[^)]*\)', "", out.getvalue())


@pytest.mark.parametrize("claim_id, function", [(cid, f) for cid, fs in CLAIM_PLOTS.items() for f in fs],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_each_plot_is_drawn_from_its_records_not_constants(claim_id, function):
    """Other records give another picture; without its records the plot is left out."""
    first, second = fixture_ledger(seed=0), fixture_ledger(seed=1)
    for ledger in (first, second):  # change every number of the claim's records
        for claim in ledger["claims"]:
            if claim["id"] == claim_id and ledger is second:
                claim["measurements"] = _scaled(claim["measurements"])
    assert _drawn(first, claim_id, function) != _drawn(second, claim_id, function)
    stripped = copy.deepcopy(first)
    for claim in stripped["claims"]:
        claim["measurements"] = []
    assert function(next(c for c in stripped["claims"] if c["id"] == claim_id), None) is None


def _scaled(value, factors=None):
    """Every number times a factor that changes from number to number (so a log axis cannot hide it); the
    params, intervals and names that select and label records are kept."""
    factors = factors if factors is not None else iter([0.6, 1.3, 0.9, 1.7] * 10_000)
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value * next(factors)
    if isinstance(value, int):
        return round(value * next(factors))
    if isinstance(value, list):
        return [_scaled(v, factors) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in ("params", "interval", "name") else _scaled(v, factors)) for k, v in value.items()}
    return value


def test_markdown_names_questions_by_their_printed_numbers(tmp_path):
    md = render_markdown(fixture_ledger(), load_catalogue(), tmp_path, ROOT)
    assert "### 19 (F21)." in md and "### 1 (F17)." in md and "### 4 (F4)." in md and "### 17 (D17)." in md
    assert "📖 cited" in md


def test_the_false_alarm_budget_lists_each_decision(site):
    ledger, page_file, _ = site
    text = page_file.read_text(encoding="utf-8")
    section = text[text.index('id="false-alarms"'):]
    section = section[:section.index("</section>")]
    assert ledger["summary"]["false_alarm_per_run"] == pytest.approx(3e-7)
    assert "3e-07" in section and section.count("<code>p_diagonal_argmax[d=") == 3
