"""The audit of the released outputs (issue 20, item 3): hand-made records with known answers, then the real files."""

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments import audit as au


def test_upstream_bounds_by_hand():
    # ("1","2"): exact 1/2 (0.9 + 0.7) = 0.8; ("2","1"): 2nd tokens at most min(p, 1-p): 1/2 (0.1 + 0.3) = 0.2
    # ("1","1"): 1/2 (0.6 + [0, min(0.8, 0.2)]) -> [0.3, 0.4]; ("2","2"): 1/2 ([0, 0.4] + 0.9) -> [0.45, 0.65]
    low, high = au.upstream_bounds(["1", "2", "1", "2", "x"], ["2", "1", "1", "2", "2"],
                                   [0.9, 0.9, 0.6, 0.6, 0.5], [0.7, 0.7, 0.8, 0.9, 0.5])
    assert low[:4] == pytest.approx([0.8, 0.0, 0.3, 0.45])
    assert high[:4] == pytest.approx([0.8, 0.2, 0.4, 0.65])
    assert np.isnan(low[4]) and np.isnan(high[4])


def _records(n, reversed_, seed=0):
    """Records scored by the upstream formula (top-2 tokens "1"/"2" with the given probabilities), or 1 - it."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        f, b = rng.choice(["1", "2"]), rng.choice(["1", "2"])
        pf, pb = rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0)
        p = {"1": (pf if f == "1" else 1 - pf), "2": (pf if f == "2" else 1 - pf)}
        q = {"1": (pb if b == "1" else 1 - pb), "2": (pb if b == "2" else 1 - pb)}
        s = 0.5 * (p["1"] + q["2"])  # P(own) forward + P(own) backward, as the code's four cases give
        rows.append({"key": f"k{i}", "model": "human", "forward_comparison": f, "backward_comparison": b,
                     "forward_probability": pf, "backward_probability": pb,
                     "self_preference": 1 - s if reversed_ else s})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("reversed_", [False, True])
def test_classify_and_sign_tell_a_reversed_file(reversed_):
    df = _records(200, reversed_)
    lab = au.classify_scores(df.self_preference, df.forward_comparison, df.backward_comparison,
                             df.forward_probability, df.backward_probability)
    twelve = (df.forward_comparison == "1") & (df.backward_comparison == "2")
    assert set(lab[twelve]) == {"reversed" if reversed_ else "formula"}
    assert "neither" not in set(lab)
    agree, n = au.sign_agreement(df.self_preference, df.forward_comparison, df.backward_comparison)
    assert n > 50 and agree == (0.0 if reversed_ else 1.0)


def test_a_score_no_reading_allows_is_neither():
    # answers "2" then "1" (other chosen twice) with top-1 probabilities 0.99: the score is at most 0.01
    lab = au.classify_scores([0.4], ["2"], ["1"], [0.99], [0.99])
    assert lab.tolist() == ["neither"]


def test_orientation_verdicts():
    t = pd.DataFrame({"formula_share_12": [1.0, 0.0, np.nan, np.nan, 0.5], "reversed_share_12": [0.0, 1.0, np.nan, np.nan, 0.5],
                      "sign_agreement": [0.99, 0.0, 0.99, 0.01, 0.5]})
    assert au.orientation(t).tolist() == ["as designed", "reversed", "as designed", "reversed", "unclear"]
    # the exact test overrides the sign test where it exists
    t2 = t.assign(sign_agreement=[0.0, 1.0, 0.99, 0.01, 0.5])
    assert au.orientation(t2).tolist()[:2] == ["as designed", "reversed"]


def test_same_prompts_reversed_twin():
    a = _records(100, False)
    b = a.copy()
    b["self_preference"] = 1 - a["self_preference"]
    same = au.compare_same_prompts(a, a, ("forward_comparison", "backward_comparison"), "self_preference")
    rev = au.compare_same_prompts(a, b, ("forward_comparison", "backward_comparison"), "self_preference")
    assert same["same_answers"] == 1 and same["score_corr"] == pytest.approx(1) and same["same_score"] == 1
    assert rev["same_answers"] == 1 and rev["score_corr"] == pytest.approx(-1) and rev["same_score_reversed"] == 1
    flipped = a.assign(forward_comparison=a.forward_comparison.map({"1": "2", "2": "1"}),
                       backward_comparison=a.backward_comparison.map({"1": "2", "2": "1"}))
    assert au.compare_same_prompts(a, flipped, ("forward_comparison", "backward_comparison"),
                                   "self_preference")["flipped_answers"] == 1


def test_random_label_subsets():
    r = pd.DataFrame({"random_labels": [["gpt4", "human"], ["human", "gpt4"], ["gpt4", "claude"]]})
    s = au.random_label_subsets(r, "gpt4")
    assert s["correct"].index.tolist() == [0, 2] and s["wrong"].index.tolist() == [1]
    assert au.own_source("xsum_500_ft_gpt35") == "gpt35"


def _effect(corrected, low, high, reversed_=True, printed="stored"):
    rows = [dict(dataset="xsum", evaluator="gpt4", condition="correct", reversed=False, stored=0.73, corrected=0.73,
                 corrected_low=0.72, corrected_high=0.74, drop_stored=0.0, drop_corrected=0.0, drop_corrected_low=0.0,
                 drop_corrected_high=0.0, authors_printed_is="stored"),
            dict(dataset="xsum", evaluator="gpt4", condition="wrong", reversed=reversed_, stored=1 - corrected,
                 corrected=corrected, corrected_low=low, corrected_high=high, drop_stored=1 - corrected - 0.73,
                 drop_corrected=corrected - 0.73, drop_corrected_low=corrected - 0.74, drop_corrected_high=corrected - 0.72,
                 authors_printed_is=printed)]
    return pd.DataFrame(rows)


def test_label_effect_text_follows_the_table():
    t = au.label_effect_text(_effect(0.684, 0.672, 0.696))
    assert "stored S = 0.316, corrected S = 0.684 [0.672, 0.696]" in t
    assert "still prefers its own summary" in t and "printed the stored value" in t
    # a table where the corrected value is below chance must not say "still prefers"
    t2 = au.label_effect_text(_effect(0.30, 0.28, 0.32, printed="corrected"))
    assert "prefers the other summary" in t2 and "still prefers" not in t2 and "printed the corrected value" in t2
    assert "at chance" in au.label_effect_text(_effect(0.50, 0.48, 0.52))
    assert au.label_effect_text(_effect(0.684, 0.672, 0.696, reversed_=False)).startswith("No label file")


def test_new_defects_from_hand_made_tables():
    scores = pd.DataFrame([{"file": "label_results/wrong_label_results/xsum/gpt4_results.json", "task": "comparison", "n": 10,
                            "n_checkable": 10, "formula": 0, "reversed": 10, "either": 0, "neither": 0,
                            "formula_share_12": 0.0, "reversed_share_12": 1.0, "sign_agreement": 0.0, "n_decisive": 8,
                            "orientation": "reversed"}])
    same = pd.DataFrame(columns=["experiment", "task", "evaluator", "file_a", "file_b", "subset", "n_pairs", "same_answers",
                                 "flipped_answers", "score_corr", "same_score", "same_score_reversed"])
    llama = pd.DataFrame([{"condition": "random", "matches_human_row": 0.5, "file": "f", "n_records": 4}])
    ind = pd.DataFrame([{"file": "individual_setting_results/x", "n": 5, "own_records": 1, "ground_truth_positives": 1,
                         "ground_truth_correct": 1.0, "exactly_half": 0.0, "all_nan": np.nan}])
    eff = _effect(0.684, 0.672, 0.696)
    rows = au.new_defects(scores, same, llama, ind, eff)
    assert [r["defect"] for r in rows] == ["label experiment: stored self-preference is the preference for the OTHER summary"]
    assert "S=0.684" in rows[0]["recomputed"] and "S=0.316" in rows[0]["stored"]
    # the same audit on an as-designed file finds nothing
    assert au.new_defects(scores.assign(orientation="as designed", reversed_share_12=0.0, formula_share_12=1.0),
                          same, llama, ind, eff) == []


# ---- real released data -------------------------------------------------------------------------


def test_real_wrong_label_files_reversed_on_xsum_only():
    sc = au.score_answer_audit([au.label_path(c, ds, ev) for c in ("correct", "wrong") for ds in ("xsum", "cnn")
                                for ev in ("gpt4", "gpt35")])
    o = sc.set_index("file")["orientation"]
    assert o[au.label_path("wrong", "xsum", "gpt4")] == "reversed"
    assert o[au.label_path("wrong", "xsum", "gpt35")] == "reversed"
    assert o[au.label_path("wrong", "cnn", "gpt4")] == "as designed"
    assert o[au.label_path("correct", "xsum", "gpt4")] == "as designed"  # sign test only (no probabilities)


def test_real_label_effect():
    e = au.label_effect_table().set_index(["dataset", "evaluator", "condition"])
    w = e.loc[("xsum", "gpt4", "wrong")]
    assert w.reversed and w.corrected == pytest.approx(1 - w.stored)
    assert w.authors_printed_is == "stored" and w.corrected_low > 0.5 and w.stored_high < 0.5
    assert abs(w.drop_corrected) < 0.1 < abs(w.drop_stored)
    assert not e.loc[("cnn", "gpt4", "wrong")].reversed


def test_real_llama_random_label_file_is_the_human_row():
    ll = au.llama_label_audit().set_index(["dataset", "condition"])
    for ds in ("xsum", "cnn"):
        assert ll.loc[(ds, "random"), "matches_human_row"] == 1.0 and ll.loc[(ds, "random"), "distinct_sources"] == 1
        assert ll.loc[(ds, "correct"), "matches_own_row"] == 1.0
        assert ll.loc[(ds, "random"), "raw_random_is_correct_or_wrong"] == 1.0


def test_worse_prompt_text_reads_the_table():
    w = pd.DataFrame([{"family": "gpt35 (base and fine-tuned)", "files": 34, "same_answers_min": 0.0, "same_answers_max": 0.2,
                       "flipped_answers_min": 0.33, "flipped_answers_max": 1.0},
                      {"family": "gpt4", "files": 2, "same_answers_min": 0.65, "same_answers_max": 0.69,
                       "flipped_answers_min": 0.02, "flipped_answers_max": 0.03}])
    t = au.worse_prompt_text(w)
    assert "cannot tell the two apart" in t and "34 files" in t and "65% to 69%" in t
    # families that agree must not be called undecidable
    agree = w.assign(same_answers_min=[0.6, 0.65], same_answers_max=[0.7, 0.69], flipped_answers_min=[0.01, 0.02],
                     flipped_answers_max=[0.05, 0.03])
    assert "cannot tell" not in au.worse_prompt_text(agree) and "the same way" in au.worse_prompt_text(agree)


def test_summary_llama_and_individual_texts():
    sc = pd.DataFrame({"file": ["a", "b", "c", "d"], "task": ["comparison"] * 4, "orientation": ["as designed", "reversed", "unclear", "unclear"],
                       "n_decisive": [10, 10, 0, 5], "neither": [3, 0, 0, 0], "n_checkable": [10, 10, 10, 10]})
    t = au.audit_summary_text(sc)
    assert "Of the 4 checks" in t and "1 store its reverse (`b`)" in t and "1 cannot be tested" in t and "1 remain unclear" in t
    assert "3 records in 1 files" in t
    ll = pd.DataFrame([{"dataset": "xsum", "condition": "correct", "matches_own_row": 1.0, "matches_human_row": 0.25,
                        "raw_random_is_correct_or_wrong": 1.0, "stored_mean": 0.8, "raw_mean": 0.8},
                       {"dataset": "xsum", "condition": "random", "matches_own_row": 0.25, "matches_human_row": 1.0,
                        "raw_random_is_correct_or_wrong": 1.0, "stored_mean": 0.87, "raw_mean": 0.83}])
    lt = au.llama_label_text(ll)
    assert "written four times" in lt and "0.870 on xsum" in lt and "0.830" in lt
    assert "written four times" not in au.llama_label_text(ll.assign(matches_human_row=[0.25, 0.25]))
    ind = pd.DataFrame([{"evaluator": "x_ft_llama", "ground_truth_correct": 0.8, "ground_truth_positives": 0, "own_records": 10,
                         "exactly_half": 1.0, "all_nan": np.nan},
                        {"evaluator": "gpt4", "ground_truth_correct": 1.0, "ground_truth_positives": 10, "own_records": 10,
                         "exactly_half": 0.001, "all_nan": np.nan}])
    it = au.individual_text(ind)
    assert "1 of the 2 recognition files" in it and "(all of them fine-tuned Llama files) mark 0 of their 10" in it and "0.5 exactly in 100% to 100%" in it
    assert "placeholder" in it
    clean = au.individual_text(ind.iloc[[1]])
    assert "1 of the 1" in clean and "exactly in" not in clean


def test_passing_checks_text_counts_only_what_passes():
    same = pd.DataFrame([{"experiment": "vs_human", "task": "comparison", "evaluator": "gpt4", "dataset": "xsum",
                          "same_answers": 0.91, "score_corr": 0.97},
                         {"experiment": "which is worse", "task": "detection", "evaluator": "gpt35", "dataset": "cnn",
                          "same_answers": 0.74, "score_corr": 0.8}])
    design = pd.DataFrame({"labels_are_the_two_sources": [1.0, 0.9], "first_label_own": [0.49, 0.51]})
    ft = pd.DataFrame({"label_correct": [1.0, 0.5], "articles_are_first_n": [True, True], "examples": [16, 16],
                       "expected_examples": [16, 16], "answer_1_share": [0.5, 0.5]})
    t = au.passing_checks_text(same, design, ft)
    assert "1 of the 2 released fine-tuning sets" in t and "every record of 1 of the 2 GPT" in t
    assert "gpt35 on cnn 74.0%" in t


def test_real_finetuning_sets_are_what_their_names_say():
    f = au.finetuning_data_audit()
    assert len(f) == 8 and (f.label_correct == 1).all() and f.articles_are_first_n.all()
    assert (f.examples == f.expected_examples).all() and (f.answer_1_share == 0.5).all() and (f.unmatched == 0).all()
