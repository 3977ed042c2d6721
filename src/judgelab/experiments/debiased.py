"""Position-debiased pairwise self-recognition and self-preference, in logit space (issue 20, item 1).

Why this module: the open judges and out-of-the-box Llama-2 score R and S near 0.5 mostly because they
answer by *position* (the same option in both orders). Averaging the two orders' probabilities, as the
paper's R and S do, lets a large position preference swamp a small content preference: a judge at
P("1") = 0.99 / 0.97 in the two orders gets R = 1/2 (0.99 + 0.03) = 0.51 whatever it thinks of the texts.
Working with log-odds removes that bias exactly when it is additive.

The model
---------
For one pair (article, own summary, other summary) and one prompt (detection or comparison), let
``l_f`` and ``l_b`` be the log-odds of option "1" against option "2" in the forward order (own summary
is option 1) and the backward order (own summary is option 2)::

    l = log P("1") - log P("2")

Suppose the judge's log-odds is the sum of a content term ``c`` (how much it prefers its own summary)
and a position term ``b`` (how much it prefers whatever is shown first)::

    l_f = b + c          l_b = b - c       =>       d = (l_f - l_b) / 2 = c

So ``d`` recovers the content term and ``b`` cancels, whatever its size. Reported per pair:

* ``sigmoid(d)``, the probability the judge would give its own summary with the position term removed;
  its mean is the *debiased R* (detection prompt) or *debiased S* (comparison prompt); chance is 0.5;
* whether ``d > 0`` (own summary wins once the bias is removed); ``d == 0`` is a tie, counted
  separately, so ``own_wins + ties + other_wins = 1``.

Renormalising over {"1", "2"} does not change ``l`` (the mass outside the two options cancels in the
ratio), so raw and renormalised probabilities give the same ``d``.

What it does not cancel
-----------------------
* A position bias that is not additive in logits: one that depends on the content (a judge that goes
  by position only when it is unsure), or that saturates (P("1") = 1.0 in float32 in both orders makes
  both log-odds infinite, and ``d`` is undefined: counted in ``n_undefined``, never scored).
* Any bias that does not flip with the order: a preference for longer or more fluent summaries, or
  for the judge's own style, is part of ``c`` -- which is what self-preference measures, but it is not
  proof of *recognition*.
* Option-label bias that differs between tasks is handled, since each task is debiased on its own, but
  a bias that changes between the forward and backward prompt other than through the option order (it
  cannot here: the two prompts differ only in order) would not cancel.
* ``sigmoid(d)`` is not a calibrated probability of anything the judge was asked: it is a monotone
  summary of ``c``. Its mean is a scale on which 0.5 is no preference, comparable between judges only
  loosely (a judge with sharper logits moves further from 0.5 for the same ranking); the share of wins
  is the scale-free view.

Layering: this module is pure computation on tables (stats below it); the experiments that own the
data (:mod:`judgelab.experiments.open_models` replays the judges' prompts,
:mod:`judgelab.experiments.reanalysis` loads the released outputs) build the per-prompt frame and call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from judgelab import stats

#: Pairwise task -> the measure it yields.
MEASURES = {"detection": "recognition", "comparison": "preference"}
#: Per-pair values averaged into the table, per measure (``{m}`` is the measure's name).
PAIR_VALUES = ("debiased_{m}", "{m}_own_wins", "{m}_ties")
PAIR_KEYS = ("evaluator", "dataset", "key", "other")


def log_odds(p1, p2) -> np.ndarray:
    """``log P("1") - log P("2")``; NaN where either is missing or both are 0, +-inf where one is 0."""
    p1, p2 = np.asarray(p1, dtype=float), np.asarray(p2, dtype=float)
    if ((p1 < 0) | (p2 < 0)).any():
        raise ValueError("option probabilities must be >= 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(p1) - np.log(p2)


def debiased_pairs(prompts: pd.DataFrame, keys: Sequence[str] = PAIR_KEYS) -> pd.DataFrame:
    """One row per pair (``keys``) from a per-prompt frame: the two orders' log-odds, ``d`` and the scores.

    ``prompts`` has one row per prompt with ``keys``, ``task`` (``detection`` / ``comparison``), ``order``
    (``forward``: own summary is option 1; ``backward``: own summary is option 2), ``p1`` and ``p2``
    (raw or renormalised: the log-odds are the same). Per measure (``recognition`` for detection,
    ``preference`` for comparison) the output has ``{m}_l_forward``, ``{m}_l_backward``, ``{m}_d``,
    ``debiased_{m}`` = sigmoid(d), ``{m}_own_wins`` (1.0 where d > 0, else 0.0) and ``{m}_ties`` (1.0 where
    d == 0); all NaN where d is undefined (a missing answer, or infinite log-odds of the same sign in both
    orders). A prompt that appears twice, or a pair missing one of its orders, is an error.
    """
    keys = list(keys)
    need = {*keys, "task", "order", "p1", "p2"}
    missing = need - set(prompts.columns)
    if missing:
        raise ValueError(f"per-prompt frame lacks columns {sorted(missing)} (has {list(prompts.columns)})")
    bad = set(prompts["order"]) - {"forward", "backward"}
    if bad:
        raise ValueError(f"order must be 'forward' or 'backward', got {sorted(bad)}")
    idx = [*keys, "task", "order"]
    dup = prompts.duplicated(idx)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} prompts appear more than once, e.g. {prompts.loc[dup, idx].iloc[0].to_dict()}")
    df = prompts.assign(l=log_odds(prompts["p1"], prompts["p2"]))
    wide = df.set_index(idx)["l"].unstack(["task", "order"])
    out = wide.index.to_frame(index=False)
    for task, m in MEASURES.items():
        if (task, "forward") not in wide.columns and (task, "backward") not in wide.columns:
            continue
        for order in ("forward", "backward"):
            if (task, order) not in wide.columns:
                raise ValueError(f"{task}: no {order} prompts, so no pair can be debiased")
        lf, lb = wide[(task, "forward")].to_numpy(), wide[(task, "backward")].to_numpy()
        with np.errstate(invalid="ignore"):
            d = (lf - lb) / 2  # inf - inf (both orders saturated the same way) is NaN: undefined
        ok = ~np.isnan(d)
        out[f"{m}_l_forward"], out[f"{m}_l_backward"], out[f"{m}_d"] = lf, lb, d
        out[f"debiased_{m}"] = np.where(ok, expit(d), np.nan)
        out[f"{m}_own_wins"] = np.where(ok, (d > 0).astype(float), np.nan)
        out[f"{m}_ties"] = np.where(ok, (d == 0).astype(float), np.nan)
    return out


def debiased_table(pairs: pd.DataFrame, by: Sequence[str] = ("dataset", "evaluator"),
                   pooled: bool = True) -> pd.DataFrame:
    """Debiased R and S per ``by`` x other source (and ``other='all'`` pooled), 95 % article-bootstrap CIs.

    Columns: ``*by, other, n`` (pairs asked) then per measure ``{m}_n`` (pairs whose d is defined, the ones
    averaged), ``debiased_{m}, _low, _high`` (mean of sigmoid(d)), ``{m}_own_wins, _low, _high`` (share of
    pairs with d > 0) and ``{m}_ties`` (share with d == 0). ``n - {m}_n`` pairs were undefined (a missing
    answer, or both orders saturated: see the module docstring); intervals resample articles (``key``), as
    every table of the book does.
    """
    by = list(by)
    measures = [m for m in MEASURES.values() if f"debiased_{m}" in pairs.columns]
    values = [v.format(m=m) for m in measures for v in PAIR_VALUES]
    groups = [by + ["other"]] + ([by] if pooled else [])
    frames = []
    for g in groups:
        t = stats.bootstrap_mean_table(pairs, values, g, cluster="key")
        grouped = pairs.groupby(g, sort=False, dropna=False)
        k = pd.MultiIndex.from_frame(t[g]) if len(g) > 1 else pd.Index(t[g[0]])
        t["n"] = grouped.size().reindex(k).to_numpy()
        for m in measures:
            t[f"{m}_n"] = grouped[f"debiased_{m}"].count().reindex(k).to_numpy()
        frames.append(t if "other" in g else t.assign(other="all"))
    out = pd.concat(frames, ignore_index=True)
    cols = [*by, "other", "n"]
    for m in measures:
        cols += [f"{m}_n", f"debiased_{m}", f"debiased_{m}_low", f"debiased_{m}_high",
                 f"{m}_own_wins", f"{m}_own_wins_low", f"{m}_own_wins_high", f"{m}_ties"]
    order = {v: i for i, v in enumerate(pd.unique(pairs[by[0]]))} if by else {}
    out["_o"] = out["other"].eq("all")
    out = out.sort_values([*by, "_o"], key=lambda s: s.map(order) if s.name == by[0] else s, kind="stable",
                          ignore_index=True)
    return out[cols]


def answer_bounds(pairs: pd.DataFrame, by: Sequence[str] = ("dataset", "evaluator")) -> pd.DataFrame:
    """Bounds on the debiased share of own wins from the answers alone (the GPT files), pooled per ``by``.

    Where only each order's answer (the top token) is known, only the sign of each order's log-odds is:
    answer "1" means l >= 0. A *correct* pair ("1" forward, "2" backward) has l_f >= 0 >= l_b, so d >= 0;
    an *incorrect* one d <= 0; an *ambiguous* one (the same answer twice: the position decided) leaves d's
    sign open. So the share of own wins lies between the correct share and the correct plus ambiguous share.
    (A correct pair could be an exact tie only if both log-odds were 0, which an argmax answer excludes up to
    a float tie.) The mean of sigmoid(d) is not identified at all. Pairs whose answer is neither "1" nor "2"
    are counted in ``n_undefined`` and left out.

    Expects ``recognition_outcome`` / ``preference_outcome`` as :func:`judgelab.experiments.reanalysis.outcome`
    writes them. Columns: ``*by, n, n_undefined`` then per measure ``{m}_own_wins_lower, _lower_low,
    _lower_high, {m}_own_wins_upper, _upper_low, _upper_high`` (each bound with its article-bootstrap CI).
    """
    by = list(by)
    rows = []
    for keys, g in pairs.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys))
        known = {}
        for m in MEASURES.values():
            o = g[f"{m}_outcome"].astype(str)
            ok = o.isin(["correct", "incorrect", "ambiguous_1", "ambiguous_2"])
            known[m] = int(ok.sum())
            lower = np.where(ok, (o == "correct").astype(float), np.nan)
            upper = np.where(ok, o.isin(["correct", "ambiguous_1", "ambiguous_2"]).astype(float), np.nan)
            for name, v in (("lower", lower), ("upper", upper)):
                iv = stats.bootstrap_mean(v, g["key"])
                row[f"{m}_own_wins_{name}"] = iv.estimate
                row[f"{m}_own_wins_{name}_low"], row[f"{m}_own_wins_{name}_high"] = iv.low, iv.high
        row = {**dict(zip(by, keys)), "n": min(known.values()), "n_undefined": len(g) - min(known.values()),
               **{k: v for k, v in row.items() if k not in by}}
        rows.append(row)
    return pd.DataFrame(rows)


# --- sentences ---------------------------------------------------------------------------------------------
def _versus_half(est: float, low: float, high: float) -> str:
    if low > 0.5:
        return "above chance"
    if high < 0.5:
        return "below chance"
    return "not distinguishable from chance"


#: Fewer defined pairs than this and a mean is named, not read against chance (a bootstrap over a handful of
#: pairs gives an interval of no width).
FEW_PAIRS = 20


def _cell(row, m: str, few: int = FEW_PAIRS) -> str:
    letter = "R" if m == "recognition" else "S"
    if row[f"{m}_n"] == 0:
        return f"debiased {letter} undefined for every pair"
    if row[f"{m}_n"] < few:
        return (f"debiased {letter} defined for only {int(row[f'{m}_n'])} of {int(row['n'])} pairs, "
                f"too few to read against chance")
    est, lo, hi = row[f"debiased_{m}"], row[f"debiased_{m}_low"], row[f"debiased_{m}_high"]
    w, wl, wh = row[f"{m}_own_wins"], row[f"{m}_own_wins_low"], row[f"{m}_own_wins_high"]
    und = row["n"] - row[f"{m}_n"]
    return (f"debiased {letter} {est:.3f} [{lo:.3f}, {hi:.3f}], {_versus_half(est, lo, hi)}, "
            f"own summary winning {100 * w:.1f}% [{100 * wl:.1f}, {100 * wh:.1f}] of pairs"
            + (f" ({int(und)} of {int(row['n'])} pairs undefined)" if und else ""))


def debiased_findings(table: pd.DataFrame, label: str = "evaluator", few: int = FEW_PAIRS) -> str:
    """One clause per pooled row of :func:`debiased_table`: each measure's interval read against 0.5.

    "Above chance" only where the whole 95 % interval of the mean of sigmoid(d) lies above 0.5, "below
    chance" where it lies below, otherwise "not distinguishable from chance"; the share of own wins is
    given beside it (ties make it fall short of 0.5 without any preference, so it is not read alone).
    Undefined pairs are counted; a measure with fewer than ``few`` defined pairs is named as such, not read.
    """
    pooled = table[table["other"] == "all"]
    if pooled.empty:
        return "No pair could be debiased."
    parts = []
    for _, row in pooled.iterrows():
        who = f"{row[label]} on {str(row['dataset']).upper()}" if "dataset" in row else str(row[label])
        cells = [_cell(row, m, few) for m in MEASURES.values() if f"debiased_{m}" in row]
        parts.append(f"{who}: " + "; ".join(cells))
    return "With the additive position bias removed: " + ". ".join(parts) + "."


def bounds_findings(bounds: pd.DataFrame, label: str = "evaluator") -> str:
    """One clause per row of :func:`answer_bounds`: the range the share of own wins is known to lie in.

    Where the whole range (lower bound's interval low to upper bound's interval high) lies above 0.5 the
    own summary wins most pairs once position is removed whatever the unseen log-odds are; where it lies
    below, it loses most; otherwise the answers cannot tell. Undefined pairs are counted.
    """
    if bounds.empty:
        return "No pair has answers to bound."
    parts = []
    for _, row in bounds.iterrows():
        who = f"{row[label]} on {str(row['dataset']).upper()}" if "dataset" in row else str(row[label])
        cells = []
        for m, letter in (("recognition", "R"), ("preference", "S")):
            lo, hi = row[f"{m}_own_wins_lower"], row[f"{m}_own_wins_upper"]
            lo_low, hi_high = row[f"{m}_own_wins_lower_low"], row[f"{m}_own_wins_upper_high"]
            verdict = ("own summary wins most pairs" if lo_low > 0.5 else
                       "own summary loses most pairs" if hi_high < 0.5 else "the answers cannot tell")
            cells.append(f"{letter} prompt {100 * lo:.1f}-{100 * hi:.1f}% ({verdict})")
        und = f"; {int(row['n_undefined'])} pairs without a '1'/'2' answer left out" if row["n_undefined"] else ""
        parts.append(f"{who}: " + ", ".join(cells) + und)
    return "Share of pairs the own summary wins once position is removed, bounded from the answers: " + \
        "; ".join(parts) + "."
