import numpy as np
import pandas as pd
import pytest

from judgelab import stats


def test_bootstrap_ci_contains_mean_and_is_reproducible():
    rng = np.random.default_rng(0)
    v = rng.normal(0.6, 0.1, 500)
    a = stats.bootstrap_mean(v)
    b = stats.bootstrap_mean(v)
    assert a == b
    assert a.low < a.estimate < a.high
    assert a.estimate == pytest.approx(v.mean())
    # standard error of the mean is 0.1/sqrt(500) ~ 0.0045, so the 95% CI half-width is ~0.009
    assert 0.006 < (a.high - a.low) / 2 < 0.012


def test_bootstrap_constant_values_give_degenerate_interval():
    iv = stats.bootstrap_mean([0.5] * 10)
    assert (iv.estimate, iv.low, iv.high) == (0.5, 0.5, 0.5)


def test_cluster_bootstrap_is_wider_than_row_bootstrap_for_correlated_rows():
    # 100 clusters of 4 identical values: only 100 independent observations.
    rng = np.random.default_rng(1)
    cluster_means = rng.normal(0, 1, 100)
    values = np.repeat(cluster_means, 4)
    clusters = np.repeat(np.arange(100), 4)
    rows = stats.bootstrap_mean(values)
    by_cluster = stats.bootstrap_mean(values, clusters)
    assert by_cluster.estimate == pytest.approx(rows.estimate)
    assert (by_cluster.high - by_cluster.low) > 1.6 * (rows.high - rows.low)


def test_bootstrap_drops_nan_and_pools_unequal_clusters():
    iv = stats.bootstrap_mean([1.0, 1.0, 1.0, 0.0, np.nan], ["a", "a", "a", "b", "b"])
    assert iv.estimate == pytest.approx(0.75)
    assert iv.n == 4


def test_bootstrap_mean_table_columns():
    df = pd.DataFrame({"g": ["x"] * 4 + ["y"] * 4, "key": list("abcdabcd"), "v": [1, 1, 1, 1, 0, 0, 0, 1.0]})
    t = stats.bootstrap_mean_table(df, "v", "g")
    assert list(t.columns) == ["g", "n", "v", "v_low", "v_high"]
    assert t.set_index("g").loc["x", "v"] == 1.0
    assert t.set_index("g").loc["y", "v"] == 0.25


def test_kendall_tau_concordant_and_discordant():
    x = np.arange(10)
    assert stats.kendall_tau(x, x * 2 + 1)["tau"] == pytest.approx(1.0)
    assert stats.kendall_tau(x, -x)["tau"] == pytest.approx(-1.0)
    t = stats.kendall_tau_table(pd.DataFrame({"g": [1] * 5 + [2] * 5, "a": list(range(5)) * 2,
                                              "b": list(range(5)) + list(range(5))[::-1]}), "a", "b", "g")
    assert t.tau.tolist() == pytest.approx([1.0, -1.0])


def test_pearson_ci_and_linear_fit():
    x = np.linspace(0, 1, 20)
    y = 2 * x + 1 + np.random.default_rng(2).normal(0, 0.05, 20)
    p = stats.pearson(x, y)
    assert p["r_low"] < p["r"] < p["r_high"] <= 1
    assert p["r"] > 0.98
    fit = stats.linear_fit(x, y)
    assert fit["slope"] == pytest.approx(2, abs=0.1)
    assert fit["intercept"] == pytest.approx(1, abs=0.05)
    exact = stats.linear_fit([0, 1, 2], [1, 3, 5])
    assert (exact["slope"], exact["intercept"]) == pytest.approx((2.0, 1.0))
