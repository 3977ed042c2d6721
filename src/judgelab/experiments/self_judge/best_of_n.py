"""Best-of-N with the judge as reward model (issue 19, item 7).

The policy samples N answers per held-out instruction; the judge scores each (reference-free: at
deployment there is no reference); the answer with the highest score is picked. Whether the pick is better is
decided by a *different* judge, the rater (named in every table: a judge that rates its own picks would
agree with itself), comparing the pick against the first sample (what the policy would have said without
best-of-N) and against the gold reference, in **both orders** (the rater's position bias averages out; each
order is also reported). The rater's prompt is a reconstruction (:data:`judgelab.prompts.ye2024.PAIRWISE_TEMPLATE`):
the paper used AlpacaEval's GPT-4 annotators, which the ``api`` profile approximates with an OpenAI rater.

A pick that *is* the baseline (best-of-N chose sample 0, or the texts are equal) is a tie by definition
(0.5), not rated, and counted (``n_identical``). Win rates are means over instructions with bootstrap
intervals (:func:`judgelab.stats.bootstrap_mean`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from judgelab.models.base import Model
from judgelab.prompts import ye2024
from judgelab.stats import bootstrap_mean

KEY = ["source", "id"]


def pick_best(scores: pd.DataFrame, n: int | None = None, score: str = "score") -> pd.DataFrame:
    """Per instruction (``source``, ``id``), the sample (of the first ``n``; all if None) with the highest
    ``score``. Ties go to the lowest sample index; NaN scores (invalid judge answers) never win. An instruction
    with no valid score keeps sample 0 (``fallback`` True, counted). Columns: ``source, id, picked, picked_score,
    n_samples, n_scored, fallback``."""
    for col in (*KEY, "sample", score):
        if col not in scores.columns:
            raise ValueError(f"no column {col!r} (columns: {list(scores.columns)})")
    df = scores if n is None else scores[scores["sample"] < n]
    rows = []
    for key, g in df.groupby(KEY, sort=False):
        g = g.sort_values("sample", kind="stable")
        s = g[score].to_numpy(dtype=float)
        ok = np.isfinite(s)
        if ok.any():
            best = int(np.flatnonzero(ok)[np.argmax(s[ok])])
            pick, val, fb = int(g["sample"].iloc[best]), float(s[best]), False
        else:
            pick, val, fb = int(g["sample"].iloc[0]), float("nan"), True
        rows.append({"source": key[0], "id": key[1], "picked": pick, "picked_score": val,
                     "n_samples": len(g), "n_scored": int(ok.sum()), "fallback": fb})
    return pd.DataFrame(rows, columns=[*KEY, "picked", "picked_score", "n_samples", "n_scored", "fallback"])


def pairwise_wins(rater: Model, questions: Sequence[str], candidates: Sequence[str], baselines: Sequence[str],
                  labels: Sequence[str] | None = None) -> pd.DataFrame:
    """The rater's probability that each candidate beats its baseline, in both orders.

    ``p_first``: P("1") with the candidate as Answer 1; ``p_second``: P("2") with it as Answer 2 (both
    renormalised over "1" and "2"); ``win`` their mean (NaN if either answer is invalid: counted by the
    ``valid`` column, never 0.5). Identical candidate and baseline texts are ties (0.5 in all three) and are
    not sent to the rater (``identical`` True).
    """
    n = len(questions)
    if not (len(candidates) == len(baselines) == n):
        raise ValueError(f"questions, candidates and baselines must be equally long, got "
                         f"{[n, len(candidates), len(baselines)]}")
    identical = np.array([c.strip() == b.strip() for c, b in zip(candidates, baselines)])
    todo = [i for i in range(n) if not identical[i]]
    prompts = [ye2024.pairwise_chat(questions[i], candidates[i], baselines[i]) for i in todo] + \
              [ye2024.pairwise_chat(questions[i], baselines[i], candidates[i]) for i in todo]
    kw = {}
    if labels is not None:
        kw["labels"] = [f"{labels[i]}/first" for i in todo] + [f"{labels[i]}/second" for i in todo]
    answers = rater.option_probs(prompts, ye2024.PAIRWISE_OPTIONS, **kw) if todo else []
    first, second = np.full(n, 0.5), np.full(n, 0.5)
    valid = np.ones(n, dtype=bool)
    for j, i in enumerate(todo):
        a, b = answers[j], answers[len(todo) + j]
        valid[i] = a.valid and b.valid
        first[i] = a.probs["1"] if a.valid else np.nan
        second[i] = b.probs["2"] if b.valid else np.nan
    win = np.where(valid, (first + second) / 2, np.nan)
    return pd.DataFrame({"p_first": first, "p_second": second, "win": win, "valid": valid, "identical": identical})


def win_rate_table(wins: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean win probability (both orders averaged, and each order) with 95 % bootstrap intervals over
    instructions, per group of ``by``; ``n`` rated, ``n_invalid``, ``n_identical``."""
    groups = wins.groupby(list(by), sort=False) if by else [((), wins)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        for col in ("win", "p_first", "p_second"):
            iv = bootstrap_mean(g[col].to_numpy(dtype=float))
            row[col], row[f"{col}_low"], row[f"{col}_high"] = iv.estimate, iv.low, iv.high
        row["n"] = int(np.isfinite(g["win"].to_numpy(dtype=float)).sum())
        row["n_invalid"] = int((~g["valid"]).sum())
        row["n_identical"] = int(g["identical"].sum())
        rows.append(row)
    return pd.DataFrame(rows)
