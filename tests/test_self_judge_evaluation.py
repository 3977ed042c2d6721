"""Self-Judge evaluation: Pearson r per model and pooled, the length baseline, selective following.

Every expected value is worked out by hand in the comments; the tables are built so that a plausible wrong
implementation (averaging per-model r as "pooled", scoring NaN as 0, sorting the wrong way, breaking ties
by row order, sampling the random baseline) gives a different number.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments.self_judge import evaluation as ev

Z95 = 1.959963984540054


def test_pearson_per_model_with_fisher_interval():
    # x = 1..4, y = 1,3,2,4: deviations (-1.5,-.5,.5,1.5) and (-1.5,.5,-.5,1.5), sum of products 4, of
    # squares 5 -> r = 0.8; Fisher z = atanh(0.8), se = 1/sqrt(4-3) = 1
    df = pd.DataFrame({"model": "A", "s": [1, 2, 3, 4], "q": [1, 3, 2, 4]})
    t = ev.pearson_by_model(df, "s", "q").set_index("model")
    assert t.loc["A", "r"] == pytest.approx(0.8)
    assert t.loc["A", "r_low"] == pytest.approx(math.tanh(math.atanh(0.8) - Z95), abs=1e-9)
    assert t.loc["A", "r_high"] == pytest.approx(math.tanh(math.atanh(0.8) + Z95), abs=1e-9)
    assert t.loc["A", "n"] == 4 and t.loc["pooled", "r"] == pytest.approx(0.8)


def test_pooled_r_pools_answers_not_per_model_r():
    # within each model r = +1; across models the better-scored model has the worse answers: pooled r < 0
    df = pd.DataFrame({"model": ["A"] * 4 + ["B"] * 4,
                       "s": [1, 2, 3, 4, 11, 12, 13, 14], "q": [10, 11, 12, 13, 0, 1, 2, 3]})
    t = ev.pearson_by_model(df, "s", "q").set_index("model")
    assert t.loc["A", "r"] == pytest.approx(1.0) and t.loc["B", "r"] == pytest.approx(1.0)
    assert t.loc["pooled", "r"] == pytest.approx(np.corrcoef(df["s"], df["q"])[0, 1])
    assert t.loc["pooled", "r"] < -0.8 and t.loc["pooled", "n"] == 8
    table = ev.pearson_table(df.assign(s2=-df["s"]), ["s", "s2"], "q").set_index(["method", "model"])
    assert table.loc[("s", "average"), "r"] == pytest.approx(1.0)  # the paper's Avg.: mean of per-model r
    assert table.loc[("s2", "A"), "r"] == pytest.approx(-1.0)
    assert list(table.index.get_level_values("model")[:4]) == ["A", "B", "pooled", "average"]


def test_unscored_answers_are_left_out_and_counted_not_scored_zero():
    # the NaN answer has the best quality: scored as 0 it would pull r down to about 0.14
    df = pd.DataFrame({"model": "A", "s": [1, 2, 3, 4, np.nan], "q": [1, 3, 2, 4, 5]})
    row = ev.pearson_by_model(df, "s", "q").iloc[0]
    assert row["r"] == pytest.approx(0.8) and row["n"] == 4 and row["n_unscored"] == 1
    assert np.corrcoef(df["s"].fillna(0), df["q"])[0, 1] < 0.2  # what the wrong implementation would say


def test_degenerate_groups_say_why():
    df = pd.DataFrame({"model": ["A"] * 3 + ["B"] * 4, "s": [1, 2, 3, 5, 5, 5, 5], "q": [1, 2, 3, 1, 2, 3, 4]})
    t = ev.pearson_by_model(df, "s", "q").set_index("model")
    assert math.isnan(t.loc["A", "r"]) and t.loc["A", "note"] == "only 3 scored answers"
    assert math.isnan(t.loc["B", "r"]) and t.loc["B", "note"] == "constant scores: r undefined"
    with pytest.raises(ValueError, match="no column 'nope'"):
        ev.pearson_by_model(df, "nope", "q")
    with pytest.raises(ValueError, match="missing values"):
        ev.pearson_by_model(df.assign(q=[1, 2, np.nan, 1, 2, 3, 4]), "s", "q")


def test_answer_length_in_words():
    got = ev.answer_length_words(["one two  three\nfour", "", "  x  ", "Hello, world!"])
    assert got.tolist() == [4.0, 0.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="positions \\[1\\]"):
        ev.answer_length_words(["a", None])


# --- selective instruction following ---------------------------------------------------------------------------
def test_selective_curve_by_hand():
    # accept by predicted 3 > 2 > 1: qualities 1, then 3, then 2 -> means 1, 2, 2; area (1+2+2)/3
    curve = ev.selective_curve([3, 2, 1], [1, 3, 2])
    assert curve["mean_quality"].tolist() == pytest.approx([1.0, 2.0, 2.0])
    assert curve["coverage"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert curve["threshold"].tolist() == [3, 2, 1]
    assert ev.curve_area(curve) == pytest.approx(5 / 3)
    # oracle: 3, then 3 and 2, then all -> 3, 2.5, 2; random: the mean, 2, at every coverage
    assert ev.oracle_curve([1, 3, 2])["mean_quality"].tolist() == pytest.approx([3.0, 2.5, 2.0])
    assert ev.random_curve([1, 3, 2])["mean_quality"].tolist() == pytest.approx([2.0, 2.0, 2.0])
    s = ev.selective_summary([3, 2, 1], [1, 3, 2])
    assert s["area"] == pytest.approx(5 / 3) and s["oracle_area"] == pytest.approx(2.5)
    assert s["random_area"] == pytest.approx(2.0)
    assert s["normalised"] == pytest.approx((5 / 3 - 2) / (2.5 - 2))  # worse than chance: -2/3


def test_ties_are_broken_in_expectation_not_by_row_order():
    # the two answers scored 1 tie: accepting one of them gives quality 0 or 1, expected 0.5
    for q in ([0, 1, 5], [1, 0, 5]):
        curve = ev.selective_curve([1, 1, 0], q)
        assert curve["mean_quality"].tolist() == pytest.approx([0.5, 0.5, 2.0])
    # a constant predictor is exactly random acceptance
    q = [4, 1, 3, 3, 5]
    assert ev.selective_curve([7] * 5, q)["mean_quality"].tolist() == pytest.approx(
        ev.random_curve(q)["mean_quality"].tolist())
    assert ev.selective_summary([7] * 5, q)["normalised"] == pytest.approx(0.0)


def test_perfect_predictor_matches_the_oracle():
    q = np.array([2.0, 5.0, 1.0, 4.0, 3.0])
    s = ev.selective_summary(10 * q + 1, q)  # any increasing function of the quality
    assert s["area"] == pytest.approx(s["oracle_area"]) and s["normalised"] == pytest.approx(1.0)
    # oracle area by hand: prefix means of 5,4,3,2,1 = 5, 4.5, 4, 3.5, 3 -> 20/5
    assert s["oracle_area"] == pytest.approx(4.0) and s["random_area"] == pytest.approx(3.0)


def test_unscored_answers_are_left_out_of_all_three_curves():
    s = ev.selective_summary([np.nan, 2, 1], [100, 1, 3])
    assert s["n"] == 2 and s["n_unscored"] == 1
    assert s["random_area"] == pytest.approx(2.0) and s["oracle_area"] == pytest.approx((3 + 2) / 2)
    assert s["area"] == pytest.approx((1 + 2) / 2)
    assert math.isnan(ev.selective_summary([1, 2], [3, 3])["normalised"])  # no gain to share
    with pytest.raises(ValueError, match="no answer has a predicted score"):
        ev.selective_summary([np.nan], [1])
    with pytest.raises(ValueError, match="equally long"):
        ev.selective_curve([1, 2], [1])


def test_selective_table_stacks_methods_with_baselines():
    df = pd.DataFrame({"a": [3, 2, 1], "b": [1, 2, 3], "gpt4_mean": [1, 3, 2]})
    t = ev.selective_table(df, ["a", "b"])
    assert t.groupby("method", sort=False).size().to_dict() == {"a": 3, "b": 3, "oracle": 3, "random": 3}
    areas = t.groupby("method")["mean_quality"].mean()
    assert areas["a"] == pytest.approx(5 / 3) and areas["b"] == pytest.approx((2 + 2.5 + 2) / 3)
    assert areas["oracle"] == pytest.approx(2.5) and areas["random"] == pytest.approx(2.0)
