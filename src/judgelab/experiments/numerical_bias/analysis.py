"""Numerical bias, measured: tables in, tables out.

Sato et al. (2026) call a judge *numerically biased* when its scores pile up on a few values, and measure
it by the excess (Fisher) kurtosis of the items' scores over a dataset; performance is the Pearson r of the
scores with the human gold. We add what those two numbers hide: the share of items on the modal score (a
judge that gives 8 to 90 % of items has a huge kurtosis and a tiny usable range) and the valid rate (an
answer that is not a number is no score; the paper drops those samples, so a judge can look unbiased on the
few items it answered). Each comes with a 95 % percentile bootstrap interval that resamples *items*
(:func:`bootstrap_statistics`), with the book's seed and resample count (:mod:`judgelab.stats`), so that
intervals are reproducible bit for bit and comparable with the other chapters'.

Kurtosis is the biased (population-moment) estimator, :func:`scipy.stats.kurtosis`'s default: it is the one
that reproduces the paper's gold values (En-De 1.48, Ne-En 0.97, Si-En -0.72; see
:mod:`judgelab.data.numerical_bias`).

:func:`fit_calibration` is the paper's second mitigation, distribution calibration after Jiang et al.
(2023), as second-hand summaries describe it: estimate the judge's marginal score distribution p(y) from
many samples, fit a smooth Beta target q(y) on the range, and score an item by the weighted mean of its
draws with weights proportional to q(y_i) / p(y_i) -- scores the judge over-uses count less.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

from judgelab.stats import LEVEL, N_RESAMPLES, SEED

# --- statistics of one set of item scores ---------------------------------------------------------------------


def excess_kurtosis(values) -> float:
    """Fisher (excess) kurtosis, biased estimator, of the finite values; NaN with fewer than 4 values or none
    distinct (the fourth moment over a zero variance is undefined, not large)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 4 or np.ptp(v) == 0:
        return float("nan")
    return float(_st.kurtosis(v, fisher=True, bias=True))


