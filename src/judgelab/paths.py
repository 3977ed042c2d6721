"""Where the project's committed results live, wherever a notebook or command runs from.

Notebooks execute with the working directory ``notebooks/``, the CLI usually from the repository root,
and a user's script from anywhere inside a clone. :func:`project_root` finds the clone (the nearest
directory up from the working directory holding ``pyproject.toml`` and ``results/``), or takes
``$JUDGELAB_ROOT``; outside a clone it is the working directory, so new runs land in ``./results``.

Everything the project writes there (tables, adapters) is written atomically -- to a temporary name beside
the target, then renamed over it (:func:`atomic_write`, :func:`write_csv`, :func:`replace_dir`) -- so that a
full disk or a killed run leaves the previous file or none, never a truncated one under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def project_root() -> Path:
    env = os.environ.get("JUDGELAB_ROOT")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for base in [here, *here.parents]:
        if (base / "pyproject.toml").is_file() and (base / "results").is_dir():
            return base
    return here


def results_path(*parts: str) -> Path:
    """``<project root>/results/<parts...>``."""
    return project_root().joinpath("results", *parts)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path`` in one step.

    A table or record is either the old file or the complete new one, never a truncated mix: on a full disk
    or a kill mid-write the temporary file is removed (or, after ``kill -9``, left as ``.<name>.*.tmp``)
    and ``path`` is untouched. The data is flushed and fsynced before :func:`os.replace`, which is atomic on
    POSIX and Windows when both names are on one file system (hence: beside ``path``, not in /tmp).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a results file keeps the mode it had, or gets 0644
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write one results table atomically, in the one CSV format every results table uses.

    Six significant digits: enough for every reported mean and interval, and small, stable diffs when a
    table is regenerated.
    """
    path = Path(path)
    try:
        with atomic_write(path, newline="", encoding="utf-8") as fh:
            table.to_csv(fh, index=False, float_format="%.6g")
    except OSError as err:
        raise OSError(err.errno, f"could not write table {path}: {err.strerror or err}") from err
    return path


def write_csvs(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table to ``out_dir/<file name>`` with :func:`write_csv` (each one atomically).

    Returns the written paths keyed by file name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {name: write_csv(table, out / name) for name, table in tables.items()}


def replace_dir(tmp: str | Path, path: str | Path) -> None:
    """Put the finished directory ``tmp`` at ``path``, replacing whatever was there, without a moment where
    ``path`` holds a partial directory: the old one is first renamed aside, then ``tmp`` renamed in, then
    the old one removed. (A directory cannot be swapped with :func:`os.replace` when the target is not
    empty.) A crash between the two renames leaves no ``path`` -- read as "not done", never as half done.
    """
    tmp, path = Path(tmp), Path(path)
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: str | Path, block: int = 16 << 20) -> str:
    """sha256 of a file's bytes, read in blocks (weights and adapters are too large to read at once)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)
    return h.hexdigest()
