"""Selective following summaries and best-of-N: picks, both-order win rates, ties and invalid answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments.self_judge import best_of_n as bon
from judgelab.experiments.self_judge import selective as sel
from judgelab.models.base import GenerationConfig, Model, OptionProbs
from judgelab.prompts import ye2024


# --- selective ----------------------------------------------------------------------------------------------
def test_quality_at_coverage_by_hand():
    # accept by 5 > 4 > 3 > 2 > 1: qualities 1, 5, 2, 4, 3 -> prefix means 1, 3, 8/3, 3, 3
    at = sel.quality_at([5, 4, 3, 2, 1], [1, 5, 2, 4, 3], coverages=(0.2, 0.5, 1.0))
    assert at[0.2] == pytest.approx(1.0) and at[0.5] == pytest.approx(8 / 3) and at[1.0] == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        sel.quality_at([1, 2], [1, 2], coverages=(0.0,))


def test_selective_summaries_with_intervals():
    rng = np.random.default_rng(0)
    q = rng.normal(size=200)
    df = pd.DataFrame({"gpt4_mean": q, "good": q + rng.normal(0, .3, 200), "bad": rng.normal(size=200)})
    df.loc[3, "bad"] = np.nan
    t = sel.selective_summaries(df, ["good", "bad"], n_resamples=200).set_index("method")
    assert t.loc["good", "normalised"] > 0.7 and abs(t.loc["bad", "normalised"]) < 0.3
    for m in ("good", "bad"):
        assert t.loc[m, "area_low"] <= t.loc[m, "area"] <= t.loc[m, "area_high"]
        assert t.loc[m, "normalised_low"] <= t.loc[m, "normalised"] <= t.loc[m, "normalised_high"]
    assert t.loc["bad", "n_unscored"] == 1 and t.loc["bad", "n"] == 199
    assert t.loc["good", "quality_at_0.2"] > t.loc["good", "quality_at_0.8"]
    with pytest.raises(ValueError, match="no column 'nope'"):
        sel.selective_summaries(df, ["nope"])


# --- best-of-N --------------------------------------------------------------------------------------------------
def test_pick_best_ties_nan_and_fallback():
    s = pd.DataFrame({"source": ["a"] * 3 + ["b"] * 3 + ["c"] * 2, "id": ["1"] * 3 + ["2"] * 3 + ["3"] * 2,
                      "sample": [0, 1, 2, 0, 1, 2, 0, 1],
                      "score": [3.0, 7.0, 7.0, np.nan, 2.0, np.nan, np.nan, np.nan]})
    got = bon.pick_best(s).set_index("id")
    assert got.loc["1", "picked"] == 1  # tie between 1 and 2: the lower index
    assert got.loc["2", "picked"] == 1 and got.loc["2", "n_scored"] == 1  # NaN never wins
    assert got.loc["3", "picked"] == 0 and got.loc["3", "fallback"] and math.isnan(got.loc["3", "picked_score"])
    assert bon.pick_best(s, n=1).set_index("id").loc["1", "picked"] == 0  # best of the first 1


class PreferLonger(Model):
    """Prefers the longer answer with probability 0.8, plus a position bias toward Answer 1."""

    name = "rater"

    def __init__(self, bias=0.1, invalid_on=None):
        self.bias, self.invalid_on, self.prompts = bias, invalid_on, []

    @property
    def fingerprint(self):
        return {"name": "rater"}

    def generate(self, prompts, config=GenerationConfig()):  # pragma: no cover
        raise AssertionError

    def option_probs(self, prompts, options):
        assert tuple(options) == ("1", "2")
        out = []
        for p in prompts:
            self.prompts.append(p)
            text = p[0]["content"]
            a1 = text.split("[Answer 1]\n")[1].split("\n\n[Answer 2]")[0]
            a2 = text.split("[Answer 2]\n")[1]
            if self.invalid_on and self.invalid_on in text:
                out.append(OptionProbs(("1", "2"), (0.0, 0.0)))
                continue
            p1 = (0.8 if len(a1) > len(a2) else 0.2) + self.bias
            out.append(OptionProbs(("1", "2"), (p1, 1 - p1)))
        return out


def test_pairwise_wins_average_both_orders_and_skip_identical():
    r = PreferLonger(bias=0.1)
    w = bon.pairwise_wins(r, ["Q1", "Q2", "Q3"], ["long answer", "x", "same"], ["short", "longer one", "same"])
    # candidate longer: first order 0.9, second order P("2") = 1 - (0.2 + 0.1) = 0.7 -> 0.8
    assert w["p_first"][0] == pytest.approx(0.9) and w["p_second"][0] == pytest.approx(0.7)
    assert w["win"][0] == pytest.approx(0.8) and w["win"][1] == pytest.approx(0.2)
    assert w["identical"].tolist() == [False, False, True] and w["win"][2] == 0.5
    assert len(r.prompts) == 4  # identical pair not rated; two orders each for the others
    assert r.prompts[0] == ye2024.pairwise_chat("Q1", "long answer", "short")
    assert r.prompts[2] == ye2024.pairwise_chat("Q1", "short", "long answer")
    t = bon.win_rate_table(w)
    assert t.loc[0, "win"] == pytest.approx((0.8 + 0.2 + 0.5) / 3) and t.loc[0, "n_identical"] == 1
    assert t.loc[0, "win_low"] <= t.loc[0, "win"] <= t.loc[0, "win_high"]


def test_invalid_rater_answers_are_counted_not_half():
    w = bon.pairwise_wins(PreferLonger(invalid_on="Q2"), ["Q1", "Q2"], ["aa", "bb"], ["a", "b"])
    assert w["valid"].tolist() == [True, False] and math.isnan(w["win"][1])
    t = bon.win_rate_table(w.assign(group="g"), by=["group"])
    assert t.loc[0, "n"] == 1 and t.loc[0, "n_invalid"] == 1 and t.loc[0, "win"] == pytest.approx(w["win"][0])
    with pytest.raises(ValueError, match="equally long"):
        bon.pairwise_wins(PreferLonger(), ["Q"], ["a", "b"], ["c"])


def test_pairwise_prompt_is_marked_as_a_reconstruction():
    assert ye2024.PAIRWISE_RECONSTRUCTED
    p = ye2024.pairwise_chat("Q {x}", "A1 {}", "A2")[0]["content"]
    assert p.endswith("[Question]\nQ {x}\n\n[Answer 1]\nA1 {}\n\n[Answer 2]\nA2")
