"""Likelihood-based self-recognition (judgelab.experiments.likelihood): tables by hand, one live ci run.

The by-hand tests build likelihood and R/S tables small enough to check every number; the regression is
checked against a cluster-robust sandwich computed here with numpy; the sentence generator is tested on
tables that would make each of its claims wrong. The live test scores 2 held-out articles per dataset with
smollm2 in the llama.cpp runtime through a fresh store, and replays it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import SMOLLM2, require

from judgelab.experiments import likelihood as lk
from judgelab.experiments import open_models as om
from judgelab.prompts import panickssery2024 as P


def ll_table(values: dict[tuple[str, str], float], judge: str = "j", dataset: str = "xsum") -> pd.DataFrame:
    """A likelihood table from {(key, author): mean_logprob}."""
    return pd.DataFrame([{"judge": judge, "dataset": dataset, "key": k, "author": a, "logprob": 10 * v,
                          "mean_logprob": v, "n_tokens": 10} for (k, a), v in values.items()])


# --- pairs and the share table -----------------------------------------------------------------------------
def test_pairs_by_hand_with_ties_missing_likelihoods_and_the_rs_join():
    ll = ll_table({("k1", "j"): -1.0, ("k1", "a"): -2.0, ("k1", "b"): -0.5,
                   ("k2", "j"): -1.5, ("k2", "a"): -1.5, ("k2", "b"): np.nan,
                   ("k3", "a"): -1.0})  # k3 has no own summary: no pair
    lp = lk.likelihood_pairs(ll)
    got = lp.set_index(["key", "other"])
    assert list(got.index) == [("k1", "a"), ("k1", "b"), ("k2", "a"), ("k2", "b")]
    assert got["ll_diff"].tolist()[:3] == [1.0, -0.5, 0.0]
    assert got["own_more_likely"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert got["ties"].tolist()[:3] == [0.0, 0.0, 1.0]
    assert got.loc[("k2", "b")][["ll_diff", "own_more_likely", "ties"]].isna().all()

    rs = pd.DataFrame({"judge": "j", "dataset": "xsum", "key": ["k1", "k1", "k2", "k2", "k3"],
                       "other": ["a", "b", "a", "b", "a"], "recognition": [0.6, 0.4, 0.5, 0.7, 0.1],
                       "preference": [0.9, 0.1, 0.5, 0.3, 0.2]})
    joined = lk.likelihood_pairs(ll, rs)
    assert joined["preference"].tolist() == [0.9, 0.1, 0.5, 0.3]
    with pytest.raises(ValueError, match="never judged"):
        lk.likelihood_pairs(ll, rs[rs["other"] != "b"])
    with pytest.raises(ValueError, match="more than once"):
        lk.likelihood_pairs(pd.concat([ll, ll.iloc[:1]]))


def test_own_more_likely_table_counts_and_pools():
    ll = ll_table({("k1", "j"): -1.0, ("k1", "a"): -2.0, ("k1", "b"): -0.5,
                   ("k2", "j"): -1.0, ("k2", "a"): -3.0, ("k2", "b"): np.nan})
    t = lk.own_more_likely_table(lk.likelihood_pairs(ll)).set_index("other")
    assert list(t.index) == ["a", "b", "all"]
    assert t.loc["a", "own_more_likely"] == 1.0 and t.loc["a", "n"] == 2 and t.loc["a", "n_articles"] == 2
    assert t.loc["b", "n"] == 1 and t.loc["b", "n_undefined"] == 1 and t.loc["b", "own_more_likely"] == 0.0
    assert t.loc["all", "n"] == 3 and t.loc["all", "n_undefined"] == 1
    assert t.loc["all", "own_more_likely"] == pytest.approx(2 / 3)
    assert t.loc["all", "ll_diff"] == pytest.approx((1.0 + 2.0 - 0.5) / 3)
    assert t.loc["all", "own_more_likely_low"] <= 2 / 3 <= t.loc["all", "own_more_likely_high"]


# --- regression --------------------------------------------------------------------------------------------
def regression_pairs(n_articles: int = 30, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_articles):
        article_effect = rng.normal(0, 0.05)  # shared by the pairs of one article: why errors are clustered
        for other in ("a", "b", "c"):
            d, r = rng.normal(0, 1), rng.uniform(0.3, 0.7)
            rows.append({"judge": "j", "dataset": "xsum", "key": f"k{i}", "other": other, "ll_diff": d,
                         "recognition": r,
                         "preference": 0.2 + 0.05 * d + 0.5 * r + article_effect + rng.normal(0, 0.02)})
    return pd.DataFrame(rows)


def cluster_sandwich(y, X, groups):
    """OLS coefficients and cluster-robust standard errors, written out (CR1: G/(G-1) (N-1)/(N-K))."""
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    u = y - X @ beta
    bread = np.linalg.inv(X.T @ X)
    meat = sum(np.outer(X[groups == g].T @ u[groups == g], X[groups == g].T @ u[groups == g])
               for g in np.unique(groups))
    n, k, g = len(y), X.shape[1], len(np.unique(groups))
    cov = bread @ meat @ bread * g / (g - 1) * (n - 1) / (n - k)
    return beta, np.sqrt(np.diag(cov)), g


def test_regression_matches_a_cluster_robust_fit_by_hand():
    from scipy import stats as st

    lp = regression_pairs()
    reg = lk.preference_regression(lp)
    both = reg[reg["model"] == "S ~ ll_diff + R"].set_index("term")
    X = np.column_stack([np.ones(len(lp)), lp["ll_diff"], lp["recognition"]])
    beta, se, g = cluster_sandwich(lp["preference"].to_numpy(), X, lp["key"].to_numpy())
    assert both.loc[["intercept", "ll_diff", "R"], "coef"].to_numpy() == pytest.approx(beta, rel=1e-9)
    half = st.t.ppf(0.975, g - 1) * se  # t with G - 1 degrees of freedom
    assert (both.loc[["intercept", "ll_diff", "R"], "high"].to_numpy() - beta) == pytest.approx(half, rel=1e-6)
    assert both.loc["ll_diff", "low"] > 0 and both.loc["ll_diff", "n_articles"] == 30 and both.loc["R", "n"] == 90
    assert set(reg["model"]) == set(lk.REGRESSIONS)


def test_regression_says_why_it_cannot_fit():
    lp = regression_pairs(n_articles=1)
    reg = lk.preference_regression(lp)
    assert reg["coef"].isna().all() and reg["note"].str.contains("at least 2").all()
    lp = regression_pairs().assign(recognition=0.5)
    reg = lk.preference_regression(lp)
    assert reg.loc[reg["model"].isin(["S ~ R", "S ~ ll_diff + R"]), "note"].eq("a predictor is constant").all()
    assert reg.loc[reg["model"] == "R ~ ll_diff", "note"].eq("the outcome is constant").all()
    assert reg.loc[reg["model"] == "S ~ ll_diff", "coef"].notna().all()


# --- the sentence ------------------------------------------------------------------------------------------
def own_row(**kw) -> dict:
    row = {"dataset": "xsum", "judge": "j", "other": "all", "n": 100, "n_undefined": 0, "n_articles": 50,
           "own_more_likely": 0.7, "own_more_likely_low": 0.6, "own_more_likely_high": 0.8, "ties": 0.0,
           "ties_low": 0.0, "ties_high": 0.0, "ll_diff": 0.3, "ll_diff_low": 0.2, "ll_diff_high": 0.4}
    return {**row, **kw}


def reg_rows(ll_lo: float, ll_hi: float, r_lo: float = -0.1, r_hi: float = 0.1) -> pd.DataFrame:
    base = {"dataset": "xsum", "judge": "j", "n": 100, "n_articles": 50, "r2": 0.1, "p_value": 0.5, "note": None}
    return pd.DataFrame([
        {**base, "model": "S ~ ll_diff + R", "term": "ll_diff", "coef": (ll_lo + ll_hi) / 2, "low": ll_lo,
         "high": ll_hi},
        {**base, "model": "S ~ ll_diff + R", "term": "R", "coef": (r_lo + r_hi) / 2, "low": r_lo, "high": r_hi},
        {**base, "model": "R ~ ll_diff", "term": "ll_diff", "coef": 0.0, "low": -0.01, "high": 0.01}])


def test_findings_reads_each_interval_on_its_side():
    above = lk.likelihood_findings(pd.DataFrame([own_row()]), reg_rows(0.01, 0.05))
    assert "more often than not" in above and "70.0% [60.0, 80.0]" in above
    assert "+0.0300 [+0.0100, +0.0500] per nat/token (a positive association)" in above
    below = lk.likelihood_findings(pd.DataFrame([own_row(own_more_likely=0.3, own_more_likely_low=0.2,
                                                         own_more_likely_high=0.4, ll_diff=-0.3)]),
                                   reg_rows(-0.05, -0.01))
    assert "less often than not" in below and "more often" not in below
    assert "a negative association" in below and "positive" not in below
    straddle = lk.likelihood_findings(pd.DataFrame([own_row(own_more_likely_low=0.45)]), reg_rows(-0.01, 0.05))
    assert "not distinguishable from half" in straddle and "more often than not" not in straddle
    assert "(no association distinguishable from zero)" in straddle and "positive association" not in straddle


def test_findings_refuses_to_read_few_articles_and_names_both_runtimes():
    few = lk.likelihood_findings(pd.DataFrame([own_row(n_articles=2, n=10)]), reg_rows(0.01, 0.05))
    assert "too few to read" in few and "more often than not" not in few and "association" not in few
    t = pd.DataFrame([own_row(likelihood_runtime="llama.cpp ...", judging_runtime="transformers ...")])
    assert "llama.cpp runtime" in lk.likelihood_findings(t, reg_rows(0.01, 0.05))
    assert lk.likelihood_findings(pd.DataFrame([own_row(other="a")]), reg_rows(0, 1)).startswith("No judge")


# --- requests, weights, profiles ---------------------------------------------------------------------------
def test_requests_use_the_summary_prompt_and_skip_empty_summaries():
    authors = pd.DataFrame({"dataset": "xsum", "key": ["k1", "k1"], "author": ["j", "a"], "summary": ["A cat.", "  "]})
    articles = pd.Series({"k1": "The article."})
    rows, reqs = lk.likelihood_requests(authors, articles)
    assert [r["empty"] for r in rows] == [False, True] and len(reqs) == 1
    assert reqs[0].messages == P.summary_messages("xsum", "The article.") and reqs[0].continuation == "A cat."
    with pytest.raises(ValueError, match="no text"):
        lk.likelihood_requests(authors, pd.Series({"k2": "x"}))


def test_weights_must_be_the_same_file_and_the_store_is_its_own():
    lk.check_same_weights({"gguf_sha256": "ab"}, {"gguf_sha256": "ab"}, "j")
    with pytest.raises(lk.WeightsMismatch, match="gguf_sha256 cd"):
        lk.check_same_weights({"gguf_sha256": "ab"}, {"gguf_sha256": "cd"}, "j")
    with pytest.raises(lk.WeightsMismatch):
        lk.check_same_weights({}, {}, "j")
    spec = lk.likelihood_spec(SMOLLM2)
    assert om.store_path(spec) != om.store_path(SMOLLM2) and om.store_path(spec).parent == om.store_path(SMOLLM2).parent


def test_profile_sizes():
    assert lk.likelihood_profile("ci").judges == {SMOLLM2: 2}
    p = lk.likelihood_profile("book", judges=[SMOLLM2, "qwen2.5-coder-0.5b-instruct=7"], articles=30, live=True)
    assert p.judges[SMOLLM2] == 30 and p.judges["qwen2.5-coder-0.5b-instruct"] == 7 and not p.replay
    with pytest.raises(ValueError, match="not a judge"):
        lk.likelihood_profile("book", judges=["gpt4"])
    with pytest.raises(ValueError, match="NAME=N"):
        lk.likelihood_profile("book", judges=[f"{SMOLLM2}=0"])
    with pytest.raises(ValueError, match="more articles than"):
        lk.source_profile(lk.likelihood_profile("ci", articles=100_000))
    src = lk.source_profile(lk.likelihood_profile("ci"))
    assert src.replay and src.judges == {SMOLLM2: 2} and max(src.summaries.values()) == 2


# --- live: smollm2 in llama.cpp ------------------------------------------------------------------------------
def test_one_article_live_then_replay_through_its_own_store(tmp_path, xsum_articles):
    """Seconds: two summaries of one article scored live, then replayed with no weights; other weights refused."""
    require(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python is not installed")
    from dataclasses import replace

    from judgelab.models.zoo import ZOO, zoo_entry

    require(zoo_entry(SMOLLM2).offline_available(), f"offline weights of {SMOLLM2} not installed")
    key, article = xsum_articles["key"].iloc[0], xsum_articles["article"].iloc[0]
    authors = pd.DataFrame({"dataset": "xsum", "key": key, "author": [SMOLLM2, "human", "gpt4"],
                            "summary": ["A man was arrested.", "", "Police arrested a man on Friday."]})
    arts = pd.Series({key: article})
    fp = {"backend": "transformers", "gguf_sha256": ZOO[SMOLLM2].gguf_sha256}
    live = lk.summary_loglikelihoods(SMOLLM2, "ci", authors, arts, tmp_path, fp, progress=False)
    assert live.attrs["computed"]["calls"] == 2  # the empty summary is not asked
    assert live["n_tokens"].tolist()[1] == 0 and np.isnan(live["mean_logprob"].iloc[1])
    assert (live["logprob"].dropna() < 0).all() and live["judging_runtime"].str.startswith("transformers").all()
    replayed = lk.summary_loglikelihoods(SMOLLM2, replace(lk.likelihood_profile("ci"), replay=True), authors, arts,
                                         tmp_path, fp, progress=False)
    assert replayed.attrs["computed"]["calls"] == 0
    pd.testing.assert_frame_equal(replayed, live)
    assert not any(tmp_path.glob("stores/*-wal"))  # the store was closed and checkpointed
    with pytest.raises(lk.WeightsMismatch):
        lk.summary_loglikelihoods(SMOLLM2, "ci", authors, arts, tmp_path, {**fp, "gguf_sha256": "0" * 64})


@pytest.mark.slow  # about a minute: the book's stores replayed twice, besides the llama.cpp calls
def test_ci_run_live_then_replay(tmp_path, capsys):
    require(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python is not installed")
    from judgelab.cli import main
    from judgelab.models.zoo import zoo_entry

    require(zoo_entry(SMOLLM2).offline_available(), f"offline weights of {SMOLLM2} not installed")
    assert main(["run", "likelihood", "--profile", "ci", "--results-dir", str(tmp_path)]) == 0
    assert "calls computed" in capsys.readouterr().out
    ll = pd.read_csv(tmp_path / "likelihood.csv", dtype={"key": str})
    # every author of the 2 x 2 articles, the judge's own summary among them
    assert set(ll["dataset"]) == {"xsum", "cnn"} and ll.groupby("dataset")["key"].nunique().eq(2).all()
    assert (ll["author"] == SMOLLM2).sum() == 4 and ll["author"].nunique() >= 6
    ok = ll["n_tokens"] > 0
    assert (ll.loc[ok, "logprob"] < 0).all()
    assert np.allclose(ll.loc[ok, "mean_logprob"], ll.loc[ok, "logprob"] / ll.loc[ok, "n_tokens"])
    assert ll["likelihood_runtime"].str.startswith("llama.cpp").all()
    assert ll["judging_runtime"].str.startswith("transformers").all()
    lp = pd.read_csv(tmp_path / "likelihood_pairs.csv")
    assert lp[["recognition", "preference"]].notna().any().all()
    assert (pd.read_csv(tmp_path / "likelihood_regression.csv")["n_articles"] == 2).all()
    store = om.store_path(lk.likelihood_spec(SMOLLM2), tmp_path)
    assert store.is_file() and not any(tmp_path.glob("stores/*-wal"))  # closed and checkpointed

    from dataclasses import replace

    again = lk.run(replace(lk.likelihood_profile("ci"), replay=True), tmp_path, progress=False)
    assert again.computed[SMOLLM2]["calls"] == 0
    # the replay is the store's record; the CSV keeps six significant digits
    pd.testing.assert_frame_equal(again.loglikelihoods.reset_index(drop=True), ll, check_dtype=False, rtol=1e-5)


def test_cli_refuses_a_judge_without_rs_and_a_bad_size(capsys):
    from judgelab.cli import main

    assert main(["run", "likelihood", "--profile", "book", "--judges", "gpt4"]) == 2
    assert "not a judge of the open-models book run" in capsys.readouterr().err
    assert main(["run", "likelihood", "--profile", "book", "--judges", f"{SMOLLM2}=x"]) == 2
    assert "NAME=N" in capsys.readouterr().err
