"""The book build is a test: every chapter executes (book profile: replay of the committed stores) and
Sphinx reports no warning (`-W -n --keep-going`, as QuantEcon's lectures do)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) is None,
                    reason="jupyter-book is not installed (pip install -e '.[dev]')")
def test_book_builds_without_warnings():
    exe = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(exe), "build", str(ROOT), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    # Sphinx/MyST warnings (``-W`` already turns them into errors; this names them). ipykernel's notice
    # "[IPKernelApp] WARNING | Kernel is running over TCP..." is the kernel's log, not the book's.
    warnings = [ln for ln in log.splitlines() if "WARNING" in ln and not ln.lstrip().startswith("[IPKernelApp]")]
    assert not warnings, warnings[:20]
    html = ROOT / "_build" / "html"
    for page in ["book/intro.html", "notebooks/01_data_tour.html", "notebooks/02_reanalysis.html",
                 "notebooks/03_open_models.html", "notebooks/04_finetuning.html"]:
        assert (html / page).is_file(), f"{page} was not rendered"
    tour = (html / "notebooks/01_data_tour.html").read_text()
    assert "<img" in tour, "the data tour rendered without its figure"
