"""Selective instruction following (issue 19, item 6): accept an instruction when the judge's predicted
quality of the answer is high enough, decline it otherwise.

The curves themselves (accept by predicted score, highest first; the oracle; random acceptance's exact
expected curve; the area) are :mod:`.evaluation`'s (:func:`~.evaluation.selective_curve` and friends). This
module adds what the chapter reports beside them: per-method summaries with bootstrap intervals over the
answers, and the mean quality at a few coverages.

Two settings. On the GPT-4-scored set the quality is the mean GPT-4 score. On the policy's own held-out
answers no strong judge is available offline, so the quality is a **proxy**: the reference-based
self-evaluation by the strongest zoo judge (named in the table), and the predictor being judged must not be
that same score (a predictor scored against itself is the oracle).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from judgelab.experiments.self_judge.evaluation import selective_curve, selective_summary
from judgelab.stats import LEVEL, N_RESAMPLES, SEED

COVERAGES: tuple[float, ...] = (0.2, 0.5, 0.8)


def quality_at(predicted, quality, coverages: Sequence[float] = COVERAGES) -> dict[float, float]:
    """Mean quality of the accepted answers when a share ``c`` of them is accepted (the first ``ceil(c n)``
    by predicted score; ties in expectation, as :func:`~.evaluation.selective_curve`)."""
    curve = selective_curve(predicted, quality)
    n = len(curve)
    out = {}
    for c in coverages:
        if not 0 < c <= 1:
            raise ValueError(f"coverage must lie in (0, 1], got {c}")
        k = int(np.ceil(c * n - 1e-9))
        out[c] = float(curve["mean_quality"].iloc[k - 1])
    return out


def area_interval(predicted, quality, *, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                  seed: int = SEED) -> dict[str, float]:
    """Bootstrap percentile intervals (answers resampled) of the area and of the normalised area
    (:func:`~.evaluation.selective_summary`); unscored answers are left out first, as there."""
    p, q = np.asarray(predicted, dtype=float), np.asarray(quality, dtype=float)
    keep = np.isfinite(p)
    p, q = p[keep], q[keep]
    rng = np.random.default_rng(seed)
    areas, norms = [], []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(p), len(p))
        s = selective_summary(p[idx], q[idx])
        areas.append(s["area"])
        norms.append(s["normalised"])
    a = (1 - level) / 2
    lo, hi = np.nanquantile(areas, [a, 1 - a])
    nlo, nhi = np.nanquantile(norms, [a, 1 - a]) if np.isfinite(norms).any() else (np.nan, np.nan)
    return {"area_low": float(lo), "area_high": float(hi), "normalised_low": float(nlo),
            "normalised_high": float(nhi)}


def selective_summaries(df: pd.DataFrame, methods: Sequence[str], quality: str = "gpt4_mean", *,
                        coverages: Sequence[float] = COVERAGES, n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """One row per method: areas (method, oracle, random), the normalised area with intervals, the mean
    quality at each coverage (``quality_at_<c>``), ``n`` and ``n_unscored``."""
    rows = []
    for m in methods:
        for col in (m, quality):
            if col not in df.columns:
                raise ValueError(f"no column {col!r} (columns: {list(df.columns)})")
        p, q = df[m].to_numpy(dtype=float), df[quality].to_numpy(dtype=float)
        s = selective_summary(p, q)
        keep = np.isfinite(p)
        at = quality_at(p[keep], q[keep], coverages)
        rows.append({"method": m, **s, **area_interval(p, q, n_resamples=n_resamples),
                     **{f"quality_at_{c:g}": v for c, v in at.items()}})
    return pd.DataFrame(rows)
