"""The rendered book as a reader's browser shows it: headless Chromium opens every page of ``_build/html``.

Sphinx's ``-W`` (``tests/test_book.py``) catches what Sphinx sees; what a reader meets is only visible after
the browser has run MathJax, loaded the images and laid out the page. For every page this test fails on

* raw TeX left in the visible text (``\\(``, ``\\[``, ``\\tfrac``...) and any ``$`` outside code: math that
  MathJax did not typeset, or Markdown whose dollars were never parsed as math;
* a math element without a MathJax rendering, a TeX error (``mjx-merror``), or MathJax not loaded at all;
* error output: a cell's stderr or traceback, a Sphinx/docutils error box, an unresolved reference;
* an image that did not load (``naturalWidth == 0``), a cell's plot shown without a numbered caption
  (every figure goes through ``judgelab.display.figure`` and a ``{glue:figure}``);
* a link to a local file or anchor that does not exist, a local file (CSS, JS, font) that failed to load;
* any request that would leave the machine: the browser context is offline and every non-``file:``
  request is aborted and reported, so the book must render with no network, MathJax included;
* an uncaught JavaScript error.

Collapsed blocks (``<details>``: exercise answers, hidden cells) are opened first, so their content is
checked too. A full-page screenshot of every page lands in ``_build/screenshots/`` (the page as checked).

The test reuses the book build of ``tests/test_book.py`` (:func:`test_book.build_book`, run once per pytest
session whichever test asks first). Chromium is Debian's (``scripts/install.sh`` installs it); without
it, or without playwright, the test is skipped locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.parse
from functools import cache
from pathlib import Path

import pytest
import yaml
from conftest import require
from test_book import ROOT, build_book

HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
MATHJAX = ROOT / "book" / "_static" / "mathjax" / "tex-mml-chtml.js"


def chromium_path() -> str | None:
    """The system Chromium: ``$CHROMIUM``, else the first of the usual names on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Every page the table of contents names, as a path under ``_build/html``, plus Sphinx's own pages."""
    spec = yaml.safe_load(toc.read_text())
    files = [spec["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(spec.get("chapters"))
    for part in spec.get("parts") or []:
        walk(part.get("chapters"))
    return [f"{Path(f).with_suffix('')}.html" for f in files] + ["genindex.html", "search.html"]


PAGES = toc_pages()

# --- what the page is asked, in the browser ----------------------------------------------------------------

#: Runs in the page after load: opens collapsed blocks, waits for MathJax and the images, and returns
#: everything the Python side judges. Text inside code (``pre``, ``code``), and MathJax's own output, is
#: not prose and is not scanned for TeX or dollars.
PAGE_PROBE = r"""
async () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const mj = window.MathJax;
  const mathjax = {loaded: !!(mj && mj.startup && mj.version), version: mj && mj.version ? mj.version : null};
  if (mathjax.loaded) { await mj.startup.promise; if (mj.typesetPromise) { await mj.typesetPromise(); } }
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));

  const skip = 'pre, code, script, style, noscript, textarea, mjx-container, .MathJax, [aria-hidden="true"]';
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip) || !node.textContent.trim()) continue;
    if (el.checkVisibility && !el.checkVisibility()) continue;
    texts.push(node.textContent);
  }
  const describe = el => (el.className ? el.tagName.toLowerCase() + '.' + String(el.className).trim().split(/\s+/).join('.')
                                        : el.tagName.toLowerCase()) + ': ' + el.textContent.trim().slice(0, 160);
  const errors = [...document.querySelectorAll(
      'div.output.stderr, div.output.traceback, div.output_error, div.system-message, .problematic, mjx-merror')]
    .map(describe);
  for (const pre of document.querySelectorAll('pre')) {
    if (pre.textContent.includes('Traceback (most recent call last)')) errors.push('traceback: ' + pre.textContent.slice(0, 160));
  }
  const math = [...document.querySelectorAll('.math')].map(el => ({
    rendered: !!el.querySelector('mjx-container'), text: el.textContent.trim().slice(0, 80)}));
  const images = [...document.images].map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
    numbered: !img.closest('.cell_output') || !!img.closest('figure')?.querySelector('figcaption .caption-number')}));
  const links = [...document.querySelectorAll('a[href]')].map(a => ({href: a.href, raw: a.getAttribute('href'),
    here: a.hash && a.href.split('#')[0] === location.href.split('#')[0]
          ? !!document.getElementById(decodeURIComponent(a.hash.slice(1))) : null}));
  return {texts, errors, math, mathjax, images, links};
}
"""

#: raw TeX as MathJax leaves it when it did not run: delimiters, or a command such as \tfrac or \text.
RAW_TEX = re.compile(r"\\[()\[\]]|\\(?:[a-zA-Z]{2,})\b")


@cache
def _ids(path: Path) -> frozenset[str]:
    text = path.read_text(errors="replace")
    return frozenset(re.findall(r'\bid="([^"]+)"', text)) | frozenset(re.findall(r'\bname="([^"]+)"', text))


def judge(probe: dict, requests: list[str], failed: list[str], page_errors: list[str]) -> dict[str, list[str]]:
    """Problems found on one page, by kind (empty lists when the page is fine)."""
    text = "\n".join(probe["texts"])
    problems: dict[str, list[str]] = {k: [] for k in (
        "raw TeX", "stray $", "math not rendered", "error output", "missing image", "broken link",
        "failed local file", "network request", "JavaScript error", "figure without number and caption")}
    for m in RAW_TEX.finditer(text):
        problems["raw TeX"].append(text[max(0, m.start() - 50): m.end() + 50].replace("\n", " "))
    for m in re.finditer(r"\$", text):
        problems["stray $"].append(text[max(0, m.start() - 50): m.end() + 50].replace("\n", " "))
    if probe["math"] and not probe["mathjax"]["loaded"]:
        problems["math not rendered"].append(f"{len(probe['math'])} math elements but MathJax did not load")
    problems["math not rendered"] += [m["text"] for m in probe["math"] if not m["rendered"]]
    problems["error output"] = list(probe["errors"])
    problems["missing image"] = [i["src"] for i in probe["images"] if not i["ok"]]
    problems["figure without number and caption"] = [i["src"] for i in probe["images"] if not i["numbered"]]
    for link in probe["links"]:
        url = urllib.parse.urlsplit(link["href"])
        if url.scheme != "file":
            continue
        target = Path(urllib.parse.unquote(url.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems["broken link"].append(f"{link['raw']} (no file {target})")
        elif url.fragment and link["here"] is False:
            problems["broken link"].append(f"{link['raw']} (no id {url.fragment!r} on this page)")
        elif url.fragment and link["here"] is None and target.suffix == ".html" \
                and urllib.parse.unquote(url.fragment) not in _ids(target):
            problems["broken link"].append(f"{link['raw']} (no id {url.fragment!r} in {target.name})")
    problems["failed local file"] = [u for u in failed if u.startswith("file:")]
    problems["network request"] = [u for u in requests if not u.startswith(("file:", "data:", "blob:", "about:"))]
    problems["JavaScript error"] = list(page_errors)
    return {k: v for k, v in problems.items() if v}


def check_page(context, url: str, screenshot: Path | None = None) -> dict[str, list[str]]:
    """Open ``url`` in a new tab of ``context`` (offline), probe it, screenshot it; problems by kind."""
    page = context.new_page()
    requests, failed, page_errors = [], [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    try:
        page.goto(url, wait_until="load")
        probe = page.evaluate(PAGE_PROBE)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    return judge(probe, requests, failed, page_errors)


def report(problems: dict[str, list[str]], limit: int = 8) -> str:
    return "\n".join(f"{kind} ({len(items)}):\n    " + "\n    ".join(items[:limit])
                     for kind, items in problems.items())


# --- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium through playwright (its own browser download needs a network)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "playwright is not installed (pip install -e '.[dev]')")
    exe = chromium_path()
    require(exe is not None, "no Chromium on PATH (scripts/install.sh installs Debian's chromium; or set $CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def offline(browser):
    """A browser context with the network off: every request that is not a local file is aborted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    context.route(re.compile(r"^(?!file:|data:|blob:|about:)"), lambda route: route.abort())
    yield context
    context.close()


@pytest.fixture(scope="module")
def book_html():
    build_book()  # shared with tests/test_book.py: the build runs once per session
    require((HTML / "index.html").is_file(), f"the book build left no {HTML / 'index.html'}")
    return HTML


# --- the checker can fail --------------------------------------------------------------------------------------

BROKEN_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>broken</title>
<script>window.MathJax = {};</script></head><body>
<p>Pairwise score <span class="math notranslate nohighlight">\\(R = \\tfrac12 x\\)</span> and a raw $S$ here.</p>
<div class="output stderr"><pre>UserWarning: something</pre></div>
<img src="missing.png" alt="gone">
<div class="cell_output"><img src="plot.png" alt="a plot shown bare, without a numbered caption"></div>
<img src="https://example.invalid/remote.png" alt="remote">
<a href="other.html">other page that is not there</a> <a href="#nowhere">an anchor that is not there</a>
<a href="https://example.invalid/">an external link (not checked)</a>
<script>throw new Error("boom");</script>
</body></html>"""


def test_checker_reports_every_kind_of_defect(offline, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(BROKEN_PAGE)
    problems = check_page(offline, page.as_uri(), screenshot=tmp_path / "broken.png")
    assert set(problems) == {"raw TeX", "stray $", "math not rendered", "error output", "missing image",
                             "broken link", "failed local file", "network request", "JavaScript error",
                             "figure without number and caption"}, report(problems)
    assert any("tfrac" in t for t in problems["raw TeX"])
    assert len(problems["stray $"]) == 2  # the two dollars of "$S$"
    assert any(s.endswith("missing.png") for s in problems["missing image"])
    assert any(r.startswith("https://example.invalid/remote.png") for r in problems["network request"])
    assert {"other.html", "#nowhere"} <= {b.split(" (")[0] for b in problems["broken link"]}
    assert any("boom" in e for e in problems["JavaScript error"])
    assert (tmp_path / "broken.png").stat().st_size > 0


def test_local_mathjax_renders_offline(offline, tmp_path):
    """The MathJax that scripts/install.sh unpacks typesets TeX with the network off (no CDN)."""
    require(MATHJAX.is_file(), f"{MATHJAX} is missing: run scripts/install.sh (it fetches MathJax from npm)")
    page = tmp_path / "math.html"
    page.write_text(f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<script>window.MathJax = {{options: {{processHtmlClass: "math", ignoreHtmlClass: "tex2jax_ignore"}}}};</script>
<script defer src="{MATHJAX.as_uri()}"></script></head><body>
<p>Inline <span class="math notranslate nohighlight">\\(R = \\tfrac12[P_\\text{{fwd}} + P_\\text{{bwd}}]\\)</span>.</p>
<div class="math notranslate nohighlight">\\[\\tau = \\frac{{n_c - n_d}}{{\\binom{{n}}{{2}}}}\\]</div>
</body></html>""")
    assert check_page(offline, page.as_uri()) == {}


# --- every page of the book --------------------------------------------------------------------------------------


def test_every_rendered_page_is_checked(book_html):
    """No page of the build escapes the browser test (a page outside the TOC would be missed)."""
    rendered = {p.relative_to(book_html).as_posix() for p in book_html.rglob("*.html")
                if not p.relative_to(book_html).parts[0].startswith("_")}
    rendered.discard("index.html")  # Jupyter Book's redirect to the root page
    assert rendered <= set(PAGES), sorted(rendered - set(PAGES))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_cleanly(page, book_html, offline):
    path = book_html / page
    assert path.is_file(), f"{page} was not rendered"
    shot = SCREENSHOTS / (page.replace("/", "__").removesuffix(".html") + ".png")
    problems = check_page(offline, path.as_uri(), screenshot=shot)
    assert not problems, f"{page} (screenshot {shot}):\n{report(problems)}"
