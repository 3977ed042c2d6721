"""The book build is a test: every chapter executes (book profile: replay of the committed stores) and
Sphinx reports no warning (`-W -n --keep-going`, as QuantEcon's lectures do).

:func:`build_book` runs the build once per pytest session: ``tests/test_browser.py`` then opens the pages
this build wrote, so the browser never checks a stale book.

The conventions every chapter keeps, the ones still to come included (issue 17), are checked on the
notebooks themselves: an opening "In this chapter" block with objectives and run times, 3-5 exercises at
the end with collapsed answers, and every figure glued into a numbered ``{glue:figure}`` with a caption.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
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
                 "notebooks/04_finetuning.html", "notebooks/05_numerical_bias.html",
                 "notebooks/06_self_judge.html", "book/glossary.html"]:
        assert (book.html / page).is_file(), f"{page} was not rendered"
    tour = (book.html / "notebooks/01_data_tour.html").read_text()
    assert "<img" in tour, "the data tour rendered without its figure"
    # Offline math: the pages load the MathJax that scripts/install.sh unpacked, never a CDN's.
    assert (book.html / "_static/mathjax/tex-mml-chtml.js").is_file(), \
        "the book has no local MathJax: run scripts/install.sh (book/_static/mathjax)"
    assert "cdn.jsdelivr.net" not in (book.html / "notebooks/02_reanalysis.html").read_text()


# --- conventions every chapter keeps (issue 17), checked on the notebooks without building ------------------

def chapter_notebooks() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for c in toc.get("chapters", [])] + [
        c["file"] for part in toc.get("parts") or [] for c in part.get("chapters", [])]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").is_file()]


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_opens_with_objectives_and_run_times_and_ends_with_exercises(nb):
    cells = json.loads(nb.read_text())["cells"]
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    opening = next((m for m in markdown[:3] if ":::{admonition} In this chapter" in m), None)
    assert opening is not None, f"{nb.name}: no 'In this chapter' admonition among its first cells"
    assert "**You will learn**" in opening and "**Run time**" in opening, f"{nb.name}: objectives or run time missing"
    last = markdown[-1]
    assert last.startswith("## Exercises"), f"{nb.name}: the last cell is not the exercises"
    questions = re.findall(r"^\d+\. ", last, re.M)
    answers = last.count(":class: dropdown")
    assert 3 <= len(questions) <= 5, f"{nb.name}: {len(questions)} exercises (3-5 wanted)"
    assert answers == len(questions), f"{nb.name}: {len(questions)} exercises but {answers} collapsed answers"


@pytest.mark.parametrize("nb", chapter_notebooks(), ids=lambda p: p.stem)
def test_every_figure_is_numbered_with_a_caption(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    keys = re.findall(r'\bfigure\(f?"(fig-[^"]+)"', code)
    # a key made per dataset in a loop (f"fig-om-rs-{ds}") stands for one figure per dataset
    glued = {k.replace("{ds}", ds) for k in keys for ds in ("xsum", "cnn")}
    captioned = set(re.findall(r"```\{glue:figure\} (fig-[\w-]+)\n:name: \1\n\n\S", markdown))
    assert glued == captioned, f"{nb.name}: glued {sorted(glued - captioned)} without a caption, " \
                               f"captions {sorted(captioned - glued)} without a figure"
    assert "plt.show()" not in code, f"{nb.name}: a figure shown with plt.show() gets no number or caption"