def pearson_r(scores, gold) -> float:
    """Pearson r over the items where both are finite; NaN when fewer than 3 or either side is constant."""
    x, y = np.asarray(scores, dtype=float), np.asarray(gold, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"scores and gold differ in length: {x.shape} vs {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(_st.pearsonr(x, y).statistic)


def modal_share(values, decimals: int = 6) -> tuple[float, float]:
    """The most common score (rounded to ``decimals`` to merge float noise such as 7.999999) and the share of
    the finite values that equal it: ``(score, share)``; ``(nan, nan)`` when there are none. Ties go to the
    smallest score."""
    v = np.asarray(values, dtype=float)
    v = np.round(v[np.isfinite(v)], decimals)
    if len(v) == 0:
        return float("nan"), float("nan")
    uniq, counts = np.unique(v, return_counts=True)
    k = int(np.argmax(counts))
    return float(uniq[k]), float(counts[k] / len(v))


def valid_rate(n_valid, n_samples) -> float:
    """Pooled share of valid samples: ``sum(n_valid) / sum(n_samples)`` (NaN when there are no samples)."""
    nv, ns = np.asarray(n_valid, dtype=float), np.asarray(n_samples, dtype=float)
    if nv.shape != ns.shape:
        raise ValueError(f"n_valid and n_samples differ in length: {nv.shape} vs {ns.shape}")
    if np.any(nv < 0) or np.any(nv > ns):
        raise ValueError("n_valid must lie between 0 and n_samples for every item")
    total = ns.sum()
    return float(nv.sum() / total) if total > 0 else float("nan")


# --- bootstrap over items -------------------------------------------------------------------------------------


def bootstrap_statistics(
    table: pd.DataFrame,
    statistics: dict[str, Callable[[pd.DataFrame], float]],
    *,
    cluster: str | None = None,
    level: float = LEVEL,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Each statistic of ``table`` with a percentile bootstrap interval; all statistics share the resamples.

    Generic (any function of a table) and therefore a plain loop; :func:`bias_table` computes its four
    statistics on the same resamples vectorised.

    ``cluster`` names the column of the independently sampled unit (an item, when the rows are single
    samples); ``None``: each row is its own unit. Resamples draw units with replacement, as
    :func:`judgelab.stats.bootstrap_mean` does (same seed, same count), and a statistic sees every row of the
    drawn units. A resample on which a statistic is undefined (NaN: e.g. every drawn score equal) is left
    out of its interval, and counted: ``<name>_undefined``. Returns ``{name, name_low, name_high,
    name_undefined, ..., "units": n}``.
    """
    if cluster is None:
        codes, n_units = np.arange(len(table)), len(table)
    else:
        codes, uniques = pd.factorize(table[cluster])
        n_units = len(uniques)
    rows_of = [np.flatnonzero(codes == u) for u in range(n_units)] if cluster is not None else None
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_resamples, n_units)) if n_units else np.zeros((0, 0), int)
    estimates = {name: float(f(table)) for name, f in statistics.items()}
    boot = {name: np.empty(len(draws)) for name in statistics}
    for b, drawn in enumerate(draws):
        idx = drawn if rows_of is None else np.concatenate([rows_of[u] for u in drawn])
        sample = table.iloc[idx]
        for name, f in statistics.items():
            boot[name][b] = f(sample)
    return {"units": int(n_units), **_intervals(estimates, boot, level)}


def bias_table(
    df: pd.DataFrame,
    *,
    by: Sequence[str] = (),
    score: str = "score",
    gold: str | None = "gold",
    n_valid: str | None = "n_valid",
    n_samples: str | None = "n_samples",
    cluster: str | None = None,
    level: float = LEVEL,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """Per group of ``by``: numerical bias and agreement with the gold, each with its bootstrap interval.

    One row per item (or, with ``cluster``, per sample with its item in ``cluster``: the kurtosis of single
    samples). Columns: ``*by, n_items`` (units), ``n_scored`` (rows with a finite score: items with no valid
    sample have none and are left out of the statistics, not scored as anything), ``kurtosis``, ``pearson_r``
    (when ``gold`` is given), ``modal_score``, ``modal_share``, ``valid_rate`` (when the count columns are
    given), each statistic with ``_low``, ``_high`` and ``_undefined`` (resamples where it was undefined).
    For a table of gold scores alone: ``score="gold", gold=None, n_valid=None, n_samples=None``.
    """
    by = list(by)
    if (n_valid is None) != (n_samples is None):
        raise ValueError("give both n_valid and n_samples, or neither (None: a table without sample counts)")
    missing = [c for c in [*by, score, gold, n_valid, n_samples, cluster] if c is not None and c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the table (has {list(df.columns)}); pass n_valid=None, "
                       "n_samples=None or gold=None for a table without them")
    use_counts = n_valid is not None

    groups = df.groupby(by, sort=False, dropna=False) if by else [((), df)]
    rows = []
    for keys, g in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        x = g[score].to_numpy(dtype=float)
        row: dict[str, Any] = dict(zip(by, keys))
        units = np.arange(len(g)) if cluster is None else pd.factorize(g[cluster])[0]
        n_units = int(units.max()) + 1 if len(units) else 0
        row["n_items"] = n_units
        row["n_scored"] = int(np.isfinite(x).sum())
        mode, share = modal_share(x)
        row["modal_score"] = mode
        estimates = {"kurtosis": excess_kurtosis(x)}
        cols = {"x": x}
        if gold is not None:
            cols["y"] = g[gold].to_numpy(dtype=float)
            estimates["pearson_r"] = pearson_r(x, cols["y"])
        estimates["modal_share"] = share
        if use_counts:
            cols["nv"], cols["ns"] = g[n_valid].to_numpy(dtype=float), g[n_samples].to_numpy(dtype=float)
            estimates["valid_rate"] = valid_rate(cols["nv"], cols["ns"])
        boot = _weighted_resamples(cols, units, n_units, n_resamples=n_resamples, seed=seed)
        row.update(_intervals(estimates, boot, level))
        rows.append(row)
    return pd.DataFrame(rows)


def _intervals(estimates: dict[str, float], boot: dict[str, np.ndarray], level: float) -> dict[str, Any]:
    alpha = (1 - level) / 2
    out: dict[str, Any] = {}
    for name, est in estimates.items():
        b = boot.get(name, np.array([]))
        vals = b[np.isfinite(b)]
        if len(vals) == 0 or not np.isfinite(est):
            low = high = float("nan")
        else:
            low, high = (float(q) for q in np.quantile(vals, [alpha, 1 - alpha]))
            low, high = min(low, est), max(high, est)  # float noise must not put a degenerate CI beside it
        out.update({name: est, f"{name}_low": low, f"{name}_high": high, f"{name}_undefined": int(len(b) - len(vals))})
    return out


def _weighted_resamples(cols: dict[str, np.ndarray], units: np.ndarray, n_units: int, *, n_resamples: int,
                        seed: int, block: int = 100) -> dict[str, np.ndarray]:
    """The bias statistics on every bootstrap resample, vectorised.

    A resample draws units with replacement exactly as :func:`bootstrap_statistics` does (same generator,
    same draws); drawing unit u c times is the same as weighting each of its rows by c, so every statistic
    is computed as its multiplicity-weighted form over all rows at once (population moments, which is what
    the statistic on the concatenated resample is). ``tests/test_numerical_bias_analysis.py`` checks the
    result against the plain loop over resamples.
    """
    if n_units == 0:
        return {}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_resamples, n_units))
    x = cols["x"]
    fx = np.isfinite(x)
    x0 = np.where(fx, x, 0.0)
    codes, uniques = pd.factorize(np.round(np.where(fx, x, np.nan), 6), use_na_sentinel=True)
    onehot = None
    if len(uniques):
        from scipy.sparse import csr_matrix

        keep = codes >= 0
        onehot = csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), codes[keep])), shape=(len(x), len(uniques)))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("kurtosis", "pearson_r", "modal_share", "valid_rate")}
    for b0 in range(0, n_resamples, block):
        d = draws[b0 : b0 + block]
        counts = np.zeros((len(d), n_units))
        np.add.at(counts, (np.repeat(np.arange(len(d)), n_units), d.ravel()), 1.0)
        w_rows = counts[:, units]  # [block, rows]: how often each row was drawn
        w = w_rows * fx
        n = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = (w * x0).sum(axis=1) / n
            dev = x0[None, :] - m[:, None]
            m2 = (w * dev**2).sum(axis=1) / n
            m4 = (w * dev**4).sum(axis=1) / n
            kurt = m4 / m2**2 - 3
            present = w > 0
            spread = np.where(present, x0, -np.inf).max(axis=1) - np.where(present, x0, np.inf).min(axis=1)
            kurt[(n < 4) | ~(spread > 0)] = np.nan
            out["kurtosis"].append(kurt)
            if "y" in cols:
                y = cols["y"]
                fy = fx & np.isfinite(y)
                y0 = np.where(fy, y, 0.0)
                wp = w_rows * fy
                npair = wp.sum(axis=1)
                mx = (wp * x0).sum(axis=1) / npair
                my = (wp * y0).sum(axis=1) / npair
                dx, dy = x0[None, :] - mx[:, None], y0[None, :] - my[:, None]
                sxy, sxx, syy = (wp * dx * dy).sum(axis=1), (wp * dx**2).sum(axis=1), (wp * dy**2).sum(axis=1)
                r = sxy / np.sqrt(sxx * syy)
                r[(npair < 3) | ~(sxx > 1e-300) | ~(syy > 1e-300)] = np.nan
                out["pearson_r"].append(np.clip(r, -1, 1))
            if onehot is not None:
                per_value = np.asarray(onehot.T.dot(w_rows.T)).T  # [block, distinct scores]
                out["modal_share"].append(per_value.max(axis=1) / n)
            else:
                out["modal_share"].append(np.full(len(d), np.nan))
            if "nv" in cols:
                out["valid_rate"].append((w_rows * cols["nv"]).sum(axis=1) / (w_rows * cols["ns"]).sum(axis=1))
    return {k: np.concatenate(v) for k, v in out.items() if v}


# --- distribution calibration (Jiang et al. 2023) -----------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Weights that pull a judge's score distribution towards a smooth target.

    ``grid``: the scores p and q are defined on (the range at ``decimals`` resolution); ``p``: the judge's
    marginal (smoothed frequencies of ``n_marginal`` samples); ``q``: the Beta target's mass per grid cell;
    ``beta``: its shape parameters (a, b) on the range rescaled to [0, 1].
    """

    score_range: tuple[int, int]
    decimals: int
    grid: np.ndarray
    p: np.ndarray
    q: np.ndarray
    beta: tuple[float, float]
    n_marginal: int

    def cell(self, values) -> np.ndarray:
        """Grid index of each value (rounded to the resolution, clipped to the range)."""
        lo, hi = self.score_range
        v = np.clip(np.asarray(values, dtype=float), lo, hi)
        return np.rint((v - lo) * 10**self.decimals).astype(int)

    def ratio(self, values) -> np.ndarray:
        """q(y) / p(y) for each value: the unnormalised weight of a draw."""
        k = self.cell(values)
        return self.q[k] / self.p[k]

    def score_items(self, samples: pd.DataFrame, *, item: str = "item", value: str = "value") -> pd.DataFrame:
        """Calibrated item scores: per item, sum_i w_i y_i over its valid draws, w_i ∝ q(y_i)/p(y_i), sum 1.

        Invalid draws (NaN value) are dropped as in the paper's mean; an item with none has no score.
        Columns: ``item, calibrated, mean`` (the plain mean of the same draws, for comparison), ``n_valid``.
        """
        s = samples[[item, value]].copy()
        s = s[np.isfinite(s[value].to_numpy(dtype=float))]
        s["w"] = self.ratio(s[value])
        s["wy"] = s["w"] * s[value]
        g = s.groupby(item, sort=True)
        out = pd.DataFrame({"calibrated": g["wy"].sum() / g["w"].sum(), "mean": g[value].mean(),
                            "n_valid": g.size()})
        every = pd.Index(pd.unique(samples[item]), name=item)
        out = out.reindex(every)
        out["n_valid"] = out["n_valid"].fillna(0).astype(int)
        return out.reset_index()


def fit_beta(values, score_range: tuple[int, int]) -> tuple[float, float]:
    """Beta(a, b) on the range rescaled to [0, 1], by the method of moments (mean and variance).

    Moments, not maximum likelihood: judge scores sit on the range's ends (0 and 10) where the Beta
    log-density is infinite, and an MLE fit would be dominated by them.
    """
    lo, hi = score_range
    v = np.asarray(values, dtype=float)
    v = (v[np.isfinite(v)] - lo) / (hi - lo)
    if len(v) < 2:
        raise ValueError(f"need at least 2 finite values to fit a Beta, got {len(v)}")
    if np.any((v < 0) | (v > 1)):
        raise ValueError(f"values outside the range {score_range}")
    m, var = float(v.mean()), float(v.var())
    if var <= 0 or var >= m * (1 - m):
        raise ValueError(f"cannot fit a Beta to mean {m:.4g} and variance {var:.4g} on [0, 1] "
                         "(all values equal, or all on the two ends)")
    common = m * (1 - m) / var - 1
    return m * common, (1 - m) * common


def fit_calibration(
    marginal_values,
    score_range: tuple[int, int],
    *,
    target_values=None,
    beta: tuple[float, float] | None = None,
    decimals: int = 0,
    alpha: float = 1.0,
) -> Calibration:
    """Fit the calibration from the judge's marginal samples (the paper: 1,000 of them).

    ``p`` is the frequency of each grid score among ``marginal_values`` with ``alpha`` added to every count
    (Laplace smoothing: a score the marginal sample never shows would otherwise get an infinite weight).
    The target q is a Beta on the range: given as ``beta``, or fitted by moments to ``target_values``
    (default: the marginal values themselves -- the same mean and spread without the spikes; the summaries
    do not say what the paper fitted it to, so the choice is the caller's and is recorded). q's mass per
    grid cell is the Beta probability of the cell (half a step either side of the score, the ends to the
    range's ends), so it is finite even where the Beta density is not.
    """
    lo, hi = score_range
    if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi):
        raise ValueError(f"score_range must be two integers lo < hi, not {score_range!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 (it keeps every weight finite), not {alpha}")
    step = 10.0**-decimals
    grid = np.round(lo + np.arange(int(round((hi - lo) / step)) + 1) * step, decimals)
    v = np.asarray(marginal_values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise ValueError("no finite marginal values to estimate p(y) from")
    if np.any((v < lo) | (v > hi)):
        raise ValueError(f"marginal values outside the range {score_range} (clip them first, as the paper does)")
    a, b = beta if beta is not None else fit_beta(v if target_values is None else target_values, score_range)
    edges = np.concatenate([[0.0], ((grid[:-1] + grid[1:]) / 2 - lo) / (hi - lo), [1.0]])
    q = np.diff(_st.beta(a, b).cdf(edges))
    cal = Calibration((lo, hi), decimals, grid, np.ones(len(grid)), q, (float(a), float(b)), len(v))
    counts = np.bincount(cal.cell(v), minlength=len(grid)).astype(float)
    p = (counts + alpha) / (counts.sum() + alpha * len(grid))
    return Calibration((lo, hi), decimals, grid, p, q, (float(a), float(b)), len(v))
