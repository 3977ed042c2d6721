"""The chapters' Colab path, offline: the install cell each notebook starts with, run in a fresh Python.

Colab itself cannot be reached from here, so the test rebuilds what matters about it: a Python in which
judgelab is *not* importable (a new virtual environment that sees this environment's dependencies --
torch, pandas, ... as Colab has them preinstalled -- but not judgelab), a git repository standing in for
GitHub (a local copy of the package and a small ``results/``, served over ``file://`` with GitHub's
fetch-by-commit setting), and the notebook's own first code cell, executed verbatim. Only the install
URL differs (``$JUDGELAB_INSTALL``, which the cell honours for exactly this purpose).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from judgelab import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def install_cell(nb: Path) -> str:
    """The notebook's install cell: the first code cell that calls ``colab.setup``."""
    cells = json.loads(nb.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code" and "colab.setup(" in "".join(cell["source"]):
            return "".join(cell["source"])
    raise AssertionError(f"{nb.name} has no install cell calling colab.setup()")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_installs_before_it_imports(nb):
    """A fresh Colab fails at the first ``from judgelab import``: the install cell must come first."""
    cells = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    first_import = next(i for i, s in enumerate(sources) if re.search(r"^\s*(from|import) judgelab", s, re.M))
    assert "colab.setup(" in sources[first_import], f"{nb.name}: cell {first_import} imports judgelab first"
    assert "parameters" in cells[0].get("metadata", {}).get("tags", []), f"{nb.name}: PROFILE cell is not first"
    assert install_cell(nb) == install_cell(NOTEBOOKS[0]), f"{nb.name}'s install cell differs from the others"
    assert f'"{colab.INSTALL}"' in install_cell(nb), "the cell installs something other than colab.INSTALL"


def test_setup_is_a_no_op_in_a_clone(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")  # where the book executes the chapters
    monkeypatch.delenv("JUDGELAB_ROOT", raising=False)
    assert colab.setup() == ROOT
    assert "JUDGELAB_ROOT" not in os.environ


@pytest.fixture(scope="module")
def fake_github(tmp_path_factory) -> tuple[Path, str]:
    """A git repository with judgelab's package files and a small results/ at one commit."""
    repo = tmp_path_factory.mktemp("github") / "judgelab"
    repo.mkdir()
    shutil.copy(ROOT / "pyproject.toml", repo)
    shutil.copy(ROOT / "README.md", repo)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (repo / "results" / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "results" / "benchmarks" / "judge_throughput.csv", repo / "results" / "benchmarks")
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.email", "test@example.invalid", cwd=repo)
    git("config", "user.name", "test", cwd=repo)
    git("config", "uploadpack.allowReachableSHA1InWant", "true", cwd=repo)  # as GitHub serves commits
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "fake release", cwd=repo)
    return repo, git("rev-parse", "HEAD", cwd=repo)


def fresh_python(where: Path) -> Path:
    """A venv without judgelab that sees this environment's other packages (as Colab's preinstalled ones)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = next(where.glob("lib/python*/site-packages"))
    # a plain path entry: this environment's site-packages is importable, but its .pth files (the editable
    # judgelab) are not run, so `import judgelab` fails until the cell installs it
    (site / "colab_preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = where / "bin" / "python"
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('judgelab'))"],
                           capture_output=True, text=True, check=True, cwd=where)
    assert probe.stdout.strip() == "None", f"judgelab importable in the fresh venv: {probe.stdout}"
    return py


def run_cell(py: Path, cell: str, cwd: Path, install: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGELAB_", "PYTHON", "VIRTUAL_ENV"))}
    # offline: the package's dependencies are "preinstalled"; build with this environment's setuptools
    env.update(JUDGELAB_INSTALL=install, PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    code = cell + "\nimport judgelab, judgelab.paths\nprint('ROOT', judgelab.paths.project_root())\n" \
                  "print('FILE', judgelab.__file__)\n"
    return subprocess.run([str(py), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_install_cell_on_a_fresh_python_brings_the_installed_commits_results(fake_github, tmp_path):
    repo, commit = fake_github
    py = fresh_python(tmp_path / "venv")
    content = tmp_path / "content"  # Colab's working directory
    content.mkdir()
    cell = install_cell(NOTEBOOKS[0])
    proc = run_cell(py, cell, content, install=f"judgelab @ git+{repo.as_uri()}@main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("ROOT", "FILE")))
    assert Path(out["FILE"]).is_relative_to(tmp_path / "venv"), out  # the cell installed it, from git
    assert Path(out["ROOT"]) == content / "judgelab"
    assert git("rev-parse", "HEAD", cwd=content / "judgelab") == commit
    assert (content / "judgelab/results/benchmarks/judge_throughput.csv").read_bytes() == \
        (repo / "results/benchmarks/judge_throughput.csv").read_bytes()
    assert f"commit {commit[:12]}" in proc.stdout

    # running the cell again (Colab users do) reuses the checkout and installs nothing new
    again = run_cell(py, cell, content, install="judgelab @ git+file:///nonexistent@main")
    assert again.returncode == 0, again.stdout + again.stderr


def test_fetch_refuses_a_checkout_of_another_commit(fake_github, tmp_path):
    repo, commit = fake_github
    dest = colab.fetch_commit(repo.as_uri(), commit, tmp_path / "judgelab")
    assert git("rev-parse", "HEAD", cwd=dest) == commit
    assert colab.fetch_commit(repo.as_uri(), commit, dest) == dest  # same commit: reused
    with pytest.raises(colab.ColabSetupError, match="holds commit"):
        colab.fetch_commit(repo.as_uri(), "0" * 40, dest)
    with pytest.raises(colab.ColabSetupError, match="git fetch"):
        colab.fetch_commit(repo.as_uri(), "1" * 40, tmp_path / "other")


def test_a_wheel_without_a_commit_is_refused_with_the_fix(fake_github, tmp_path):
    """A wheel (or an index release) records no commit: replaying some other commit's results is refused."""
    repo, _ = fake_github
    wheels = tmp_path / "wheels"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(repo)], check=True, env=env, capture_output=True)
    wheel = next(wheels.glob("judgelab-*.whl"))
    py = fresh_python(tmp_path / "venv")
    content = tmp_path / "content"
    content.mkdir()
    proc = run_cell(py, install_cell(NOTEBOOKS[0]), content, install=str(wheel))
    assert proc.returncode != 0
    assert "ColabSetupError" in proc.stderr and "records no commit" in proc.stderr, proc.stderr
    assert colab.INSTALL in proc.stderr  # the message says how to install instead
