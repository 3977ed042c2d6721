"""Run a chapter where it was opened: on a fresh Colab, bring the committed results of the installed commit.

Every chapter's first code cell installs judgelab when it is missing (``pip install "judgelab @ git+..."``)
and then calls :func:`setup`. The ``book`` profile replays the call stores under ``results/``, which a pip
install does not ship (they are data, not package files), and chapter 3 reads the committed throughput
measurements in every profile. :func:`setup` therefore makes ``results/`` available, from *the commit the
package was installed from*:

* pip records that commit in the installed distribution (``direct_url.json``, PEP 610): for
  ``git+https://...@main`` it is the commit ``main`` pointed to at install time. :func:`setup` fetches that
  one commit (``git fetch --depth 1 URL COMMIT``) into ``./judgelab`` and points
  :func:`judgelab.paths.project_root` at it (``$JUDGELAB_ROOT``). Code and replayed results are then of
  one commit, and git's object hashes vouch for every byte: the checkout is verified to be that commit.
* installed from a local directory (``pip install -e .`` in a clone) it uses that directory;
* where the results are already found (a clone, as when the book is built) it does nothing.

Anything else (a wheel or sdist from an index, which records no commit) is refused with a message that
says how to install instead: replaying results of an unknown commit against this code could mislead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from judgelab.paths import project_root

#: where the chapters' install cell installs from (``@main``: the branch the launch buttons open)
REPOSITORY = "https://github.com/judgelab/judgelab"
INSTALL = f"judgelab @ git+{REPOSITORY}@main"


class ColabSetupError(RuntimeError):
    """The committed results cannot be brought: the message says why and what to do."""


@dataclass(frozen=True)
class Source:
    """Where the installed judgelab came from (pip's PEP 610 record)."""

    url: str
    #: the git commit pip installed (``vcs_info.commit_id``); None for a local directory
    commit: str | None = None
    #: a local source directory (``dir_info``: ``pip install [-e] DIR``)
    directory: Path | None = None


def installed_source(dist: str = "judgelab") -> Source | None:
    """The installed distribution's origin, from ``direct_url.json``; None if pip recorded none."""
    try:
        raw = metadata.distribution(dist).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not raw:
        return None
    info = json.loads(raw)
    url = info.get("url", "")
    if "vcs_info" in info and info["vcs_info"].get("vcs") == "git":
        return Source(url=url, commit=info["vcs_info"]["commit_id"])
    if "dir_info" in info and url.startswith("file:"):
        return Source(url=url, directory=Path(unquote(urlsplit(url).path)))
    return Source(url=url)


def on_colab() -> bool:
    return "google.colab" in sys.modules


def _git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ColabSetupError(f"git {' '.join(args)} failed in {cwd}:\n{proc.stderr.strip()}")
    return proc.stdout.strip()


def fetch_commit(url: str, commit: str, dest: Path) -> Path:
    """Check out exactly ``commit`` of the git repository ``url`` into ``dest`` (depth 1), verified.

    A ``dest`` that already holds that commit is reused (re-running the cell costs nothing); one that holds
    another commit is refused rather than silently mixed with this code.
    """
    dest = Path(dest)
    if (dest / ".git").is_dir():
        head = _git("rev-parse", "HEAD", cwd=dest)
        if head != commit:
            raise ColabSetupError(f"{dest} holds commit {head[:12]}, but judgelab was installed from "
                                  f"{commit[:12]}: remove {dest} or pass another target")
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    _git("init", "-q", cwd=dest)
    _git("fetch", "-q", "--depth", "1", url, commit, cwd=dest)
    _git("checkout", "-q", "FETCH_HEAD", cwd=dest)
    head = _git("rev-parse", "HEAD", cwd=dest)
    if head != commit:  # pragma: no cover - git fetched what was asked or failed above
        raise ColabSetupError(f"fetched {head} from {url}, expected {commit}")
    return dest


def setup(results: bool = True, *, target: str | Path | None = None) -> Path:
    """Make the committed ``results/`` of the installed judgelab's commit available; return the project root.

    A no-op (returns :func:`~judgelab.paths.project_root`) where ``results/`` is already found -- in a clone,
    as when the book is built -- or when ``results`` is False. Otherwise (a fresh Colab) fetches the
    installed commit into ``target`` (default ``./judgelab``) and sets ``$JUDGELAB_ROOT`` to it, so every
    chapter reads and writes ``results/`` there.
    """
    root = project_root()
    if not results or (root / "results").is_dir():
        return root
    source = installed_source()
    if source is None:
        raise ColabSetupError(f"judgelab is not installed (or pip kept no record of where from): "
                              f'!pip install "{INSTALL}"')
    if source.directory is not None:
        if not (source.directory / "results").is_dir():
            raise ColabSetupError(f"judgelab was installed from {source.directory}, which has no results/")
        dest = source.directory
    elif source.commit is not None:
        dest = fetch_commit(source.url, source.commit, Path(target) if target else Path.cwd() / "judgelab")
        if not (dest / "results").is_dir():
            raise ColabSetupError(f"commit {source.commit[:12]} of {source.url} has no results/")
    else:
        raise ColabSetupError(
            f"judgelab was installed from {source.url or 'a package index'}, which records no commit, so the "
            f"committed results that match this code cannot be found. Install from git instead: "
            f'!pip install "{INSTALL}"')
    os.environ["JUDGELAB_ROOT"] = str(dest)
    where = f"commit {source.commit[:12]} of {source.url}" if source.commit else str(dest)
    print(f"judgelab: replaying the committed results of {where} (in {dest}/results)")
    return dest
