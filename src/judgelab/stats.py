"""Small, generic statistics used across the book: table in, table (or small record) out.

Why a module of its own: every chapter reports means with confidence intervals, rank agreement and
linear trends, and every one of them must do it the same way (same resampling unit, same seed, same
interval type) so that numbers in different chapters are comparable and re-running a notebook
reproduces its tables exactly.

Conventions
-----------
* Confidence level 95 % unless told otherwise.
* Bootstrap intervals resample *clusters* (for the summarisation experiments: articles), not rows.
  Several rows that share an article (one per comparison source) are not independent: the same
  article can be easy or hard for every comparison. Resampling rows would pretend we have four
  times as much evidence as we do and give intervals that are too narrow.
* A fixed seed (``SEED``) makes every interval reproducible bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as _st

SEED = 20240419  # arXiv date of Panickssery et al.; any fixed value would do
N_RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval."""

    estimate: float
    low: float
    high: float
    n: int


def bootstrap_mean(
    values,
    clusters=None,
    *,
    level: float = LEVEL,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """Mean of ``values`` with a percentile bootstrap CI that resamples whole clusters.

    ``clusters`` gives, per value, the unit that was sampled independently (an article id). Without
    it every value is its own cluster, which is the ordinary bootstrap. The statistic on each resample
    is the pooled mean ``sum(values) / count`` of the drawn clusters, so with unequal cluster sizes the
    point estimate is still the plain mean of all values. Non-finite values (NaN, inf) are dropped first and
    ``Interval.n`` counts what is left.

    Percentile intervals are used (not BCa) because they are fast, never fail on degenerate data (all
    values equal gives the interval ``[m, m]``) and are accurate enough for means of ~1000 articles.
    """
    v = np.asarray(values, dtype=float)
    c = np.arange(len(v)) if clusters is None else np.asarray(clusters)
    if len(c) != len(v):
        raise ValueError("values and clusters must have the same length")
    keep = np.isfinite(v)  # NaN (and an infinity that slipped through) is no value to average
    v, c = v[keep], c[keep]
    if len(v) == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    codes, uniques = pd.factorize(c)
    sums = np.bincount(codes, weights=v, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques)).astype(float)
    estimate = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(uniques), size=(n_resamples, len(uniques)))
    boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    # Floating-point summation order can put a degenerate interval a hair beside the estimate.
    low, high = min(float(low), estimate), max(float(high), estimate)
    return Interval(estimate, low, high, int(len(v)))


def bootstrap_mean_table(
    df: pd.DataFrame,
    value_cols,
    by,
    cluster: str | None = "key",
    **kwargs,
) -> pd.DataFrame:
    """Per group of ``by``: ``n`` and, per value column, mean with ``_low``/``_high`` bootstrap bounds.

    Table in, table out: one row per group, columns ``*by, n, col, col_low, col_high, ...``.
    ``cluster`` names the column whose values are resampled as units (``None``: rows).

    ``n`` counts the values that were averaged, not the rows of the group: NaN (an invalid or missing
    answer) is left out of the mean and out of ``n``. Where the value columns of some group have different
    counts (one measure's answer was invalid, the other's was not), ``n`` is the smallest and the table
    gains an ``n_<col>`` column per value column, so that every mean's count is on record.
    """
    if isinstance(value_cols, str):
        value_cols = [value_cols]
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for keys, g in df.groupby(by, sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys))
        row["n"] = 0
        counts = {}
        for col in value_cols:
            iv = bootstrap_mean(g[col], None if cluster is None else g[cluster], **kwargs)
            row[col], row[f"{col}_low"], row[f"{col}_high"] = iv.estimate, iv.low, iv.high
            counts[f"n_{col}"] = iv.n
        row["n"] = min(counts.values())
        rows.append((row, counts))
    differ = any(len(set(c.values())) > 1 for _, c in rows)
    out = pd.DataFrame([{**row, **counts} if differ else row for row, counts in rows])
    if out.empty:
        return pd.DataFrame(columns=[*by, "n", *(c + s for c in value_cols for s in ("", "_low", "_high"))])
    return out


def kendall_tau(x, y) -> dict[str, float]:
    """Kendall's tau-b between two paired samples, with its p-value and the number of pairs.

    Why Kendall rather than Pearson for item-level agreement: the per-item scores are probabilities
    squashed near 0 and 1, so a rank statistic is not dominated by a few extreme items, and tau-b
    handles the many ties that saturated probabilities produce.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    res = _st.kendalltau(x[keep], y[keep])
    return {"tau": float(res.statistic), "p_value": float(res.pvalue), "n": int(keep.sum())}


def kendall_tau_table(df: pd.DataFrame, x: str, y: str, by) -> pd.DataFrame:
    """Kendall tau between columns ``x`` and ``y`` within each group of ``by`` (table in, table out)."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for keys, g in df.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append({**dict(zip(by, keys)), **kendall_tau(g[x], g[y])})
    return pd.DataFrame(rows)


def pearson(x, y, level: float = LEVEL) -> dict[str, float]:
    """Pearson r with its confidence interval (Fisher z, from scipy) and p-value.

    Why report the interval: with a dozen points (the fine-tuning variants) an r of 0.8 is compatible
    with a wide range of true correlations; the interval makes that visible.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    res = _st.pearsonr(x[keep], y[keep])
    ci = res.confidence_interval(confidence_level=level)
    return {"r": float(res.statistic), "r_low": float(ci.low), "r_high": float(ci.high),
            "p_value": float(res.pvalue), "n": int(keep.sum())}


def linear_fit(x, y) -> dict[str, float]:
    """Least-squares line ``y = intercept + slope * x`` with the slope's standard error and r².

    Used to draw the trend on scatter plots and to state how much y moves per unit of x.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    res = _st.linregress(x[keep], y[keep])
    return {"slope": float(res.slope), "intercept": float(res.intercept), "slope_se": float(res.stderr),
            "r2": float(res.rvalue**2), "p_value": float(res.pvalue), "n": int(keep.sum())}
