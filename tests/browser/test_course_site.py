"""The course site in Chromium: opened from disk, every link followed, every image decoded.

Which notebooks it shows: browser tests run last (tests/browser/conftest.py), so in
``make test`` the site is rendered from the notebooks the notebook tests have just
executed. Run alone with no executed notebook at all, the test executes notebook 01
(about 45 s on 2 cores) so that the site has at least one real page with plots.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from pathlib import Path

import pytest
from browser_harness import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# A resource the page would fetch (not a link a reader may click) from another host.
EXTERNAL_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.I
)

# As browsers resolve a fragment: an element whose id is the fragment as written, or decoded.
FRAGMENT_TARGET_JS = """
const f = arguments[0];
let decoded = f;
try { decoded = decodeURIComponent(f); } catch (e) {}
return !!(document.getElementById(f) || document.getElementById(decoded) || document.getElementsByName(decoded).length);
"""


@pytest.fixture(scope="module")
def site() -> Path:
    from slmops_helpers.course.runner import course_notebooks, run_notebook
    from slmops_helpers.course.site import build_site

    artifacts = ROOT / "artifacts"
    if not any((artifacts / "notebooks" / p.name).is_file() for p in course_notebooks(ROOT)):
        notebook = ROOT / "notebooks" / "01_introduction.ipynb"
        run_notebook(notebook, artifacts / "notebooks" / notebook.name, {"profile": "smoke"})
    start = time.perf_counter()
    index = build_site(ROOT, artifacts, run_missing=False)
    print(f"site rendered in {time.perf_counter() - start:.1f} s")
    return index


def _file_path(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))


def test_site_needs_no_network(site):
    pages = sorted(site.parent.rglob("*.html"))
    assert len(pages) >= 2, f"the site has only {pages}"
    for page in pages:
        found = EXTERNAL_RESOURCE.search(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(site.parent)} loads {found.group(0)!r} from the network"


def crawl(browser, index: Path, screenshots: Path | None = None) -> tuple[set[str], list[str], set[str]]:
    """Open ``index`` and every page it links to, transitively, within its folder.

    Returns (pages visited, problems, external links). Problems: a broken link or one that
    leaves the folder, a fragment with no target, an image that did not decode, an error
    in the console (a failed resource load is one too).
    """
    root = index.parent
    browser.get_log("browser")  # start from an empty console
    queue: list[tuple[str, str]] = [(index.as_uri(), "(start)")]
    seen: set[str] = set()
    problems: list[str] = []
    external: set[str] = set()
    while queue:
        url, referrer = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        path = _file_path(url)
        if not path.is_file():
            problems.append(f"broken link to {url} on {referrer}")
            continue
        if not path.is_relative_to(root):
            problems.append(f"{referrer} links out of the site folder, to {url}")
            continue
        name = path.relative_to(root)
        browser.get(url)
        deadline = time.monotonic() + 30
        while browser.execute_script("return document.readyState") != "complete" and time.monotonic() < deadline:
            time.sleep(0.2)
        if browser.current_url.startswith("chrome-error:"):
            problems.append(f"{name} did not load (linked from {referrer})")
            continue
        images = browser.execute_script(
            "return [...document.images].map(i => [i.complete && i.naturalWidth > 0, i.src.slice(0, 60)])"
        )
        problems += [f"{name}: image {src!r} is missing or broken" for ok, src in images if not ok]
        problems += [f"{name}: console: {e['message']}" for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        links = browser.execute_script(
            "return [...document.querySelectorAll('a[href]')].map(a => [a.getAttribute('href'), a.href])"
        )
        for raw, absolute in links:
            if raw.startswith("#"):
                if not browser.execute_script(FRAGMENT_TARGET_JS, raw[1:]):
                    problems.append(f"{name}: link {raw!r} points to no element on the page")
            elif absolute.startswith("file:"):
                queue.append((absolute.split("#")[0], str(name)))
            else:
                external.add(absolute)  # not followed: the site must work offline
        print(f"{name}: {len(images)} images, {len(links)} links")
        if screenshots is not None and name.name == "index.html":
            browser.save_screenshot(str(screenshots / "site_index.png"))
        elif screenshots is not None and name.parts[0] == "notebooks" and name.name.startswith("01_"):
            for shot, selector in (("plot", ".jp-OutputArea-output img"), ("widget", ".site-widget-note")):
                found = browser.find_elements("css selector", selector)
                if found:
                    browser.execute_script("arguments[0].scrollIntoView({block: 'start'});", found[0])
                    time.sleep(0.5)
                    browser.save_screenshot(str(screenshots / f"site_01_introduction_{shot}.png"))
    return {_file_path(u).as_posix() for u in seen}, problems, external


def test_site_links_images_and_console_are_clean(browser, site, screenshots):
    pages, problems, external = crawl(browser, site, screenshots)
    if external:
        print(f"external links (not followed): {sorted(external)}")
    assert any("/notebooks/" in p for p in pages), f"the index links to no notebook page: {sorted(pages)}"
    assert not problems, "\n".join(problems)


def test_crawl_catches_broken_links_images_and_console_errors(browser, tmp_path):
    """The checker itself: a tiny site with one of each fault."""
    (tmp_path / "index.html").write_text(
        '<a href="good.html">ok</a> <a href="missing.html">broken</a> <a href="#nowhere">anchor</a>'
    )
    (tmp_path / "good.html").write_text('<img src="absent.png"><script>console.error("boom")</script>')
    pages, problems, _ = crawl(browser, tmp_path / "index.html")
    text = "\n".join(problems)
    assert "broken link to" in text and "missing.html" in text
    assert "'#nowhere' points to no element" in text
    assert "good.html: image" in text
    assert "boom" in text
