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


# --- the paper's numbers ----------------------------------------------------------------------------------------
#: Ye & Ng (2024), README of github.com/nusnlp/Self-J: Pearson r x 100 with GPT-4 scores on their 850 test
#: answers of five models, averaged over the models; (setting, method) -> r x 100. Their test set is not ours
#: (hub only): ours is Prometheus' 640 answers of four models, so the two columns are compared in kind, not cell
#: for cell.
PAPER_PEARSON: dict[tuple[str, str], float] = {
    ("with reference", "Cosine"): 48.25,
    ("with reference", "Self-eval"): 47.85,
    ("with reference", "Self-eval + Cosine"): 59.98,
    ("with reference", "GPT-3.5-turbo + Cosine"): 73.09,
    ("with reference", "Self-J"): 70.34,
    ("without reference", "Perplexity"): 11.68,
    ("without reference", "Self-eval"): 11.46,
    ("without reference", "Auto-J-13b"): 43.54,
    ("without reference", "UltraRM-13b"): 52.98,
    # the README's "Self-J 13B judge": named by what it is, not by its size, so that our 135M reference-free
    # judge, which takes this row, is not read as a 13B model
    ("without reference", "Self-J judge"): 58.65,
}
PAPER_SOURCE = "Ye & Ng 2024, README of github.com/nusnlp/Self-J (Pearson r x 100, average over five models)"


def paper_comparison(ours: pd.DataFrame, methods: dict[str, tuple[str, str]], by: str = "model") -> pd.DataFrame:
    """The paper's r x 100 beside ours, laid out like its table: one row per (setting, method).

    ``ours`` is a :func:`pearson_table`; ``methods`` maps our score column to the (setting, method name) it
    stands for; a name the paper does not have (answer length, a zoo judge) gets NaN as the paper's r. Paper rows
    we have no counterpart for are kept with NaN in our columns. Columns: ``setting``, ``method``,
    ``paper_r100``, ``ours_average_r100`` (mean of the per-model r, the paper's statistic), ``ours_pooled_r100``
    with its 95 % interval, ``n``, ``n_unscored``, ``ours_column``.
    """
    rows, covered = [], set()
    for col, (setting, name) in methods.items():
        t = ours[ours["method"] == col].set_index(by)
        if t.empty:
            raise ValueError(f"no method {col!r} in the Pearson table (methods: {sorted(ours['method'].unique())})")
        pooled, avg = t.loc[POOLED], t.loc["average"]
        covered.add((setting, name))
        rows.append({"setting": setting, "method": name, "paper_r100": PAPER_PEARSON.get((setting, name), np.nan),
                     "ours_average_r100": 100 * avg["r"], "ours_pooled_r100": 100 * pooled["r"],
                     "ours_pooled_low": 100 * pooled["r_low"], "ours_pooled_high": 100 * pooled["r_high"],
                     "n": int(pooled["n"]), "n_unscored": int(pooled["n_unscored"]), "ours_column": col})
    for (setting, name), r in PAPER_PEARSON.items():
        if (setting, name) not in covered:
            rows.append({"setting": setting, "method": name, "paper_r100": r, "ours_average_r100": np.nan,
                         "ours_pooled_r100": np.nan, "ours_pooled_low": np.nan, "ours_pooled_high": np.nan,
                         "n": 0, "n_unscored": 0, "ours_column": ""})
    order = {"with reference": 0, "without reference": 1}
    out = pd.DataFrame(rows)
    return out.sort_values("setting", key=lambda s: s.map(order), kind="stable", ignore_index=True)
