"""The page in a real browser: headless Chromium (Debian's package) driven by selenium.

One page load asserts: no console errors, every image loaded, every claim id has its element, the filter
narrows the list, internal links resolve; it saves a screenshot beside the page. The page is built from
the last real ledger (``reports/claims.json``, after ``make verify``) when there is one, else from the
fixture ledger in a temporary folder. Without Chromium it skips, except in CI (``CI`` set), where it
must run (``.ci/run`` installs ``chromium`` and ``chromium-driver`` with apt-get).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.site_fixture import fixture_ledger
from verification.catalogue import load_catalogue
from verification.schema import SCHEMA_VERSION, schema_errors
from verification.site import write_site

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1600")


def _browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver; skip (or fail in CI) when either is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        chromium = None
    if chromium and driver:
        return chromium, driver
    reason = "headless Chromium is not installed (apt-get install chromium chromium-driver) or selenium is missing"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: in CI the browser test must run")
    pytest.skip(reason)


def _ledger_and_folder(tmp_path: Path) -> tuple[dict, Path]:
    real = ROOT / "reports/claims.json"
    if real.exists():
        ledger = json.loads(real.read_text(encoding="utf-8"))
        if ledger.get("schema_version") == SCHEMA_VERSION and not schema_errors(ledger):
            return ledger, ROOT / "reports/site"
    return fixture_ledger(), tmp_path / "reports/site"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    chromium, chromedriver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(chromedriver))
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


def _page(ledger: dict, folder: Path) -> Path:
    """The page of ``ledger`` in ``folder``: the one there when it is newer than the ledger and the page's
    code, else written anew."""
    page = folder / "index.html"
    sources = [ROOT / "reports/claims.json", *sorted((ROOT / "verification").glob("*.py"))]
    newest = max((p.stat().st_mtime for p in sources if p.exists()), default=0.0)
    if page.exists() and page.stat().st_mtime >= newest and folder.is_relative_to(ROOT):
        return page
    return write_site(ledger, load_catalogue(), folder, ROOT)


def test_the_page_works_in_headless_chromium(driver, tmp_path):
    ledger, folder = _ledger_and_folder(tmp_path)
    page = _page(ledger, folder)
    driver.get(page.as_uri())

    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == [], f"console errors: {errors}"

    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);")
    assert len(images) >= 10, f"only {len(images)} plots on the page"
    assert [src for src, ok in images if not ok] == [], "images that did not load"

    missing = driver.execute_script(
        "return arguments[0].filter(id => { const el = document.getElementById(id);"
        " return !el || el.tagName !== 'ARTICLE'; });", [c["id"] for c in ledger["claims"]])
    assert missing == [], f"claims without their element: {missing}"

    dangling = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href^=\"#\"]')).map(a => a.getAttribute('href').slice(1))"
        ".filter(id => id && !document.getElementById(decodeURIComponent(id)));")
    assert dangling == [], f"internal links to nothing: {sorted(set(dangling))}"

    assert driver.execute_script("const m = document.querySelector('math'); return !!m && m.getBoundingClientRect().width > 0;")

    visible = "return Array.from(document.querySelectorAll('article.claim')).filter(a => !a.hidden).map(a => a.id);"
    total = len(ledger["claims"])
    assert len(driver.execute_script(visible)) == total
    assert driver.execute_script("return !document.getElementById('filter').hidden;"), "the script did not show the filter"
    box = driver.find_element("id", "filter-words")
    box.send_keys("attn.qk-variance-init")
    assert driver.execute_script(visible) == ["attn.qk-variance-init"]
    box.clear()
    driver.execute_script("const s = document.getElementById('filter-status'); s.value = 'cited';"
                          "s.dispatchEvent(new Event('input'));")
    cited = sorted(c["id"] for c in ledger["claims"] if c["status"] == "cited")
    assert sorted(driver.execute_script(visible)) == cited and 0 < len(cited) < total
    driver.execute_script("const s = document.getElementById('filter-status'); s.value = '';"
                          "s.dispatchEvent(new Event('input'));")
    assert len(driver.execute_script(visible)) == total

    driver.execute_script("window.scrollTo(0, 0);")
    assert driver.save_screenshot(str(folder / "screenshot.png"))
