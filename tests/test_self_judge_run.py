"""The Self-J ci profile live, stage by stage: training labels and the untrained methods on GPT-4-scored answers."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import require
from judgelab.experiments.self_judge import evaluation as ev
from judgelab.experiments.self_judge import run as sjrun
from judgelab.experiments.self_judge import selfeval as sev


def test_paper_comparison_lays_out_the_papers_rows_beside_ours():
    rng = np.random.default_rng(0)
    q = rng.normal(size=40)
    df = pd.DataFrame({"model": np.repeat(["A", "B"], 20), "gpt4_mean": q, "good": q + rng.normal(0, .5, 40),
                       "noise": rng.normal(size=40)})
    pearson = ev.pearson_table(df, ["good", "noise"])
    t = ev.paper_comparison(pearson, {"good": ("with reference", "Cosine"),
                                      "noise": ("without reference", "Answer length (words)")})
    assert len(t) == len(ev.PAPER_PEARSON) + 1  # every paper row, plus our length row
    cos = t[(t["setting"] == "with reference") & (t["method"] == "Cosine")].iloc[0]
    assert cos["paper_r100"] == 48.25 and cos["ours_column"] == "good"
    pooled = pearson[(pearson["method"] == "good") & (pearson["model"] == "pooled")].iloc[0]
    assert cos["ours_pooled_r100"] == pytest.approx(100 * pooled["r"])
    avg = pearson[(pearson["method"] == "good") & (pearson["model"] == "average")].iloc[0]
    assert cos["ours_average_r100"] == pytest.approx(100 * avg["r"]) and cos["n"] == 40
    length = t[t["method"] == "Answer length (words)"].iloc[0]
    assert math.isnan(length["paper_r100"])
    missing = t[t["method"] == "UltraRM-13b"].iloc[0]
    assert missing["paper_r100"] == 52.98 and math.isnan(missing["ours_pooled_r100"])
    assert t["setting"].tolist() == sorted(t["setting"].tolist(), key=lambda s: s != "with reference")
    with pytest.raises(ValueError, match="no method 'nope'"):
        ev.paper_comparison(pearson, {"nope": ("with reference", "Cosine")})


class Loglik:
    name = "loglik"

    def __init__(self):
        self.seen = []

    def loglikelihood(self, prompts, continuations):
        self.seen.extend(continuations)
        return [{"logprob": -2.0 * len(c), "mean_logprob": -2.0, "n_tokens": len(c)} for c in continuations]


def test_answer_logprobs_leaves_empty_answers_unscored():
    m = Loglik()
    t = sev.answer_logprobs(m, ["Q1", "Q2", "Q3"], ["abc", "  ", "de"])
    assert m.seen == ["abc", "de"]  # the empty answer is never sent
    assert t["valid"].tolist() == [True, False, True]
    assert t["mean_logprob"][0] == -2.0 and math.isnan(t["mean_logprob"][1])
    assert t["perplexity"][2] == pytest.approx(math.exp(2.0)) and t["n_tokens"].tolist() == [3, 0, 2]
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        sev.answer_logprobs(m, ["a", "b"], ["x"])


def test_evaluation_rows_take_every_answer_of_the_shortest_questions():
    try:
        rows = sjrun.evaluation_rows(sjrun.SELF_JUDGE_PROFILES["ci"])
    except Exception as err:  # pragma: no cover - data missing
        require(False, f"evaluation data not available: {err}")
    assert len(rows) == 8  # 2 questions x 4 responding models
    assert (rows.groupby("question_id").size() == 4).all() and (rows["eval_set"] == "vicuna_eval").all()
    full = sjrun.evaluation_rows(replace(sjrun.SELF_JUDGE_PROFILES["ci"], eval_questions=None))
    assert len(full) == 640
    vic = full[full["eval_set"] == "vicuna_eval"]
    size = (vic["question"].str.len() + vic["reference"].str.len() + vic["response"].str.len()).groupby(
        vic["question_id"]).max()
    assert set(rows["question_id"]) == set(size.nsmallest(2).index)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    import importlib.util

    from judgelab.experiments.self_judge import embedding
    from judgelab.models.zoo import zoo_entry

    require(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python not installed")
    entry = zoo_entry("smollm2-135m-instruct")
    require(entry.offline_available(), f"offline weights not installed: {entry.pip}")
    try:
        embedding.package_zip()
    except embedding.EmbeddingError as err:
        require(False, str(err))
    out = tmp_path_factory.mktemp("selfj")
    t0 = time.process_time()
    paths = sjrun.run_self_judge("ci", ["answers", "labels", "evaluate", "perplexity"], results_dir=out)
    return out, paths, time.process_time() - t0


def test_ci_answers_summary_counts_every_status(ci_run):
    out, paths, _ = ci_run
    summary = pd.read_csv(paths["answers_summary.csv"])
    prof = sjrun.SELF_JUDGE_PROFILES["ci"]
    train = summary[summary["split"] == "train"]
    assert train[["ok", "empty", "too long", "missing"]].to_numpy().sum() == prof.n_train * prof.train_samples
    # a replay of a store that lacks some answers summarises them as missing, not an error
    bigger = replace(prof, n_train=prof.n_train + 1, replay=True)
    got = sjrun.stage_answers(bigger, out)
    s2 = pd.read_csv(got["answers_summary.csv"])
    # the split's first n_train + 1 rows: one instruction moves from held-out to train (its answers are the same
    # calls: seeds depend on the instruction and sample, not the split), and a new held-out one is missing
    assert s2["missing"].sum() == prof.best_of_n
    assert s2.loc[s2["split"] == "train", "ok"].sum() == (prof.n_train + 1) * prof.train_samples


def test_ci_training_labels(ci_run):
    out, paths, elapsed = ci_run
    labels = pd.read_csv(paths["train_labels.csv"])
    prof = sjrun.SELF_JUDGE_PROFILES["ci"]
    assert len(labels) == prof.n_train * prof.train_samples
    ok = labels[labels["valid"]]
    assert ((ok["self_eval"] >= 0) & (ok["self_eval"] <= 9)).all()
    assert labels.loc[~labels["valid"], "self_eval"].isna().all()  # invalid: NaN, never 0
    assert ((labels["cosine"] > -1) & (labels["cosine"] <= 1)).all()
    want = sev.combine_mean(labels["self_eval"].to_numpy(), labels["cosine"].to_numpy())
    np.testing.assert_allclose(labels["combined_mean"], want, rtol=1e-5)
    assert (labels.loc[ok.index, "label"] == np.clip(np.round(want[ok.index]), 0, 9)).all()
    for col in ("fingerprint_id", "weights_sha256", "profile", "run_date", "hardware"):
        assert labels[col].notna().all(), col
    assert elapsed < 120, f"ci stages took {elapsed:.0f} s of CPU"


def test_ci_evaluation_tables(ci_run):
    out, paths, _ = ci_run
    scores = pd.read_csv(paths["eval_scores.csv"])
    assert len(scores) == 8
    for col in ("selfeval_ref", "selfeval_free"):
        valid = scores[f"{col}_valid"]
        assert scores.loc[valid, col].between(0, 9).all() and scores.loc[~valid, col].isna().all()
    assert scores["logprob"].lt(0).all() and scores["n_tokens"].gt(0).all()
    assert scores["length_words"].tolist() == [float(len(r.split())) for r in sjrun.evaluation_rows(
        sjrun.SELF_JUDGE_PROFILES["ci"])["response"]]
    pearson = pd.read_csv(paths["pearson.csv"])
    assert set(sjrun.EVAL_METHODS) <= set(pearson["method"])
    n_scored = pearson[(pearson["model"] == "pooled") & (pearson["method"] == "selfeval_ref")].iloc[0]
    assert n_scored["n"] + n_scored["n_unscored"] == 8
    assert "logprob" in set(pearson["method"])  # the perplexity stage joined its column
    paper = pd.read_csv(paths["pearson_paper.csv"])
    assert paper["paper_r100"].notna().sum() == len(ev.PAPER_PEARSON)
    selective = pd.read_csv(paths["selective_gpt4.csv"]).set_index("method")
    assert set(sjrun.EVAL_METHODS) <= set(selective.index)
    assert (selective["area"] <= selective["oracle_area"] + 1e-9).all()
    curves = pd.read_csv(paths["selective_curves.csv"])
    assert {"oracle", "random"} <= set(curves["method"])
    # a replay of the same stores gives the same scores, loading no model
    again = sjrun.evaluation_scores(replace(sjrun.SELF_JUDGE_PROFILES["ci"], replay=True), out)
    cols = [c for c in again.columns if c in scores.columns]
    pd.testing.assert_frame_equal(again[cols].reset_index(drop=True), scores[cols], check_dtype=False, atol=1e-5,
                                  check_exact=False)


@pytest.mark.slow
def test_ci_train_evaluate_trained_and_best_of_n(ci_run):
    """The rest of the ci pipeline on the same stores: two variants trained, evaluated, best-of-N rated by
    another model (minutes of CPU: slow)."""
    out, _, _ = ci_run
    paths = sjrun.run_self_judge("ci", ["train", "evaluate_trained", "best_of_n"], results_dir=out)
    runs = pd.read_csv(paths["training_runs.csv"]).set_index("variant")
    assert list(runs.index) == ["self_j", "no_distill"] and (runs["steps"] == 2).all()
    assert runs.loc["no_distill", "kl"] == 0 and runs.loc["self_j", "kl"] == 2
    log = pd.read_csv(paths["training_log.csv"])
    assert (log.loc[log["variant"] == "no_distill", "kl"] >= 0).all()
    trained = pd.read_csv(paths["eval_trained.csv"])
    assert len(trained) == 8 and {"selfj_self_j_ref", "selfj_self_j_free"} <= set(trained.columns)
    paper = pd.read_csv(paths["pearson_paper_all.csv"])
    assert "Self-J" in set(paper.loc[paper["ours_column"] == "selfj_self_j_ref", "method"])
    rates = pd.read_csv(paths["best_of_n.csv"])
    assert set(rates["baseline"]) == {"first sample", "reference"} and set(rates["best_of"]) == {1, 2}
    # best of 1 is the first sample itself: a tie by definition, never rated
    one = rates[(rates["best_of"] == 1) & (rates["baseline"] == "first sample")].iloc[0]
    assert one["win"] == 0.5 and one["n_identical"] == one["n"] == 2
    assert (rates["picker"] != rates["rater"]).all()
    # a second run trains nothing and replays every call
    again = sjrun.run_self_judge(replace(sjrun.SELF_JUDGE_PROFILES["ci"], replay=True),
                                 ["evaluate_trained", "best_of_n"], results_dir=out)
    pd.testing.assert_frame_equal(pd.read_csv(again["best_of_n.csv"]), rates)
    # a run restricted to one variant (as the book's ablations were run) adds to the tables, never drops
    # the variants it was not asked for
    only = sjrun.run_self_judge("ci", ["train", "evaluate_trained"], results_dir=out, variants=["no_distill"])
    pd.testing.assert_frame_equal(pd.read_csv(only["training_runs.csv"]).set_index("variant"), runs)
    pd.testing.assert_frame_equal(pd.read_csv(only["eval_trained.csv"]), trained)
    assert "Self-J" in set(pd.read_csv(only["pearson_paper_all.csv"])["method"])


def test_a_run_of_some_variants_keeps_the_others_rows_and_columns(tmp_path):
    """``--variants cosine_only`` must add the ablation to the committed tables, not replace the full Self-J
    (before this, the last run's variants were all a table held)."""
    runs = tmp_path / "training_runs.csv"
    pd.DataFrame({"variant": ["self_j", "no_distill"], "steps": [98, 5]}).to_csv(runs, index=False)
    new = pd.DataFrame({"variant": ["cosine_only", "no_distill"], "steps": [98, 98]})
    got = sjrun.keep_other_variants(new, runs, ["cosine_only", "no_distill"])
    assert got.to_dict("list") == {"variant": ["self_j", "cosine_only", "no_distill"], "steps": [98, 98, 98]}
    assert sjrun.keep_other_variants(new, tmp_path / "absent.csv", ["cosine_only", "no_distill"])[
        "variant"].tolist() == ["cosine_only", "no_distill"]

    wide = tmp_path / "eval_trained.csv"
    pd.DataFrame({"id": [1, 2], "selfj_self_j_ref": [3.0, 4.0], "selfj_self_j_free": [5.0, 6.0],
                  "selfj_cosine_only_ref": [0.0, 0.0]}).to_csv(wide, index=False)
    new = pd.DataFrame({"id": [2, 1], "selfj_cosine_only_ref": [7.0, 8.0]})
    got = sjrun.keep_other_variant_columns(new, wide, ["cosine_only"])
    assert list(got.columns) == ["id", "selfj_self_j_ref", "selfj_self_j_free", "selfj_cosine_only_ref"]
    assert got.set_index("id").loc[1].tolist() == [3.0, 5.0, 8.0]  # matched on id, the new run's own scores
    assert sjrun.evaluated_variants(got) == ["self_j", "cosine_only"]
    with pytest.raises(ValueError, match="scores other answers"):
        sjrun.keep_other_variant_columns(pd.DataFrame({"id": [9], "selfj_cosine_only_ref": [1.0]}), wide,
                                         ["cosine_only"])
