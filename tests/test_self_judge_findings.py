"""The Self-J chapter's sentences follow their tables: each is checked on a table that makes it true and on one
that makes it false or flips its direction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments.self_judge import findings as F


# --- progress: the "not yet run / N of M" message ------------------------------------------------------------------
def _progress(state, done, total, missing="eval_scores.csv, pearson.csv"):
    return pd.DataFrame([{"stage": "evaluate", "state": state, "done": done, "total": total,
                          "unit": "judge calls on the evaluation answers", "tables": "0 of 2",
                          "missing_tables": missing, "profile": "book"}])


def test_pending_sentence_says_how_far_a_running_stage_is():
    s = F.pending_sentence(_progress("in progress", 608, 1280), "evaluate")
    assert s.startswith("**In progress.**") and "stored so far: 608 of 1,280 judge calls on the evaluation answers (48 %)" in s
    assert "`eval_scores.csv`, `pearson.csv`" in s and "complete (" not in s


def test_pending_sentence_for_a_stage_not_started_computed_or_done():
    assert "**Not yet run.**" in F.pending_sentence(_progress("not started", 0, 1280), "evaluate")
    computed = F.pending_sentence(_progress("computed, tables not written", 1280, 1280), "evaluate")
    assert "**Computed, not yet tabulated.**" in computed and "1,280 of 1,280" in computed
    done = F.pending_sentence(_progress("done", 1280, 1280, missing=""), "evaluate")
    assert "is complete" in done and "Not yet" not in done and "In progress" not in done
    assert "not part of this run" in F.pending_sentence(_progress("done", 1, 1), "train")
    brief = F.pending_sentence(_progress("in progress", 608, 1280), "evaluate", brief=True)
    assert brief.startswith("*Pending: ") and "in progress, 608 of 1,280" in brief and "`eval_scores.csv`" not in brief
    assert F.pending_sentence(_progress("done", 1280, 1280, ""), "evaluate", brief=True).startswith("The evaluation")


def test_progress_sentence_lists_running_and_waiting_stages():
    p = pd.concat([_progress("done", 2, 2, "").assign(stage="speed", unit="candidates"),
                   _progress("in progress", 380, 720).assign(stage="answers", unit="answers generated"),
                   _progress("not started", 0, 4).assign(stage="train")], ignore_index=True)
    s = F.progress_sentence(p)
    assert s.startswith("1 of 3 stages are complete (`speed`)")
    assert "in progress: `answers`, 380 of 720 answers generated (53 %)" in s and "not started: `train`" in s
    all_done = F.progress_sentence(p.assign(state="done"))
    assert "3 of 3 stages are complete: every table" in all_done and "not started" not in all_done


# --- speed -------------------------------------------------------------------------------------------------------
def _speed(a, b):
    return pd.DataFrame({"model": ["small@llama.cpp", "big@llama.cpp"], "prompts": 4, "generated_tokens": [700, 600],
                         "seconds": [700 / a, 600 / b], "tokens_per_s": [a, b], "max_new_tokens": 256,
                         "temperature": 0.7, "threads": 1, "load_avg_before": [1.4, 1.6],
                         "load_avg_after": [1.6, 1.9]})


def test_speed_sentence_says_whether_the_policy_is_the_fastest():
    fast = F.speed_sentence(_speed(29.2, 11.2), "small@llama.cpp")
    assert "The policy is the fastest, small@llama.cpp: 2.6x the tokens/s of big@llama.cpp" in fast
    assert "load average 1.4-1.9" in fast and "small@llama.cpp 29.2 tokens/s" in fast
    slow = F.speed_sentence(_speed(10.0, 25.0), "small@llama.cpp")
    assert "is not the fastest: big@llama.cpp decodes 2.5x" in slow
    assert "not among the timed" in F.speed_sentence(_speed(10.0, 25.0), "other")
    one = F.speed_sentence(_speed(29.2, 11.2).iloc[:1].assign(prompts=1), "small@llama.cpp")
    assert "the same 1 training instruction (" in one and "the only candidate timed" in one


def test_runtime_sentence_compares_llamacpp_with_transformers():
    gen = pd.DataFrame({"model": "m", "method": ["judgelab-transformers", "judgelab-llama.cpp"],
                        "tokens_per_s": [23.5, 68.5]})
    assert "68.5 tokens/s against the transformers runtime's 23.5: 2.9x as fast" in F.runtime_sentence(gen, "m")
    slower = F.runtime_sentence(gen.assign(tokens_per_s=[30.0, 15.0]), "m")
    assert "slower (0.50x the tokens/s)" in slower
    assert "no llama.cpp and transformers rows" in F.runtime_sentence(gen, "other")


def test_timing_sentence_estimates_what_is_left_only_while_answers_run():
    t = pd.DataFrame([{"answers": 380, "first": "2026-12-01 12:18", "last": "2026-12-01 15:27", "median_gap_s": 20.0,
                       "mean_gap_s": 30.0, "gaps": 379, "pauses_over_1h": 0, "policy": "p"}])
    p = _progress("in progress", 380, 720).assign(stage="answers")
    s = F.timing_sentence(t, p)
    assert "380 answers of p" in s and "a median 20 s apart" in s and "340 answers still to come take about 1.9 hours" in s
    assert "still to come" not in F.timing_sentence(t, p.assign(state="done"))
    assert F.timing_sentence(t.iloc[0:0]) == "No answer of the policy is stored yet."


# --- data --------------------------------------------------------------------------------------------------------
def _sources(mt_kept):
    return pd.DataFrame({"source": ["self_instruct", "mt_bench"], "kept": [252, mt_kept], "refused": [0, 240],
                         "train": [90, 5], "heldout": [5, 0]})


def test_data_sentence_counts_sources_and_refusals():
    refused = pd.DataFrame({"source": ["mt_bench", "mt_bench"], "reason": ["no reference", "in evaluation set"],
                            "n": [120, 40]})
    s = F.data_sentence(_sources(0), refused)
    assert s.startswith("252 instructions have a gold reference (Self-Instruct 252)")
    assert "160 were refused (MT-bench / Vicuna-bench: 120 no reference, 40 in evaluation set)" in s
    assert "MT-bench / Vicuna-bench contributes no instruction" in s and "takes 95 for training and holds out 5" in s
    kept = F.data_sentence(_sources(30), refused.iloc[0:0])
    assert "contributes no" not in kept and "refused" not in kept and "MT-bench / Vicuna-bench 30" in kept


def test_leakage_sentence_flags_an_overlap():
    ok = pd.DataFrame([{"selected": 440, "evaluation_questions": 398, "overlapping": 0, "refused_as_evaluation": 40,
                        "check": "normalised text"}])
    assert "none of the 440 selected instructions matches any of the 398" in F.leakage_sentence(ok)
    bad = F.leakage_sentence(ok.assign(overlapping=3))
    assert "**3 of the 440 selected instructions match an evaluation question**" in bad and "none of" not in bad


def test_evaluation_sentence_names_the_highest_rated_responder():
    e = pd.DataFrame({"model": ["A", "B"], "answers": [160, 160], "questions": [160, 160], "gpt4_mean": [3.5, 4.1]})
    s = F.evaluation_sentence(e)
    assert "320 answers by 2 models (A and B)" in s and "highest for B (4.10) and lowest for A (3.50)" in s
    assert "highest for A" in F.evaluation_sentence(e.assign(gpt4_mean=[4.2, 3.0])) and "stand-in" in s


def test_answers_sentence_counts_missing_and_empty_answers():
    summary = pd.DataFrame({"sample": [0, 0], "ok": [330, 0], "empty": [0, 0], "too long": [0, 0],
                            "missing": [70, 40], "split": ["train", "heldout"]})
    s = F.answers_sentence(summary)
    assert "training answers: 330 of 400 usable (1 sample per instruction); 70 not generated yet" in s
    full = F.answers_sentence(summary.assign(ok=[398, 40], empty=[2, 0], missing=[0, 0]))
    assert "398 of 400 usable" in full and "2 empty (kept, counted, not rated)" in full and "not generated" not in full
    assert "none empty or missing" in full  # the held-out split


# --- labels ------------------------------------------------------------------------------------------------------
def _labels(sign, n=40, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 0.8, n)
    s = np.clip(4.5 + sign * 5 * (c - 0.4) + rng.normal(0, 0.2, n), 0, 9)
    valid = np.ones(n, bool)
    valid[:3] = False
    s[:3] = np.nan
    return pd.DataFrame({"valid": valid, "self_eval": s, "cosine": c, "digit_mass": 0.1})


def test_labels_sentence_says_whether_the_two_sources_agree():
    agree = F.labels_sentence(_labels(+1))
    assert "rated 37 of its 40 training answers" in agree and "3 invalid" in agree and "they agree" in agree
    assert "0.100" in agree  # the median digit mass
    assert "they disagree" in F.labels_sentence(_labels(-1))
    flat = _labels(0).assign(self_eval=lambda d: np.where(d["valid"], np.random.default_rng(3).uniform(0, 9, 40), np.nan))
    assert "not distinguishable from zero" in F.labels_sentence(flat)


def test_label_distribution_sentence_warns_of_near_constant_labels():
    row = {"variant": "self_j", "label_from": "combined_mean", "answers": 10, **{str(d): 0 for d in range(10)},
           "missing": 0}
    narrow = pd.DataFrame([{**row, "4": 9, "5": 1}])
    s = F.label_distribution_sentence(narrow)
    assert "self_j (combined_mean) uses 2 of the 10 digits, 90 % of its labels are 4" in s and "teaches at most two" in s
    wide = pd.DataFrame([{**row, "2": 3, "4": 4, "7": 3}])
    assert "uses 3 of the 10 digits, 40 % of its labels are 4" in F.label_distribution_sentence(wide)
    assert "at most two" not in F.label_distribution_sentence(wide)


# --- Pearson -----------------------------------------------------------------------------------------------------
def _paper(cos, comb):
    return pd.DataFrame({"setting": "with reference", "method": ["Cosine", "Self-eval + Cosine", "Self-J"],
                         "paper_r100": [48.25, 59.98, 70.34], "ours_pooled_r100": [cos, comb, np.nan],
                         "ours_pooled_low": [cos - 5, comb - 5, np.nan], "ours_pooled_high": [cos + 5, comb + 5, np.nan],
                         "n": [640, 640, 0], "n_unscored": [0, 3, 0]})


def test_pearson_sentence_names_the_best_method_against_the_paper():
    s = F.pearson_sentence(_paper(40.0, 55.0), "with reference")
    assert "Cosine 40.0 [35.0, 45.0] (640 answers; paper 48.25)" in s and "640 answers, 3 unscored" in s
    assert "Self-eval + Cosine is the best here as in the paper" in s and "Self-J" not in s  # not evaluated: left out
    assert "negatively" not in s and "not distinguishable" not in s
    flipped = F.pearson_sentence(_paper(60.0, 30.0), "with reference")
    assert "Cosine is the best here; in the paper it is Self-eval + Cosine" in flipped
    neg = F.pearson_sentence(_paper(-12.0, 3.0), "with reference")
    assert "Cosine correlates *negatively* with GPT-4's score" in neg
    assert "Self-eval + Cosine: not distinguishable from no correlation" in neg
    assert "No method without reference" in F.pearson_sentence(_paper(1, 2), "without reference")
    # a method the paper's table lacks (an ablation) that beats every method both tables have is named
    ablated = pd.concat([_paper(40.0, 55.0), pd.DataFrame({
        "setting": ["with reference"], "method": ["Self-J (cosine_only)"], "paper_r100": [np.nan],
        "ours_pooled_r100": [70.0], "ours_pooled_low": [65.0], "ours_pooled_high": [75.0], "n": [640],
        "n_unscored": [0]})], ignore_index=True)
    s = F.pearson_sentence(ablated, "with reference")
    assert "Self-eval + Cosine is the best here as in the paper" in s
    assert "Highest of all here is Self-J (cosine_only) (70.0 [65.0, 75.0]), which the paper's table" in s
    ablated.loc[3, ["ours_pooled_r100", "ours_pooled_low", "ours_pooled_high"]] = [20.0, 15.0, 25.0]
    assert "Highest of all" not in F.pearson_sentence(ablated, "with reference")


def _diffs(rows):
    return pd.DataFrame([{"a": a, "b": b, "r_a": ra, "r_b": rb, "diff": ra - rb, "low": lo, "high": hi, "n": 640,
                          "clusters": 160, "note": ""} for a, b, ra, rb, lo, hi in rows])


def test_comparison_sentence_follows_the_paired_interval():
    up = F.comparison_sentence(_diffs([("selfeval_ref_cosine", "cosine", 0.6, 0.5, 0.04, 0.16)]),
                               "selfeval_ref_cosine", "cosine")
    assert "Self-eval + Cosine (mean, ours) against Cosine: r 0.60 vs 0.50" in up and "+0.10 [0.04, 0.16]: higher" in up
    down = F.comparison_sentence(_diffs([("selfeval_ref_cosine", "cosine", 0.4, 0.5, -0.16, -0.04)]),
                                 "selfeval_ref_cosine", "cosine")
    assert ": lower." in down
    flat = F.comparison_sentence(_diffs([("selfeval_ref_cosine", "cosine", 0.52, 0.5, -0.03, 0.07)]),
                                 "selfeval_ref_cosine", "cosine")
    assert "not distinguishable (the interval includes 0)" in flat
    no_iv = F.comparison_sentence(_diffs([("a", "b", 0.5, 0.4, np.nan, np.nan)]), "a", "b")
    assert "difference +0.10; too few questions for an interval." in no_iv and "higher" not in no_iv
    assert "not computed" in F.comparison_sentence(_diffs([]).reindex(columns=["a", "b", "diff", "note"]), "x", "y")


def _claims(verdicts):
    return pd.DataFrame({"claim": [f"claim {i}" for i in range(len(verdicts))], "verdict": verdicts,
                         "ours_diff_r100": 5.0, "ours_low_r100": 1.0, "ours_high_r100": 9.0, "paper_diff_r100": 12.13})


def test_claims_sentence_counts_verdicts_and_pending_claims():
    s = F.claims_sentence(_claims(["supported", "contradicted", "not distinguishable", "not run"]))
    assert s.startswith("Of the 3 claims checked: 1 supported") and "1 contradicted" in s
    assert "- claim 0: supported (ours +5.0 [1.0, 9.0]; paper +12.13)" in s and "Not run yet: claim 3." in s
    assert "None of the paper's claims" in F.claims_sentence(_claims(["not run", "not run"]))
    assert "1 have no interval" in F.claims_sentence(_claims(["no interval", "supported"]))


def _pearson(rs: dict[str, float], model="pooled"):
    return pd.DataFrame([{"method": m, "model": model, "r": r, "r_low": r - 0.05, "r_high": r + 0.05, "n": 640}
                         for m, r in rs.items()])


def test_combination_sentence_says_whether_ours_is_best():
    ours_best = F.combination_sentence(_pearson({"selfeval_ref_cosine_mean": 0.5, "selfeval_ref_cosine_product": 0.4,
                                                 "selfeval_ref_cosine_rank_mean": 0.45, "cosine": 0.9}))
    assert "Ours (mean) has the highest point estimate of the three" in ours_best and "a spread of 0.10" in ours_best
    not_best = F.combination_sentence(_pearson({"selfeval_ref_cosine_mean": 0.3, "selfeval_ref_cosine_product": 0.4,
                                                "selfeval_ref_cosine_rank_mean": 0.45}))
    assert "is not the best: rank_mean is, ours 0.15 below it" in not_best
    assert "No combined score" in F.combination_sentence(_pearson({"cosine": 0.5}))


def test_per_model_sentence_names_the_extremes():
    t = pd.concat([_pearson({"cosine": 0.2}, "A"), _pearson({"cosine": 0.6}, "B"),
                   _pearson({"cosine": 0.4}, "average")], ignore_index=True)
    s = F.per_model_sentence(t, "cosine")
    assert "from r = 0.20 [0.15, 0.25] (A) to 0.60 [0.55, 0.65] (B)" in s and "average, the paper's statistic, is 0.40" in s
    flipped = F.per_model_sentence(t.assign(r=[0.7, 0.1, 0.4], r_low=np.nan, r_high=np.nan), "cosine")
    assert "(B) to 0.70 (no interval) (A)" in flipped
    assert "no per-model r" in F.per_model_sentence(t.assign(r=np.nan), "cosine")


def test_invalid_sentence_counts_unscored_answers():
    inv = pd.DataFrame({"method": ["selfeval_ref", "logprob"], "name": ["Self-eval (with reference)", "Perplexity"],
                        "answers": 640, "scored": [640, 640], "invalid": [0, 0], "invalid_share": [0.0, 0.0],
                        "median_digit_mass": [0.1, np.nan]})
    none = F.invalid_sentence(inv)
    assert "Every method scored every answer" in none and "Self-eval (with reference) 0.100" in none
    some = F.invalid_sentence(inv.assign(scored=[628, 640], invalid=[12, 0], invalid_share=[12 / 640, 0]))
    assert "Self-eval (with reference) 12 of 640 (1.9 %)" in some and "never scored 0" in some
    assert "Perplexity 0 of" not in some


def test_length_sentence_says_which_methods_beat_length():
    d = _diffs([("cosine", "length_words", 0.5, 0.3, 0.1, 0.3), ("selfeval_free", "length_words", 0.1, 0.3, -0.3, -0.1),
                ("logprob", "length_words", 0.3, 0.3, -0.05, 0.05)])
    s = F.length_sentence(d)
    assert "pooled r = 0.30" in s and "beats it: Cosine (+0.20 [0.10, 0.30])" in s
    assert "does worse: Self-eval (without reference)" in s and "not distinguishable: Perplexity" in s
    assert "No method beats answer length" in F.length_sentence(d.iloc[1:])
    no_iv = F.length_sentence(d.assign(low=np.nan, high=np.nan))
    assert "too few questions for an interval: Cosine (0.20)" in no_iv and "No method beats" not in no_iv


# --- selective following -----------------------------------------------------------------------------------------
def _selective(norm, lo, hi):
    return pd.DataFrame({"method": ["cosine", "length_words"], "normalised": norm, "normalised_low": lo,
                         "normalised_high": hi, "random_area": 3.8, "oracle_area": 4.6, "quality_at_0.2": [4.4, 4.0],
                         "n": 640})


def test_selective_sentence_says_which_methods_beat_random():
    s = F.selective_sentence(_selective([0.4, 0.1], [0.2, -0.1], [0.6, 0.3]))
    assert "3.80 for random acceptance and 4.60 for the oracle" in s and "Cosine 0.40 [0.20, 0.60]" in s
    assert "Better than random: Cosine." in s and "The best, Cosine, keeps a mean GPT-4 score of 4.40" in s
    none = F.selective_sentence(_selective([0.05, -0.1], [-0.1, -0.3], [0.2, 0.1]))
    assert "No method is distinguishably better than random acceptance" in none and "Worse" not in none
    worse = F.selective_sentence(_selective([0.4, -0.2], [0.2, -0.3], [0.6, -0.1]))
    assert "Better than random: Cosine." in worse and "*Worse* than random: Answer length (words) (it accepts" in worse
    few = F.selective_sentence(_selective([0.4, 0.1], [0.2, -0.1], [0.6, 0.3]).assign(n=2))
    assert "With 2 answers the intervals are no basis for a direction." in few and "Better than" not in few
    own = F.selective_own_sentence(_selective([0.4, 0.1], [0.2, -0.1], [0.6, 0.3]).assign(
        method=["score", "length_words"], quality="proxy: reference-based self-evaluation by rater"))
    assert "**proxy**, reference-based self-evaluation by rater" in own and "mean proxy quality" in own


# --- training, best-of-N -----------------------------------------------------------------------------------------
def test_training_sentence_counts_dropped_examples():
    runs = pd.DataFrame({"variant": ["self_j"], "description": ["the paper's loss"], "n_examples": [400],
                         "n_dropped": [0], "steps": [100], "seconds": [600.0], "judge": ["j"]})
    s = F.training_sentence(runs)
    assert "1 judge variant of j trained: self_j (the paper's loss): 400 examples, 100 steps, 10.0 min" in s
    assert "3 dropped for a missing label" in F.training_sentence(runs.assign(n_dropped=3))


def test_ablation_sentence_compares_the_full_judge_with_each_ablation():
    d = _diffs([("selfj_self_j_free", "selfj_no_distill_free", 0.4, 0.3, 0.02, 0.18),
                ("selfj_self_j_free", "selfeval_free", 0.4, 0.1, 0.1, 0.5)])
    s = F.ablation_sentence(d)
    assert "Self-J (without reference) against Self-J ablation no_distill (without reference)" in s and "higher" in s
    assert "Self-eval (without reference)" not in s  # not an ablation
    assert "have not been evaluated" in F.ablation_sentence(d.iloc[1:])
    assert F.ablations_text(d.iloc[1:]) == "The ablations have not been evaluated yet."  # said once, not twice
    both = pd.concat([d, _diffs([("selfj_self_j_ref", "selfj_no_distill_ref", 0.3, 0.2, 0.01, 0.2)])])
    text = F.ablations_text(both)
    assert text.index("no_distill (without reference)") < text.index("no_distill (with reference)")
    assert "have not been evaluated" not in text and "have not been evaluated" not in F.ablations_text(d)


def _bon(win, lo, hi):
    return pd.DataFrame({"best_of": [1, 8], "baseline": "first sample", "win": [0.5, win], "win_low": [0.5, lo],
                         "win_high": [0.5, hi], "n": 40, "n_identical": [40, 5], "picker": "picker", "rater": "rater"})


def test_best_of_n_sentence_follows_the_interval_around_a_tie():
    up = F.best_of_n_sentence(_bon(0.62, 0.55, 0.69))
    assert "picker picks" in up and "rated by rater" in up and "N = 8: 0.62 [0.55, 0.69]" in up
    assert "at N = 8, the pick is preferred; 40 instructions, 5 picks identical" in up
    assert "the pick is dispreferred" in F.best_of_n_sentence(_bon(0.4, 0.33, 0.47))
    assert "not distinguishable from a tie" in F.best_of_n_sentence(_bon(0.52, 0.45, 0.59))
    assert "too few instructions for a direction" in F.best_of_n_sentence(_bon(0.62, 0.55, 0.69).assign(n=2))


# --- names and the paper --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("col, name", [("selfeval_ref_cosine", "Self-eval + Cosine (mean, ours)"),
                                       ("selfeval_ref_cosine_product", "Self-eval + Cosine (product)"),
                                       ("selfeval_ref_cosine_mean", "Self-eval + Cosine (mean, ours)"),
                                       ("selfj_self_j_free", "Self-J (without reference)"),
                                       ("selfj_cosine_only_ref", "Self-J ablation cosine_only (with reference)"),
                                       ("length_words", "Answer length (words)")])
def test_method_names(col, name):
    assert F.method_name(col) == name


def test_paper_sentence_quotes_the_papers_table():
    s = F.paper_sentence()
    assert "the two combined 59.98" in s and "trained 13B judge 58.65" in s and "from 12.03 to 15.90" in s


def test_design_sentence_names_the_single_sample_limitation():
    rec = {"profile": "book", "policy": "smollm2-135m-instruct@llama.cpp", "judge": "smollm2-135m-instruct",
           "n_train": 400, "train_samples": 1, "n_heldout": 40, "best_of_n": 8, "max_new_tokens": 256,
           "temperature": 0.7}
    s = F.design_sentence(rec)
    assert "answers 400 training instructions (1 sample each) and 40 held-out ones (8 samples each" in s
    assert "(the policy's weights, in the transformers runtime)" in s and "**One sample per training instruction**" in s
    several = F.design_sentence({**rec, "train_samples": 4, "judge": "other-judge"})
    assert "(4 samples each)" in several and "One sample" not in several and "policy's weights" not in several


def test_figure_message_is_empty_only_when_the_stage_is_done():
    assert F.figure_message(_progress("done", 1280, 1280, ""), "evaluate") == ""
    running = F.figure_message(_progress("in progress", 608, 1280), "evaluate")
    assert running == "not yet run: stage evaluate has 608 of 1,280 judge calls on the evaluation answers (48 %)"
    assert F.figure_message(_progress("not started", 0, 1280), "evaluate") == "not yet run: stage evaluate"


# --- signal beneath length ------------------------------------------------------------------------------------------
def _lc(method, r_len, r_len_iv, partial, partial_iv, rq_len=0.38, rq_len_iv=(0.26, 0.50)):
    return {"method": method, "r_quality": 0.1, "r_length": r_len, "r_length_low": r_len_iv[0],
            "r_length_high": r_len_iv[1], "partial_r": partial, "partial_r_low": partial_iv[0],
            "partial_r_high": partial_iv[1], "r_quality_length": rq_len, "r_quality_length_low": rq_len_iv[0],
            "r_quality_length_high": rq_len_iv[1]}


def test_length_controlled_sentence_says_when_nothing_lies_beneath():
    t = pd.DataFrame([_lc("selfeval_ref", -0.25, (-0.36, -0.14), -0.02, (-0.12, 0.07)),
                      _lc("cosine", 0.18, (0.02, 0.32), 0.04, (-0.06, 0.14))])
    s = F.length_controlled_sentence(t)
    assert "GPT-4's score rises with (log) answer length (r = +0.38 [0.26, 0.50])" in s
    assert "fall as answers get longer: Self-eval (with reference) (-0.25 [-0.36, -0.14])" in s
    assert "rise as answers get longer: Cosine (+0.18 [0.02, 0.32])" in s
    assert "No method keeps a correlation with GPT-4 distinguishable from 0" in s and "remains" not in s


def test_length_controlled_sentence_flips_with_its_table():
    t = pd.DataFrame([_lc("selfeval_ref", 0.01, (-0.1, 0.1), 0.30, (0.2, 0.4), rq_len=-0.3, rq_len_iv=(-0.4, -0.2)),
                      _lc("cosine", 0.0, (-0.1, 0.1), -0.2, (-0.3, -0.1))])
    s = F.length_controlled_sentence(t)
    assert "GPT-4's score falls with" in s and "fall as answers get longer" not in s
    assert "Signal beyond length remains for Self-eval (with reference)." in s
    assert "Beyond length, Cosine disagrees with GPT-4." in s and "No method keeps" not in s
    assert F.length_controlled_sentence(t.iloc[0:0]) == "The length-controlled correlations have not been computed yet."
