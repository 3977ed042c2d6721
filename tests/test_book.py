"""The book build is a test: every chapter executes (book profile: replay of the committed stores) and
Sphinx reports no warning (`-W -n --keep-going`, as QuantEcon's lectures do).

:func:`build_book` runs the build once per pytest session: ``tests/test_browser.py`` then opens the pages
this build wrote, so the browser never checks a stale book.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from conftest import require

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"


@dataclass(frozen=True)
class BookBuild:
    returncode: int
    log: str
    html: Path


@cache
def build_book() -> BookBuild:
    """``jupyter-book build . -W -n --keep-going`` from the repository root, once per session.

    A missing jupyter-book skips the caller locally and fails it in CI (``CI=true``): there it means a
    broken install, not a machine without the tool.
    """
    require(shutil.which("jupyter-book", path=str(JUPYTER_BOOK.parent)) is not None,
            "jupyter-book is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([str(JUPYTER_BOOK), "build", str(ROOT), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    return BookBuild(proc.returncode, proc.stdout + proc.stderr, ROOT / "_build" / "html")


def test_book_builds_without_warnings():
    book = build_book()
    assert book.returncode == 0, book.log[-6000:]
    # Sphinx/MyST warnings (``-W`` already turns them into errors; this names them). ipykernel's notice
    # "[IPKernelApp] WARNING | Kernel is running over TCP..." is the kernel's log, not the book's.
    warnings = [ln for ln in book.log.splitlines()
                if "WARNING" in ln and not ln.lstrip().startswith("[IPKernelApp]")]
    assert not warnings, warnings[:20]
    for page in ["book/intro.html", "notebooks/01_data_tour.html", "notebooks/02_reanalysis.html",
                 "notebooks/02b_release_defects.html", "notebooks/03_open_models.html",
                 "notebooks/04_finetuning.html", "book/glossary.html"]:
        assert (book.html / page).is_file(), f"{page} was not rendered"
    tour = (book.html / "notebooks/01_data_tour.html").read_text()
    assert "<img" in tour, "the data tour rendered without its figure"
    # Offline math: the pages load the MathJax that scripts/install.sh unpacked, never a CDN's.
    assert (book.html / "_static/mathjax/tex-mml-chtml.js").is_file(), \
        "the book has no local MathJax: run scripts/install.sh (book/_static/mathjax)"
    assert "cdn.jsdelivr.net" not in (book.html / "notebooks/02_reanalysis.html").read_text()
