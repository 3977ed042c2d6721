"""Re-analysis of Panickssery et al. (2024): hand-made records with known answers, then the real files."""

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments import reanalysis as ra


def _llama(key, other, fd, bd, fc, bc, stored_r, stored_s):
    return {"key": key, "model": other,
            "forward_detection_output": {"1": fd[0], "2": fd[1]}, "backward_detection_output": {"1": bd[0], "2": bd[1]},
            "forward_comparison_output": {"1": fc[0], "2": fc[1]}, "backward_comparison_output": {"1": bc[0], "2": bc[1]},
            "detection_score": stored_r, "self_preference": stored_s,
            "forward_detection": "1", "backward_detection": "1", "forward_comparison": "1", "backward_comparison": "1"}


@pytest.fixture
def xsum_keys():
    return list(ra.key_index("xsum"))


def test_llama_r_by_hand(xsum_keys):
    # Record 1: forward P(1)=0.6, P(2)=0.2 -> 0.75 ; backward P(1)=0.3, P(2)=0.5 -> P(2)=0.625 ; R = 0.6875
    # Record 2: forward 0.9/0.1 -> 0.9 ; backward 0.8/0.2 -> 0.2 ; R = 0.55 (answers "1" twice: ambiguous)
    recs = [
        _llama(xsum_keys[0], "human", (0.6, 0.2), (0.3, 0.5), (0.5, 0.5), (0.5, 0.5), 0.6875, 0.5),
        _llama(xsum_keys[1], "claude", (0.9, 0.1), (0.8, 0.2), (0.2, 0.6), (0.1, 0.3), 0.55, 0.5),
    ]
    df = ra.pairs_from_records(recs, "xsum", "llama")
    assert df["recognition"].tolist() == pytest.approx([0.6875, 0.55])
    # S of record 2: forward 0.2/0.8 = 0.25, backward P(2) = 0.3/0.4 = 0.75 -> 0.5
    assert df["preference"].tolist() == pytest.approx([0.5, 0.5])
    assert df["recognition_outcome"].tolist() == ["correct", "ambiguous_1"]
    assert df["preference_outcome"].tolist() == ["ambiguous_1", "ambiguous_2"]
    assert df["index"].tolist() == [0, 1]


def test_swapped_fields_are_detected(xsum_keys):
    rng = np.random.default_rng(0)
    recs = []
    for i in range(20):
        fd, bd, fc, bc = (tuple(rng.dirichlet([1, 1])) for _ in range(4))
        r = ra.renormalised_pair(fd[0], fd[1], bd[0], bd[1])
        s = ra.renormalised_pair(fc[0], fc[1], bc[0], bc[1])
        recs.append(_llama(xsum_keys[i], "human", fd, bd, fc, bc, float(s), float(r)))  # swapped on purpose
    df = ra.pairs_from_records(recs, "xsum", "llama")
    cand = ra._formula_candidates(df)
    assert set(ra.classify_stored(df["stored_recognition"], cand)) == {"S paper"}
    assert set(ra.classify_stored(df["stored_preference"], cand)) == {"R paper"}
    # and a position score is recognised as such
    first = ra.first_position_pair(df.fd_1, df.fd_2, df.bd_1, df.bd_2)
    assert set(ra.classify_stored(first, cand)) == {"R first-position"}


def test_outcome_categories():
    out = ra.outcome(["1", "2", "1", "2"], ["2", "1", "1", "2"]).tolist()
    assert out == ["correct", "incorrect", "ambiguous_1", "ambiguous_2"]


def test_n_train():
    assert [ra.n_train(v) for v in ("2", "10", "500", "always_1", "vowelcount")] == [2, 10, 500, 500, 500]


# ---- real released data -------------------------------------------------------------------------


def test_gpt4_file_size_and_public_numbers():
    df = ra.pairs("xsum", "gpt4")
    assert len(df) == 4000 and df["key"].nunique() == 1000
    pc = ra.public_comparison().set_index("dataset")
    assert pc.loc["xsum", "ours"] == pytest.approx(0.705, abs=0.0005)
    assert pc.loc["cnn", "ours"] == pytest.approx(0.912, abs=0.0005)
    assert (pc["ours_low"] < pc["ours"]).all() and (pc["ours"] < pc["ours_high"]).all()


def test_pairwise_table_schema():
    pw = ra.pairwise_table()
    assert list(pw.columns) == ["dataset", "evaluator", "other", "n", "recognition", "recognition_low",
                                "recognition_high", "preference", "preference_low", "preference_high"]
    assert set(pw.dataset) == {"xsum", "cnn"} and set(pw.evaluator) == {"gpt4", "gpt35", "llama"}
    assert len(pw) == 2 * 3 * 5
    assert not (pw.evaluator == pw.other).any()
    assert pw.loc[pw.other == "all", "n"].eq(4000).all()


def test_llama_position_bias_in_real_data():
    d = ra.discrete_table().set_index(["dataset", "evaluator", "task"])
    # Llama-2 answers "1" first in forward detection in ~91% (XSUM) and every pair but one (CNN)
    assert d.loc[("xsum", "llama", "recognition"), "forward_first_share"] > 0.9
    assert d.loc[("cnn", "llama", "recognition"), "ambiguous_1"] > 0.999
    assert d.loc[("cnn", "gpt4", "preference"), "correct"] > 0.85


def test_real_xsum_llama_fields_are_swapped():
    lf = ra.llama_formula_table().set_index("file")
    row = lf.loc["results/xsum/llama_results.json"]
    assert row.stored_formula == "R and S swapped"
    assert lf.loc["results/cnn/llama_results.json", "stored_formula"] == "paper R/S"
    assert lf.loc["results/xsum/xsum_500_ft_llama_results.json", "stored_formula"] == "position score"


def test_finetuned_uses_held_out_articles_only():
    ft = ra.finetuned_pairs()
    assert (ft["index"] >= ft["n_train"]).all()
    t = ra.finetuned_table()
    assert len(t) == 2 * 2 * 8 * 2
    row = t.set_index(["evaluator_family", "trained_on", "evaluated_on", "variant"]).loc[("gpt35", "xsum", "xsum", "500")]
    assert row.n_eval == 500 and row.recognition == pytest.approx(row.stored_recognition)


def _labels(wrong, low, high):
    rows = []
    for ev, c in (("gpt4", 0.73), ("gpt35", 0.75)):
        rows.append({"dataset": "xsum", "evaluator": ev, "condition": "correct", "preference": c,
                     "preference_low": c - 0.01, "preference_high": c + 0.01})
        rows.append({"dataset": "xsum", "evaluator": ev, "condition": "wrong", "preference": wrong,
                     "preference_low": low, "preference_high": high})
    return pd.DataFrame(rows)


def test_label_findings_follow_the_table():
    t = ra.label_findings(_labels(0.68, 0.67, 0.69))
    assert "0.680 [0.670, 0.690] with swapped labels" in t
    assert "lowers S in 2 of these 2" in t and "the text decides it" in t and "crosses chance" not in t
    # a swapped-label S below chance must be named as the label deciding, not the text
    t2 = ra.label_findings(_labels(0.32, 0.30, 0.34))
    assert "crosses chance for GPT-4 on XSUM, GPT-3.5 on XSUM" in t2 and "the text decides" not in t2
    # no change: swapping does not lower S
    assert "lowers S in 0 of these 2" in ra.label_findings(_labels(0.73, 0.72, 0.74).assign(
        preference=lambda d: d.preference.where(d.condition == "wrong", 0.73)))
