"""What the Self-J chapter reads and derives: stage progress counted in the stores (read-only), the derived
tables (paired r differences, invalid answers, label distributions, data overview), the two figures, and the
ci profile end to end through :func:`chapter.load_chapter`."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from dataclasses import replace

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import require

matplotlib.use("Agg")

from judgelab import plots
from judgelab.experiments.self_judge import chapter as C
from judgelab.experiments.self_judge import findings as F
from judgelab.experiments.self_judge import run as sjrun
from judgelab.stats import pearson
from judgelab.store import CallStore

CI = sjrun.SELF_JUDGE_PROFILES["ci"]


def _data_or_skip():
    try:
        return sjrun.instructions(CI)
    except Exception as err:  # noqa: BLE001 - data missing: skip locally, fail in CI
        require(False, f"Self-J data not available: {err}")


def _put(path, labels, identity, created=None):
    store = CallStore(path, identity=identity)
    store.register_model("m", {"name": "m"}, "fp")
    rows = [(hashlib.sha256(lab.encode()).hexdigest(), lab, {"text": "x"}) for lab in labels]
    store.put_many("fp", "generate", rows)
    store.close()
    if created is not None:  # the stamps a real run would have left
        conn = sqlite3.connect(path)
        for lab, t in zip(labels, created):
            conn.execute("UPDATE calls SET created = ? WHERE label = ?", (t, lab))
        conn.commit()
        conn.close()


# --- progress -------------------------------------------------------------------------------------------------
def test_stage_progress_counts_the_stores_work_and_reads_tables_as_done(tmp_path):
    ins = _data_or_skip()
    prof = replace(CI, replay=True)
    policy = sjrun.store_path(prof.policy, tmp_path)
    judge = sjrun.store_path(prof.judge_model, tmp_path)
    first = ins.train.iloc[0]
    # one training answer stored, plus one unplanned label that must not count
    _put(policy, [f"answer/{first.source}/{first.id}/0", "answer/nowhere/x/0"], sjrun.om.judge_identity(prof.policy))
    ev_ids = sjrun.evaluation_rows(prof)["id"].tolist()
    _put(judge, [f"eval/ref/{i}" for i in ev_ids] + [f"eval/free/{i}" for i in ev_ids],
         sjrun.om.judge_identity(prof.judge_model))
    p = C.stage_progress(prof, tmp_path).set_index("stage")
    total_answers = prof.n_train * prof.train_samples + prof.n_heldout * prof.best_of_n
    assert p.loc["answers", "state"] == C.RUNNING and p.loc["answers", "done"] == 1
    assert p.loc["answers", "total"] == total_answers
    # every evaluation call stored but no table written: computed, not done
    assert p.loc["evaluate", "state"] == C.COMPUTED and p.loc["evaluate", "done"] == p.loc["evaluate", "total"] == 16
    assert p.loc["train", "state"] == C.NOT_STARTED and p.loc["train", "total"] == len(prof.variants)
    assert p.loc["evaluate", "missing_tables"].startswith("eval_scores.csv")
    # tables with part of the work stored (one of the variants trained, as a --variants run leaves them) are
    # partial, not done; with all of it, done
    for name in C.STAGE_TABLES["train"]:
        pd.DataFrame({"x": [1]}).to_csv(tmp_path / name, index=False)
    st = CallStore(judge, identity=sjrun.om.judge_identity(prof.judge_model))
    st.set_meta(f"selfj:train:{prof.variants[0]}", {"variant": prof.variants[0]})
    st.close()
    p2 = C.stage_progress(prof, tmp_path)
    row = p2.set_index("stage").loc["train"]
    assert row["state"] == C.PARTIAL and row["tables"] == "2 of 2" and (row["done"], row["total"]) == (1, 2)
    assert "in these tables: the stores hold 1 of 2 judge variants trained" in F.partial_sentence(p2, "train")
    assert F.partial_sentence(p2, "evaluate") == ""  # not partial: nothing to say
    assert "`train`, 1 of 2" in F.progress_sentence(p2)  # counted as running, not complete
    st = CallStore(judge, identity=sjrun.om.judge_identity(prof.judge_model))
    st.set_meta(f"selfj:train:{prof.variants[1]}", {"variant": prof.variants[1]})
    st.close()
    p3 = C.stage_progress(prof, tmp_path).set_index("stage")
    assert p3.loc["train", "state"] == C.DONE
    # nothing was written to the stores
    assert C._stored_labels(policy, [f"answer/{first.source}/{first.id}/0"]) == 1


def test_answer_timing_takes_the_median_gap_and_leaves_out_pauses(tmp_path):
    prof = replace(CI, replay=True)
    path = sjrun.store_path(prof.policy, tmp_path)
    assert C.answer_timing(prof, tmp_path).empty  # no store: no timing
    labels = [f"answer/s/{i}/0" for i in range(5)]
    stamps = ["2026-12-01T12:00:00Z", "2026-12-01T12:00:20Z", "2026-12-01T12:00:40Z", "2026-12-01T12:01:40Z",
              "2026-12-01T15:00:00Z"]  # gaps 20, 20, 60 and a 3-hour pause
    _put(path, labels + ["eval/loglik/q"], sjrun.om.judge_identity(prof.policy), stamps + ["2026-12-02T00:00:00Z"])
    t = C.answer_timing(prof, tmp_path).iloc[0]
    assert t["answers"] == 5 and t["median_gap_s"] == 20 and t["mean_gap_s"] == pytest.approx(100 / 3)
    assert t["pauses_over_1h"] == 1 and t["first"] == "2026-12-01 12:00" and t["last"] == "2026-12-01 15:00"


# --- paired differences -----------------------------------------------------------------------------------------
def _scores(n_q=60, seed=0):
    rng = np.random.default_rng(seed)
    q = np.repeat(rng.normal(size=n_q), 4) + rng.normal(0, 1, 4 * n_q)
    return pd.DataFrame({"eval_set": "v", "question_id": np.repeat(np.arange(n_q), 4),
                         "model": np.tile(list("ABCD"), n_q), "gpt4_mean": q,
                         "good": q + rng.normal(0, 0.5, 4 * n_q), "noise": rng.normal(size=4 * n_q)})


def test_pearson_differences_are_paired_and_follow_the_sign():
    s = _scores()
    d = C.pearson_differences(s, [("good", "noise"), ("noise", "good"), ("good", "good")], n_resamples=500)
    up, down, same = d.iloc[0], d.iloc[1], d.iloc[2]
    assert up["r_a"] == pytest.approx(pearson(s["good"], s["gpt4_mean"])["r"])
    assert up["low"] > 0 and down["high"] < 0 and up["diff"] == pytest.approx(-down["diff"])
    assert same["diff"] == 0 and same["low"] == same["high"] == 0  # a method against itself: exactly no difference
    assert up["n"] == 240 and up["clusters"] == 60 and up["note"] == ""


def test_pearson_differences_leave_out_unscored_answers_and_name_what_is_missing():
    s = _scores()
    s.loc[:9, "good"] = np.nan
    d = C.pearson_differences(s, [("good", "noise"), ("good", "absent")], n_resamples=200)
    assert d.iloc[0]["n"] == 230
    keep = s["good"].notna()
    assert d.iloc[0]["r_b"] == pytest.approx(pearson(s.loc[keep, "noise"], s.loc[keep, "gpt4_mean"])["r"])
    assert np.isnan(d.iloc[1]["diff"]) and "no column absent" in d.iloc[1]["note"]
    few = C.pearson_differences(_scores(n_q=3), [("good", "noise")], n_resamples=200).iloc[0]
    assert np.isfinite(few["diff"]) and np.isnan(few["low"]) and "only 3 questions" in few["note"]


def test_claims_table_verdicts_from_the_interval():
    d = pd.DataFrame([{"a": "selfeval_ref_cosine", "b": "selfeval_ref", "diff": 0.1, "low": 0.05, "high": 0.15, "n": 640},
                      {"a": "selfeval_ref_cosine", "b": "cosine", "diff": -0.1, "low": -0.15, "high": -0.05, "n": 640},
                      {"a": "selfeval_ref", "b": "selfeval_free", "diff": 0.01, "low": -0.05, "high": 0.07, "n": 640}])
    t = C.claims_table(d).set_index(["a", "b"])
    assert t.loc[("selfeval_ref_cosine", "selfeval_ref"), "verdict"] == "supported"
    assert t.loc[("selfeval_ref_cosine", "cosine"), "verdict"] == "contradicted"
    assert t.loc[("selfeval_ref", "selfeval_free"), "verdict"] == "not distinguishable"
    assert t.loc[("selfj_self_j_ref", "selfeval_ref_cosine"), "verdict"] == "not run"
    row = t.loc[("selfeval_ref_cosine", "selfeval_ref")]
    assert row["paper_diff_r100"] == pytest.approx(59.98 - 47.85) and row["ours_diff_r100"] == pytest.approx(10)


# --- derived tables -------------------------------------------------------------------------------------------------
def test_invalid_counts_and_label_distribution():
    scores = pd.DataFrame({"selfeval_ref": [3.0, np.nan, 5.0], "selfeval_ref_valid": [True, False, True],
                           "selfeval_ref_digit_mass": [0.1, 0.0, 0.3], "logprob": [-1.0, -2.0, -1.5],
                           "logprob_valid": [True, True, True]})
    inv = C.invalid_counts(scores).set_index("method")
    assert inv.loc["selfeval_ref", "invalid"] == 1 and inv.loc["selfeval_ref", "scored"] == 2
    assert inv.loc["selfeval_ref", "median_digit_mass"] == pytest.approx(0.1) and inv.loc["logprob", "invalid"] == 0
    labels = pd.DataFrame({"self_eval": [2.4, np.nan, 6.6], "cosine": [0.0, 0.5, 1.0],
                           "combined_mean": [4.4, np.nan, 7.8]})
    dist = C.label_distribution(labels).set_index("variant")
    assert dist.loc["self_j", "4"] == 1 and dist.loc["self_j", "8"] == 1 and dist.loc["self_j", "missing"] == 1
    assert dist.loc["cosine_only", "missing"] == 0  # the cosine needs no self-evaluation
    # cosine 0, 0.5, 1 -> 4.5, 6.75, 9 on 0-9 -> digits 4 (half to even), 7, 9
    assert [dist.loc["cosine_only", str(k)] for k in (4, 5, 7, 9)] == [1, 0, 1, 1]


def test_per_model_table_formats_r_with_its_interval():
    pear = pd.DataFrame({"method": ["cosine"] * 4, "model": ["A", "B", "pooled", "average"],
                         "r": [0.3, np.nan, 0.41, 0.3], "r_low": [0.1, np.nan, 0.25, np.nan],
                         "r_high": [0.5, np.nan, 0.55, np.nan], "n": [160, 2, 640, 162]})
    t = C.per_model_table(pear).iloc[0]
    assert t["method"] == "Cosine" and t["A"] == "0.30 [0.10, 0.50]" and t["B"] == "n/a"
    assert t["pooled"] == "0.41 [0.25, 0.55]" and t["average"] == "0.30" and t["n"] == 640


def test_data_overview_counts_every_instruction_and_finds_no_leak():
    ins = _data_or_skip()
    d = C.data_overview(CI)
    s = d["sources"]
    assert s["kept"].sum() == len(ins.loaded.rows) and s["refused"].sum() == len(ins.loaded.refused)
    assert s["train"].sum() == CI.n_train and s["heldout"].sum() == CI.n_heldout
    assert d["leakage"]["overlapping"].iloc[0] == 0 and d["leakage"]["selected"].iloc[0] == CI.n_train + CI.n_heldout
    assert d["evaluation"]["answers"].sum() == 640 and d["refused"]["n"].sum() == s["refused"].sum()


# --- figures -------------------------------------------------------------------------------------------------------
def test_selective_curves_plot_each_method_with_oracle_and_random():
    curves = pd.concat([pd.DataFrame({"method": m, "coverage": [0.5, 1.0], "mean_quality": v})
                        for m, v in (("a", [4.5, 4.0]), ("b", [4.2, 4.0]), ("oracle", [4.9, 4.0]),
                                     ("random", [4.0, 4.0]))], ignore_index=True)
    fig = plots.selective_curves(curves, [("one", ["a", "b"]), ("two", ["c"])], names={"a": "A", "oracle": "Oracle"})
    ax1, ax2 = fig.axes
    assert [ln.get_label() for ln in ax1.get_lines()] == ["A", "b", "Oracle", "random"]
    np.testing.assert_allclose(ax1.get_lines()[0].get_ydata(), [4.5, 4.0])
    assert not ax2.get_lines() and any("not computed yet" in t.get_text() for t in ax2.texts)
    empty = plots.selective_curves(pd.DataFrame(), [("one", ["a"])], message="pending: 3 of 8")
    assert any("pending: 3 of 8" in t.get_text() for t in empty.axes[0].texts)


def test_pearson_intervals_plot_ours_and_the_papers_numbers():
    paper = pd.DataFrame({"setting": ["with reference", "with reference", "without reference"],
                          "method": ["Cosine", "Self-J", "Perplexity"], "paper_r100": [48.25, 70.34, 11.68],
                          "ours_pooled_r100": [40.0, np.nan, np.nan], "ours_pooled_low": [30.0, np.nan, np.nan],
                          "ours_pooled_high": [50.0, np.nan, np.nan]})
    fig = plots.pearson_intervals(paper)
    with_ref, without = fig.axes
    assert [t.get_text() for t in with_ref.get_yticklabels()] == ["Cosine", "Self-J"]
    dots = with_ref.collections[-1].get_offsets()  # the paper's diamonds
    assert sorted(np.asarray(dots)[:, 0].tolist()) == [48.25, 70.34]
    assert any("not evaluated yet" in t.get_text() for t in without.texts)  # none of ours there
    assert all(any("not evaluated" in t.get_text() for t in ax.texts) for ax in plots.pearson_intervals(
        pd.DataFrame()).axes)


# --- the ci profile through the loader -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ci_chapter(tmp_path_factory):
    from judgelab.experiments.self_judge import embedding
    from judgelab.models.zoo import zoo_entry

    require(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python not installed")
    require(zoo_entry("smollm2-135m-instruct").offline_available(), "offline weights not installed")
    try:
        embedding.package_zip()
    except embedding.EmbeddingError as err:
        require(False, str(err))
    out = tmp_path_factory.mktemp("selfj-chapter")
    stages = ["speed", "answers", "labels", "evaluate", "perplexity"]
    return C.load_chapter("ci", results_dir=out, stages=stages), out


def test_ci_chapter_reads_every_table_its_stages_wrote(ci_chapter):
    ch, out = ci_chapter
    ran = ["speed", "answers", "labels", "evaluate", "perplexity"]
    written = {p.name for p in out.glob("*.csv")}
    assert written == {n for s in ran for n in C.STAGE_TABLES[s]}  # STAGE_TABLES names what run.py writes
    p = ch.progress.set_index("stage")
    for s in ran:
        assert p.loc[s, "state"] == C.DONE and p.loc[s, "done"] == p.loc[s, "total"] > 0, s
    assert p.loc["train", "state"] == C.NOT_STARTED and not ch.stage_done("train")
    assert ch.scores() is not None and len(ch.scores()) == 8
    # a replay of the same folder reads the same tables and runs nothing
    again = C.load_chapter(replace(CI, replay=True), results_dir=out)
    assert set(again.tables) == set(ch.tables)
    pd.testing.assert_frame_equal(again.get("pearson.csv"), ch.get("pearson.csv"))


@pytest.mark.slow
def test_ci_chapter_trained_stages(ci_chapter):
    """The remaining ci stages (training two variants: minutes of CPU) write the tables STAGE_TABLES names."""
    _, out = ci_chapter
    full = C.load_chapter("ci", results_dir=out)
    assert all(full.stage_done(s) for s in C.STAGE_TABLES)
    assert (full.progress["done"] == full.progress["total"]).all()
    assert {"selfj_self_j_ref", "selfj_no_distill_free"} <= set(full.scores().columns)


def test_comparison_pairs_cover_the_claims_length_combinations_and_ablations():
    pairs = C.comparison_pairs(["self_j", "no_distill"], "mean")
    assert ("selfeval_ref_cosine", "selfeval_ref") in pairs and ("selfj_self_j_free", "selfeval_free") in pairs
    assert ("selfj_self_j_free", "length_words") in pairs and ("logprob", "length_words") in pairs
    assert ("selfeval_ref_cosine_product", "selfeval_ref_cosine_mean") in pairs
    assert ("selfeval_ref_cosine_mean", "selfeval_ref_cosine_mean") not in pairs
    assert ("selfj_self_j_free", "selfj_no_distill_free") in pairs and len(pairs) == len(set(pairs))
    assert ("selfeval_ref_cosine_mean", "selfeval_ref_cosine_rank_mean") in C.comparison_pairs([], "rank_mean")


def test_the_api_profile_keeps_its_best_of_n_apart_from_the_book(tmp_path):
    """api shares the book's folder and stores (same answers, an OpenAI rater): its best-of-N tables carry
    ``_api`` and the api chapter reads only those, never the book's rater's."""
    from judgelab.experiments.self_judge import run as sjrun

    assert sjrun.bon_suffix(sjrun.self_judge_profile("api")) == "_api"
    assert sjrun.bon_suffix(sjrun.self_judge_profile("book")) == ""
    pd.DataFrame({"rater": ["book rater"]}).to_csv(tmp_path / "best_of_n.csv", index=False)
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "pearson.csv", index=False)
    book = C.read_tables(tmp_path)
    api = C.read_tables(tmp_path, "_api")
    assert book["best_of_n.csv"]["rater"][0] == "book rater"
    assert "best_of_n.csv" not in api and "pearson.csv" in api  # the api run has not rated yet
    pd.DataFrame({"rater": ["openai:gpt-4o-mini"]}).to_csv(tmp_path / "best_of_n_api.csv", index=False)
    assert C.read_tables(tmp_path, "_api")["best_of_n.csv"]["rater"][0] == "openai:gpt-4o-mini"


def _length_world(seed=0, n_q=60):
    """Four answers per question; GPT-4's score = length effect + content; one method reads only length,
    one only content, one reads length backwards."""
    rng = np.random.default_rng(seed)
    n = 4 * n_q
    length = rng.integers(20, 400, size=n).astype(float)
    content = rng.normal(size=n)
    quality = 0.8 * np.log1p(length) + content + 0.3 * rng.normal(size=n)
    return pd.DataFrame({"eval_set": "vicuna_eval", "question_id": np.repeat(np.arange(n_q), 4),
                         "length_words": length, "gpt4_mean": quality,
                         "reads_length": np.log1p(length) + 0.1 * rng.normal(size=n),
                         "reads_content": content + 0.5 * rng.normal(size=n),
                         "against_length": -np.log1p(length) + 0.1 * rng.normal(size=n)})


def test_length_controlled_separates_length_from_content():
    import statsmodels.api as sm

    d = _length_world()
    t = C.length_controlled(d, ["reads_length", "reads_content", "against_length", "absent"]).set_index("method")
    # the partial r is the correlation of the two residuals on log length (statsmodels OLS)
    L = sm.add_constant(np.log1p(d["length_words"]))
    ex = sm.OLS(d["reads_content"], L).fit().resid
    eq = sm.OLS(d["gpt4_mean"], L).fit().resid
    assert t.loc["reads_content", "partial_r"] == pytest.approx(np.corrcoef(ex, eq)[0, 1], abs=1e-9)
    # reading length correlates with GPT-4 but keeps nothing once length is fixed; content keeps its signal
    assert t.loc["reads_length", "r_quality_low"] > 0
    assert t.loc["reads_length", "partial_r_low"] < 0 < t.loc["reads_length", "partial_r_high"]
    assert t.loc["reads_content", "partial_r_low"] > 0.3
    assert t.loc["against_length", "r_length_high"] < 0 and t.loc["against_length", "r_quality_high"] < 0
    assert t.loc["reads_length", "clusters"] == 60 and t.loc["reads_length", "n"] == 240
    assert "no column absent" in t.loc["absent", "note"]
    small = C.length_controlled(d[d["question_id"] < 3], ["reads_content"])
    assert np.isnan(small["partial_r_low"].iloc[0]) and "only 3 questions" in small["note"].iloc[0]


def test_length_methods_take_every_trained_ablation_present():
    cols = ["cosine", "logprob", "selfj_self_j_ref", "selfj_self_j_free", "selfj_no_distill_free",
            "selfj_cosine_only_ref", "selfj_cosine_only_free", "selfj_cosine_only_ref_valid", "length_words"]
    got = C.length_methods(pd.DataFrame(columns=cols))
    assert got == ["cosine", "logprob", "selfj_self_j_ref", "selfj_self_j_free", "selfj_cosine_only_ref",
                   "selfj_cosine_only_free", "selfj_no_distill_free"]
