"""Evaluating quality predictors on GPT-4-scored answers: Pearson r and selective instruction following.

Tables in, tables out; no model is called here.

- :func:`pearson_by_model` -- Pearson r between a predicted score and the quality (the mean of the three
  GPT-4 scores), for each responding model and pooled over all answers, with 95 % Fisher-z intervals
  (:func:`judgelab.stats.pearson`). The paper reports r x 100 per responding model and their average; we
  add the pooled r, which also rewards telling a good *model* from a bad one. A predictor's unscored
  answers (NaN: an invalid judge answer) are left out and counted (``n_unscored``), never scored 0.
- :func:`answer_length_words` -- the baseline every judge must beat: longer answers get better GPT-4
  scores, so a "judge" that counts words already correlates.
- :func:`selective_curve` / :func:`selective_summary` -- selective instruction following: accept the
  answers with the highest predicted scores; the mean true quality of the accepted ones against the share
  accepted (coverage), its area, and the same for an oracle (accept by true quality: the best possible
  curve) and for random acceptance (its *expected* curve, exact: the mean quality at every coverage).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from judgelab.stats import LEVEL, pearson

POOLED = "pooled"


# --- Pearson r ----------------------------------------------------------------------------------------------
def _pearson_row(x: np.ndarray, y: np.ndarray, level: float) -> dict:
    keep = np.isfinite(x) & np.isfinite(y)
    n, unscored = int(keep.sum()), int((~np.isfinite(x) & np.isfinite(y)).sum())
    base = {"n": n, "n_unscored": unscored}
    nan = {"r": np.nan, "r_low": np.nan, "r_high": np.nan, "p_value": np.nan}
    if n < 4:  # the Fisher-z interval needs n > 3
        return {**nan, **base, "note": f"only {n} scored answers"}
    if np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return {**nan, **base, "note": "constant scores: r undefined"}
    res = pearson(x[keep], y[keep], level=level)
    return {**{k: res[k] for k in ("r", "r_low", "r_high", "p_value")}, **base, "note": ""}


def pearson_by_model(df: pd.DataFrame, score: str, quality: str = "gpt4_mean", by: str = "model",
                     *, level: float = LEVEL) -> pd.DataFrame:
    """Pearson r of column ``score`` with ``quality`` within each ``by`` group and pooled (``by == 'pooled'``).

    Columns: ``by``, ``r``, ``r_low``, ``r_high`` (the ``level`` interval), ``p_value``, ``n`` (scored
    answers), ``n_unscored`` (NaN scores left out), ``note`` (why r is NaN where it is: fewer than four
    scored answers, or a constant column). Groups appear in order of first appearance, pooled last.
    """
    for col in (score, quality, by):
        if col not in df.columns:
            raise ValueError(f"no column {col!r} (columns: {list(df.columns)})")
    if not np.isfinite(df[quality].to_numpy(dtype=float)).all():
        raise ValueError(f"quality column {quality!r} has missing values: the reference must be complete")
    rows = []
    for key, g in df.groupby(by, sort=False):
        rows.append({by: key, **_pearson_row(g[score].to_numpy(dtype=float), g[quality].to_numpy(dtype=float), level)})
    rows.append({by: POOLED, **_pearson_row(df[score].to_numpy(dtype=float), df[quality].to_numpy(dtype=float), level)})
    return pd.DataFrame(rows)


def pearson_table(df: pd.DataFrame, methods: Sequence[str], quality: str = "gpt4_mean", by: str = "model",
                  *, level: float = LEVEL) -> pd.DataFrame:
    """:func:`pearson_by_model` for each score column in ``methods``, stacked (column ``method``), plus the
    per-model average the paper reports (``by == 'average'``: the mean of the per-model r)."""
    parts = []
    for m in methods:
        t = pearson_by_model(df, m, quality, by, level=level)
        per_model = t[t[by] != POOLED]
        avg = {by: "average", "r": per_model["r"].mean(skipna=False), "r_low": np.nan, "r_high": np.nan,
               "p_value": np.nan, "n": int(per_model["n"].sum()), "n_unscored": int(per_model["n_unscored"].sum()),
               "note": "mean of the per-model r (the paper's Avg.); no interval"}
        parts.append(pd.concat([t, pd.DataFrame([avg])], ignore_index=True).assign(method=m))
    out = pd.concat(parts, ignore_index=True)
    return out[["method", by, "r", "r_low", "r_high", "p_value", "n", "n_unscored", "note"]]


def answer_length_words(texts: Sequence[str]) -> np.ndarray:
    """Words per answer: runs of non-white-space characters (``str.split()``), as a float array."""
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"answers at positions {bad[:5]} are not text")
    return np.array([len(t.split()) for t in texts], dtype=float)


# --- selective instruction following -------------------------------------------------------------------------
def _checked(predicted, quality) -> tuple[np.ndarray, np.ndarray, int]:
    p, q = np.asarray(predicted, dtype=float), np.asarray(quality, dtype=float)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"predicted and quality must be equally long 1-d arrays, got {p.shape} and {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("quality has missing values")
    keep = np.isfinite(p)
    if not keep.any():
        raise ValueError("no answer has a predicted score")
    return p[keep], q[keep], int((~keep).sum())


def selective_curve(predicted, quality) -> pd.DataFrame:
    """Mean quality of the accepted answers at each coverage, accepting by predicted score, highest first.

    Row ``k`` (1..n) accepts ``k`` answers: ``coverage = k/n``, ``threshold`` the lowest accepted predicted
    score, ``mean_quality`` the mean true quality of the accepted. Ties in the predicted score are broken at
    random, in expectation, exactly: where the ``k``-th acceptance falls inside a group of equally scored
    answers, each answer of the group counts with the group's mean quality, so the curve does not depend on
    the order the rows happen to be in. Answers without a predicted score (NaN) are left out (see
    :func:`selective_summary`'s ``n_unscored``).
    """
    p, q, _ = _checked(predicted, quality)
    order = np.argsort(-p, kind="stable")
    ps, qs = p[order], q[order]
    # each tie group's mean quality replaces its members' (expected value under random tie-breaking)
    groups = np.concatenate([[0], np.cumsum(ps[1:] != ps[:-1])])
    sums = np.bincount(groups, weights=qs)
    counts = np.bincount(groups)
    q_tied = (sums / counts)[groups]
    k = np.arange(1, len(qs) + 1)
    return pd.DataFrame({"k": k, "coverage": k / len(qs), "threshold": ps,
                         "mean_quality": np.cumsum(q_tied) / k})


def oracle_curve(quality) -> pd.DataFrame:
    """The best possible curve: accept by the true quality itself."""
    return selective_curve(quality, quality)


def random_curve(quality) -> pd.DataFrame:
    """The expected curve of random acceptance: a random ``k`` of ``n`` answers have mean quality equal to
    the mean of all, in expectation, at every ``k`` (exact; no sampling)."""
    q = np.asarray(quality, dtype=float)
    _checked(q, q)
    k = np.arange(1, len(q) + 1)
    return pd.DataFrame({"k": k, "coverage": k / len(q), "threshold": np.nan, "mean_quality": np.full(len(q), q.mean())})


def curve_area(curve: pd.DataFrame) -> float:
    """Area under a selective curve: the mean of ``mean_quality`` over the coverages k/n, k = 1..n.

    A right Riemann sum on the grid the curve is defined on (coverage 0 has no mean quality); random
    acceptance's area is exactly the mean quality, the oracle's the most any predictor can reach.
    """
    return float(curve["mean_quality"].mean())


def selective_summary(predicted, quality) -> dict[str, float]:
    """Areas of the predictor's, the oracle's and random acceptance's curves on the same answers, and the
    predictor's share of the oracle's gain over random: ``(area - random) / (oracle - random)`` (1: as good
    as the oracle, 0: no better than chance, NaN when every answer has the same quality). ``n`` answers
    scored, ``n_unscored`` left out for a missing predicted score (also left out of oracle and random, so
    the three curves are on the same answers)."""
    p, q, unscored = _checked(predicted, quality)
    area = curve_area(selective_curve(p, q))
    oracle = curve_area(oracle_curve(q))
    rnd = float(q.mean())
    gain = oracle - rnd
    return {"area": area, "oracle_area": oracle, "random_area": rnd,
            "normalised": (area - rnd) / gain if gain > 0 else float("nan"),
            "n": int(len(q)), "n_unscored": unscored}


def selective_table(df: pd.DataFrame, methods: Sequence[str], quality: str = "gpt4_mean") -> pd.DataFrame:
    """Long table of curves for every method in ``methods`` plus ``oracle`` and ``random`` (column
    ``method``), ready to plot. Oracle and random are on all answers; a method with unscored answers is
    on the ones it scored (compare areas with :func:`selective_summary`, which puts all three on the same)."""
    for col in (*methods, quality):
        if col not in df.columns:
            raise ValueError(f"no column {col!r} (columns: {list(df.columns)})")
    q = df[quality].to_numpy(dtype=float)
    parts = [selective_curve(df[m].to_numpy(dtype=float), q).assign(method=m) for m in methods]
    parts.append(oracle_curve(q).assign(method="oracle"))
    parts.append(random_curve(q).assign(method="random"))
    return pd.concat(parts, ignore_index=True)
