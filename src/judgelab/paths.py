"""Where the project's committed results live, wherever a notebook or command runs from.

Notebooks execute with the working directory ``notebooks/``, the CLI usually from the repository root,
and a user's script from anywhere inside a clone. :func:`project_root` finds the clone (the nearest
directory up from the working directory holding ``pyproject.toml`` and ``results/``), or takes
``$JUDGELAB_ROOT``; outside a clone it is the working directory, so new runs land in ``./results``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

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


def write_csvs(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write each table to ``out_dir/<file name>`` in the one CSV format every results table uses.

    Six significant digits: enough for every reported mean and interval, and small, stable diffs when a
    table is regenerated. Returns the written paths keyed by file name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in tables.items():
        paths[name] = out / name
        table.to_csv(paths[name], index=False, float_format="%.6g")
    return paths
